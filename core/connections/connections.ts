/**
 * Provider connections over their lifetime, one service: connect flows (flows.ts), OAuth 2.0
 * tokens refreshed before they expire (tokens.ts), disconnects (disconnect.ts), and rewrites a
 * provider runs over its connections (rewrites.ts). Old secret columns move into their
 * providers' state before anything reads credentials (legacy-credentials.ts).
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Metric, Schedule } from "effect"
import { TokenCipher } from "../crypto.ts"
import { Providers } from "../provider.ts"
import { Accounts } from "../tenancy/accounts.ts"
import { makeParts } from "./parts.ts"
import { makeDisconnect } from "./disconnect.ts"
import { makeFlows } from "./flows.ts"
import { moveLegacyCredentials } from "./legacy-credentials.ts"
import { Links } from "./links.ts"
import { makeRewrites } from "./rewrites.ts"
import { makeTokens, refreshRounds } from "./tokens.ts"

export { ProviderUnsupported } from "./parts.ts"
export { NotConnected } from "./disconnect.ts"
export { LinkInvalid, type LinkErrorType, type LinkOutcome } from "./flows.ts"
export {
  AccountMismatch,
  type ConnectionEntry,
  type ConnectionRewrites,
  type HeldConnection,
  type MigrationProgress,
  type MigrationReport,
  type Replacement
} from "./rewrites.ts"
export { refreshRounds } from "./tokens.ts"

export class Connections extends Effect.Service<Connections>()("wearflow/Connections", {
  effect: Effect.gen(function* () {
    const parts = makeParts({
      sql: yield* SqlClient.SqlClient,
      cipher: yield* TokenCipher,
      accounts: yield* Accounts,
      links: yield* Links,
      providers: yield* Providers
    })
    yield* moveLegacyCredentials(parts.cipher, parts.providers)
    return { ...makeFlows(parts), ...makeTokens(parts), ...makeDisconnect(parts), ...makeRewrites(parts) } as const
  })
}) {
  /**
   * Keeps OAuth 2.0 tokens fresh: every `interval`, refreshes those expiring within `ahead`.
   * Any number of processes may run it; the row locks let one refresh each token.
   */
  static readonly layerRefresher = (options: { readonly interval: Duration.DurationInput; readonly ahead: Duration.DurationInput }) =>
    Layer.scopedDiscard(
      Effect.gen(function* () {
        const connections = yield* Connections
        const ahead = Duration.decode(options.ahead)
        const round = connections.refreshDue(ahead).pipe(
          Effect.tap((counts) =>
            counts.refreshed + counts.failed > 0 ? Effect.logInfo("refreshed provider tokens").pipe(Effect.annotateLogs(counts)) : Effect.void),
          Effect.catchAllCause((cause) => Effect.logError("token refresh round failed", cause)),
          Effect.zipRight(Metric.increment(refreshRounds))
        )
        yield* Effect.forkScoped(Effect.repeat(round, Schedule.spaced(options.interval)))
      })
    )
}
