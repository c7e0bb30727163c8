/**
 * The Withings provider plugin for Withings' Public Health Data API: a pull-first provider.
 * Connections are polled on core's durable sync (sync.ts) for what changed since their
 * `lastupdate` cursor; Withings' notifications are hints that wake a connection's poll at
 * once (webhooks.ts), subscribed per user for what their scopes allow (subscriptions.ts).
 * OAuth 2.0 with Withings' quirks goes through core's OAuth module (auth.ts); every call is
 * Withings' RPC convention, status inside an HTTP 200 (rpc.ts), drawn from one rate-limit
 * budget shared by every process (budget.ts). History is the same fetching over a date range
 * (backfill.ts).
 */
import type { Manifest, Plugin } from "@wearflow/core/plugin"
import { Layer } from "effect"
import { WithingsApi } from "./Api.ts"
import { WithingsConfig, WithingsEnv, WithingsHosts } from "./config.ts"
import { layerProvider, WithingsProvider } from "./provider.ts"
import * as Webhooks from "./webhooks.ts"

export { WithingsApi } from "./Api.ts"
export { layerProvider, WithingsProvider } from "./provider.ts"

export const manifest: Manifest<WithingsConfig> = {
  id: "withings",
  kind: "provider",
  version: "0.1.0",
  permissions: { net: WithingsHosts, env: WithingsEnv },
  config: WithingsConfig
}

export const layer = Layer.mergeAll(Webhooks.layer, layerProvider)

export const plugin = {
  manifest,
  layer,
  provider: WithingsProvider,
  providerLayer: layerProvider,
  routes: [WithingsApi]
} satisfies Plugin
