/**
 * The Oura Provider: what the ingest worker calls. Every touch-point with core's Provider
 * contract is in this one object, so the contract's coming renames (`pull` → `fetch`,
 * provider-defined inbox kinds, `carries: "record" | "pointer"`) are edits here and in
 * notifications.ts's two kind constants.
 */
import { HttpClient } from "@effect/platform"
import type { Provider } from "@wearflow/core/provider"
import { Context, Effect, Layer } from "effect"
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

export const layerProvider = Layer.effect(
  OuraProvider,
  Effect.gen(function* () {
    const config = yield* OuraConfig
    const client = yield* HttpClient.HttpClient
    return {
      id: "oura",
      name: "Oura",
      // A notification is one pointer (fetched); a fetched page holds records (normalized).
      itemsOf,
      normalizers,
      fetch: makeFetch(client, config),
      // Oura sends no deregistration or permission notice.
      lifecycle: () => undefined,
      // daily_activity, sleep and the daily scores: without it a ring delivers almost nothing.
      requiredPermissions: ["daily"],
      resourceScopes,
      // The connect flow comes with core's OAuth 2.0 module; until then accounts link with tokens the caller holds.
      auth: undefined,
      // History is pulled by Oura's plugin once core offers pull-based backfill.
      backfill: undefined,
      linkPayload
    } satisfies Provider
  })
)
