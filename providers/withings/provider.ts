/**
 * The Withings Provider: what the poll, the backfill chain and the ingest worker call. Every
 * touch-point with core's Provider contract is in this one object. Withings is read by
 * polling (sync.ts); its notifications only wake a connection's poll (notifications.ts).
 * Every request made on a user's behalf draws on Withings' application-wide rate limit,
 * shared by every process through the database (budget.ts).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { FetchError, type Provider } from "@wearflow/core/provider"
import { Context, Effect, Layer } from "effect"
import { makeAuth } from "./auth.ts"
import { makeBackfill } from "./backfill.ts"
import * as Budget from "./budget.ts"
import { WithingsConfig } from "./config.ts"
import { pageItemsOf } from "./items.ts"
import { linkPayload } from "./link.ts"
import { normalizers } from "./normalize.ts"
import { lifecycleOf, notificationItemsOf, NOTIFY_KIND } from "./notifications.ts"
import { makeCall } from "./rpc.ts"
import { makeSubscriptions } from "./subscriptions.ts"
import { makeSync } from "./sync.ts"

/**
 * The Withings scope each produced resource needs. Heart rate and SpO2 come from measures
 * (user.metrics) and from intraday activity and sleep (user.activity) alike, so neither is listed.
 */
export const resourceScopes: Readonly<Record<string, string>> = {
  body: "user.metrics",
  weight: "user.metrics",
  fat: "user.metrics",
  blood_pressure: "user.metrics",
  body_temperature: "user.metrics",
  vo2_max: "user.metrics",
  activity: "user.activity",
  steps: "user.activity",
  calories_active: "user.activity",
  distance: "user.activity",
  workouts: "user.activity",
  sleep: "user.activity",
  hrv: "user.activity",
  respiratory_rate: "user.activity"
}

/** The Withings Provider, built with the plugin's sandboxed HttpClient. */
export class WithingsProvider extends Context.Tag("wearflow/providers/WithingsProvider")<WithingsProvider, Provider>() {}

/** The Provider on a given request budget (tests without a database give it `Budget.unlimited`). */
export const layerProviderOn = Layer.effect(
  WithingsProvider,
  Effect.gen(function* () {
    const config = yield* WithingsConfig
    const client = yield* HttpClient.HttpClient
    const budget = yield* Budget.WithingsBudget
    const call = makeCall(client, config, budget)
    return {
      id: "withings",
      name: "Withings",
      // A stored notification is one hint that wakes the poll; a polled page holds records.
      itemsOf: (kind, body) => (kind === NOTIFY_KIND ? notificationItemsOf(body) : pageItemsOf(kind, body)),
      normalizers,
      // Pages hold the data itself: nothing is ever fetched by pointer.
      fetch: () => Effect.fail(new FetchError({ message: "Withings items carry their data; there is nothing to fetch", retryable: false })),
      lifecycle: lifecycleOf,
      // Either of user.metrics and user.activity delivers data on its own.
      requiredPermissions: [],
      resourceScopes,
      // Token exchanges and refreshes count against Withings' limit too.
      auth: makeAuth(Budget.metered(client, budget), config, call),
      backfill: makeBackfill(call, config),
      sync: makeSync(call, config, makeSubscriptions(call, config)),
      linkPayload
    } satisfies Provider
  })
)

/** The Provider on Withings' rate limit shared through the database. */
export const layerProvider = layerProviderOn.pipe(Layer.provide(Budget.layer))
