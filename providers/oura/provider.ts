/**
 * The Oura Provider: what the ingest worker and the backfill chain call. Every touch-point
 * with core's Provider contract is in this one object. Every request it makes on a user's
 * behalf (fetching a notified document, listing history) draws on Oura's rate limit, shared
 * by every process through the database (budget.ts).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { FetchError, type Provider } from "@wearflow/core/provider"
import { Context, Effect, Layer } from "effect"
import { makeAuth } from "./auth.ts"
import { makeBackfill } from "./backfill.ts"
import * as Budget from "./budget.ts"
import { OuraConfig } from "./config.ts"
import { makeFetch } from "./fetch.ts"
import { linkPayload } from "./link.ts"
import { normalizers } from "./normalize.ts"
import { itemsOf } from "./notifications.ts"

/** The Oura scope each produced resource needs (collection → scope, as the live API enforces). */
export const resourceScopes: Readonly<Record<string, string>> = {
  activity: "daily",
  sleep: "daily",
  hrv: "daily",
  respiratory_rate: "daily",
  body_temperature_delta: "daily",
  heartrate: "heartrate",
  workouts: "workout",
  blood_oxygen: "spo2",
  vo2_max: "heart_health"
}

/** The Oura Provider, built with the plugin's sandboxed HttpClient. */
export class OuraProvider extends Context.Tag("wearflow/providers/OuraProvider")<OuraProvider, Provider>() {}

/** The Provider on a given request budget (tests without a database give it `Budget.unlimited`). */
export const layerProviderOn = Layer.effect(
  OuraProvider,
  Effect.gen(function* () {
    const config = yield* OuraConfig
    const client = yield* HttpClient.HttpClient
    const budget = yield* Budget.OuraBudget
    const fetchDocument = makeFetch(client, config)
    return {
      id: "oura",
      name: "Oura",
      // A notification is one pointer (fetched); a fetched page holds records (normalized).
      itemsOf,
      normalizers,
      // A long wait for the shared budget goes back to the ingest worker, which retries later.
      fetch: (item, credentials) =>
        Budget.turn(budget).pipe(
          Effect.flatMap((wait) =>
            wait === undefined
              ? fetchDocument(item, credentials)
              : Effect.fail(new FetchError({ message: "Oura's shared request budget is used up for now", retryable: true, retryAfter: wait }))
          )
        ),
      // Oura sends no deregistration or permission notice.
      lifecycle: () => undefined,
      // daily_activity, sleep and the daily scores: without it a ring delivers almost nothing.
      requiredPermissions: ["daily"],
      resourceScopes,
      auth: makeAuth(client, config),
      backfill: makeBackfill(client, config, budget),
      linkPayload
    } satisfies Provider
  })
)

/** The Provider on Oura's rate limit shared through the database. */
export const layerProvider = layerProviderOn.pipe(Layer.provide(Budget.layer))
