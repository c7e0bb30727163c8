/**
 * `wearflow garmin migrate-oauth2`: exchanges every active OAuth 1.0a connection for OAuth 2.0
 * tokens (Garmin's token-exchange endpoint), through core's per-connection rewrite: each
 * connection moves in its own transaction under its row lock, so an interrupted run resumes
 * with what is left, and a second run at the same time skips what the first holds. The OAuth
 * 1.0a pair stays in the connection's state, usable for 30 days (pulls of OAuth 1.0a-era
 * callback URLs still in flight are signed with it), and stays its alias, so notifications
 * addressed by the old token keep finding the user. A database failure ends the run; Garmin's
 * refusals are reported per connection.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { AccountMismatch, type ConnectionRewrites, type MigrationProgress, type MigrationReport, type Replacement } from "@wearflow/core/connections/connections"
import type { AuthError, Connected, Credentials, ProviderAuth } from "@wearflow/core/provider"
import { Duration, Effect } from "effect"
import { encodeState, OAUTH1, OAUTH1_GRACE, OAUTH2, usableOAuth1 } from "./state.ts"

/** Garmin's connect flows plus its OAuth 1.0a → 2.0 token exchange for one connection. */
export interface GarminAuth extends ProviderAuth {
  readonly upgrade: (credentials: Credentials) => Effect.Effect<Connected, AuthError>
}

export interface UpgradeOptions {
  readonly concurrency: number
  readonly onProgress: (progress: MigrationProgress) => Effect.Effect<void>
}

/** One connection's exchange: OAuth 2.0 tokens, the OAuth 1.0a pair kept for the grace period. */
export const upgradeOne = (exchange: GarminAuth["upgrade"], credentials: Credentials, providerUserId: string, now = Date.now()) =>
  Effect.gen(function* () {
    const pair = usableOAuth1(credentials, now)
    const connected = yield* exchange(credentials)
    if (connected.providerUserId !== providerUserId) {
      return yield* new AccountMismatch({ message: `the provider says the new token belongs to another account (${connected.providerUserId})` })
    }
    const state = pair === undefined ? undefined : encodeState({ oauth1: pair, oauth1ValidUntil: new Date(now + Duration.toMillis(OAUTH1_GRACE)) })
    return { tokens: { ...connected.tokens, state }, flow: OAUTH2 } satisfies Replacement
  })

/** Moves every active OAuth 1.0a connection of provider `providerId` to OAuth 2.0. */
export const migrateToOAuth2 = (
  connections: ConnectionRewrites,
  exchange: GarminAuth["upgrade"],
  options: UpgradeOptions,
  providerId = "garmin"
): Effect.Effect<MigrationReport, SqlError> =>
  Effect.gen(function* () {
    const candidates = yield* connections.activeConnections(providerId, { flow: OAUTH1 })
    const failures: Array<MigrationReport["failures"][number]> = []
    let migrated = 0
    let skipped = 0
    let done = 0
    const total = candidates.length
    yield* options.onProgress({ total, done, migrated, failed: 0 })

    const migrateOne = (candidate: (typeof candidates)[number]) =>
      connections.replaceCredentials(candidate.id, (held) => upgradeOne(exchange, held.credentials, held.providerUserId), { flow: OAUTH1 }).pipe(
        Effect.catchTags({
          AuthError: (e) => Effect.succeed({ reason: e.message }),
          AccountMismatch: (e) => Effect.succeed({ reason: e.message }),
          DecryptionError: () => Effect.succeed({ reason: "stored tokens could not be decrypted (wrong WEARFLOW_ENCRYPTION_KEY?)" })
        }),
        Effect.tap((result) =>
          Effect.suspend(() => {
            done++
            if (result === "replaced") migrated++
            else if (result === "skipped") skipped++
            else failures.push({ user_id: candidate.user_id, client_user_id: candidate.client_user_id, provider_user_id: candidate.provider_user_id, reason: result.reason })
            return options.onProgress({ total, done, migrated, failed: failures.length })
          })
        )
      )

    yield* Effect.forEach(candidates, migrateOne, { concurrency: options.concurrency, discard: true })
    return { total, migrated, skipped, failures } satisfies MigrationReport
  })
