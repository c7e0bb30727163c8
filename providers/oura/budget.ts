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

/** A budget that never waits, for code run without a database. */
export const unlimited: RequestBudget = { take: Effect.succeed({ _tag: "Go" }) }
