/**
 * Withings' rate limit (about 120 requests a minute for all users of the application) as one
 * budget every process draws on: a fixed window kept in the database
 * (core/storage/rate-limiter-store.ts), so several servers together stay under it. An
 * optional per-user limit (WITHINGS_USER_RATE_LIMIT) is drawn in the same window.
 */
import { RateLimiter } from "@effect/experimental/RateLimiter"
import * as RateLimiterStore from "@wearflow/core/storage/rate-limiter-store"
import * as HttpClient from "@effect/platform/HttpClient"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { WithingsConfig } from "./config.ts"

/** Whether a request may go now, or how long until the budget has room. */
export type Turn = { readonly _tag: "Go" } | { readonly _tag: "Wait"; readonly after: Duration.Duration }

export interface RequestBudget {
  /** Takes one request from the budget (and from the user's, when `user` is given and limited). */
  readonly take: (user: string | undefined) => Effect.Effect<Turn>
}

export class WithingsBudget extends Context.Tag("wearflow/providers/WithingsBudget")<WithingsBudget, RequestBudget>() {}

export const layer = Layer.effect(
  WithingsBudget,
  Effect.gen(function* () {
    const { rateLimit, userRateLimit } = yield* WithingsConfig
    const limiter = yield* RateLimiter
    const consume = (key: string, limit: number): Effect.Effect<Turn> =>
      limiter.consume({ algorithm: "fixed-window", onExceeded: "fail", window: rateLimit.window, limit, key }).pipe(
        Effect.as<Turn>({ _tag: "Go" }),
        Effect.catchAll((error) =>
          error.reason === "Exceeded"
            ? Effect.succeed<Turn>({ _tag: "Wait", after: Duration.max(error.retryAfter, Duration.millis(1)) })
            // The budget is a courtesy to Withings, which enforces its limit itself (status
            // 601): without the database the request goes, and a 601 is handled as such.
            : Effect.logWarning("Withings' shared request budget could not be read; the request goes unmetered").pipe(Effect.as<Turn>({ _tag: "Go" }))
        )
      )
    const take = (user: string | undefined): Effect.Effect<Turn> =>
      Option.match(Option.filter(userRateLimit, () => user !== undefined), {
        onNone: () => consume("withings:requests", rateLimit.requests),
        onSome: (perUser) =>
          Effect.flatMap(consume(`withings:user:${user}`, perUser), (turn) => turn._tag === "Go" ? consume("withings:requests", rateLimit.requests) : Effect.succeed(turn))
      })
    return { take }
  })
).pipe(Layer.provide(RateLimiterStore.layerRateLimiter))

/** A budget that never waits, for code run without a database. */
export const unlimited: RequestBudget = { take: () => Effect.succeed({ _tag: "Go" }) }

/** Waits until the budget lets a request go (however long that is), then takes it. */
export const waitTurn = (budget: RequestBudget): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (;;) {
      const next = yield* budget.take(undefined)
      if (next._tag === "Go") return
      yield* Effect.sleep(next.after)
    }
  })

/**
 * A client whose every request first takes its turn from the budget: for calls made outside
 * the plugin's RPC helper (core's OAuth module exchanging codes and refreshing tokens), which
 * count against Withings' limit like any other.
 */
export const metered = (client: HttpClient.HttpClient, budget: RequestBudget): HttpClient.HttpClient =>
  HttpClient.mapRequestEffect(client, (request) => Effect.as(waitTurn(budget), request))
