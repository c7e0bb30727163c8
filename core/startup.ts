/**
 * What a server process does once at start, beside serving: make sure the bootstrap API key
 * opens a team, start backfill chains that were recorded but never started (a crash right
 * after a link), and move tokens to the current encryption key after a rotation. Each logs
 * its failure and lets the process serve.
 */
import { Effect, Layer, type Redacted } from "effect"
import { Accounts } from "./tenancy/accounts.ts"
import { Links } from "./connections/links.ts"
import { Backfills, startChain } from "./backfill/backfills.ts"

/** The operator's first API key opens the `default` team, as its admin key. */
export const layerBootstrapKey = (apiKey: Redacted.Redacted<string>) =>
  Layer.effectDiscard(Effect.flatMap(Accounts, (accounts) => accounts.ensureTeamKey("default", apiKey, { admin: true })))

export const layerResumeBackfills = Layer.effectDiscard(
  Effect.flatMap(Backfills, (backfills) => backfills.scheduled).pipe(
    Effect.flatMap((ids) => Effect.forEach(ids, startChain, { discard: true })),
    Effect.catchAllCause((cause) => Effect.logError("could not start scheduled backfills", cause))
  )
)

/** In the background: plugins move their own secrets (the webhooks sink its signing secrets). */
export const layerReencryptTokens = Layer.scopedDiscard(
  Effect.flatMap(Links, (links) => links.reencryptTokens()).pipe(
    Effect.tap((moved) => (moved > 0 ? Effect.logInfo("re-encrypted provider tokens with the current key").pipe(Effect.annotateLogs("connections", moved)) : Effect.void)),
    Effect.catchAllCause((cause) => Effect.logError("could not re-encrypt provider tokens", cause)),
    Effect.forkScoped
  )
)
