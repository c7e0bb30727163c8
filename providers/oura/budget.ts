/**
 * Oura's rate limit (5,000 requests per 5 minutes per application, and the same per access
 * token) as one budget every process draws on: a fixed window kept in the database
 * (core/storage/rate-limiter-store.ts), so that several servers together stay under it. The
 * application's limit covers each token's (a token's requests are the application's too).
 */
import { RateLimiter } from "@effect/experimental/RateLimiter"
import * as RateLimiterStore from "@wearflow/core/storage/rate-limiter-store"
import { Context, Duration, Effect, Layer } from "effect"
import { OuraConfig } from "./config.ts"

/** Whether a request may go now, or how long until the budget has room. */
export type Turn = { readonly _tag: "Go" } | { readonly _tag: "Wait"; readonly after: Duration.Duration }

export interface RequestBudget {
  /** Takes one request from the budget when it has room (nothing is taken otherwise). */
  readonly take: Effect.Effect<Turn>
}

export class OuraBudget extends Context.Tag("wearflow/providers/OuraBudget")<OuraBudget, RequestBudget>() {}

const KEY = "oura:requests"

export const layer = Layer.effect(
  OuraBudget,
  Effect.gen(function* () {
    const { rateLimit } = yield* OuraConfig
    const limiter = yield* RateLimiter
    const take: Effect.Effect<Turn> = limiter.consume({ algorithm: "fixed-window", onExceeded: "fail", window: rateLimit.window, limit: rateLimit.requests, key: KEY }).pipe(
      Effect.as<Turn>({ _tag: "Go" }),
      Effect.catchAll((error) =>
        error.reason === "Exceeded"
          ? Effect.succeed<Turn>({ _tag: "Wait", after: Duration.max(error.retryAfter, Duration.millis(1)) })
          // The budget is a courtesy to Oura, which enforces its limit itself (429): without
          // the database the request goes, and a 429 is handled as such.
          : Effect.logWarning("Oura's shared request budget could not be read; the request goes unmetered").pipe(Effect.as<Turn>({ _tag: "Go" }))
      )
    )
    return { take }
  })
).pipe(Layer.provide(RateLimiterStore.layerRateLimiter))

/** A wait this short is waited out where the request is made; a longer one is handed back. */
export const MAX_INLINE_WAIT = Duration.seconds(10)

/**
 * Takes a turn, waiting out short waits; answers undefined once the request may go, or the
 * wait when it is longer than MAX_INLINE_WAIT (the caller tries again after it).
 */
export const turn = (budget: RequestBudget): Effect.Effect<Duration.Duration | undefined> =>
  Effect.gen(function* () {
    for (;;) {
      const next = yield* budget.take
      if (next._tag === "Go") return undefined
      if (Duration.greaterThan(next.after, MAX_INLINE_WAIT)) return next.after
      yield* Effect.sleep(next.after)
    }
  })

/** A budget that never waits, for code run without a database. */
export const unlimited: RequestBudget = { take: Effect.succeed({ _tag: "Go" }) }
