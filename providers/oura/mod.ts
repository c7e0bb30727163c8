/**
 * The Oura provider plugin for Oura API v2: the OAuth 2.0 connect flow (auth.ts), history
 * pulled page by page (backfill.ts), and signed notify-then-fetch webhooks.
 *
 * The request path verifies a notification's signature, checks its shape, commits it to the
 * inbox and answers. The ingest worker then fetches the document it names and normalizes it
 * through the `OuraProvider` (provider.ts). A daemon keeps the application's webhook
 * subscriptions created and renewed (subscriptions.ts). Every request made for a user draws
 * on Oura's rate limit, shared by every process through the database (budget.ts).
 */
import type { Manifest, Plugin } from "@wearflow/core/plugin"
import { Layer } from "effect"
import { OuraApi } from "./Api.ts"
import { OuraConfig, OuraEnv, OuraHosts } from "./config.ts"
import { layerProvider, OuraProvider } from "./provider.ts"
import * as Subscriptions from "./subscriptions.ts"
import * as Webhooks from "./webhooks.ts"

export { OuraApi } from "./Api.ts"
export { layerProvider, OuraProvider } from "./provider.ts"

export const manifest: Manifest<OuraConfig> = {
  id: "oura",
  kind: "provider",
  version: "0.1.0",
  permissions: { net: OuraHosts, env: OuraEnv },
  config: OuraConfig
}

export const layer = Layer.mergeAll(Webhooks.layer, layerProvider, Subscriptions.layer)

export const plugin = {
  manifest,
  layer,
  provider: OuraProvider,
  providerLayer: layerProvider,
  routes: [OuraApi]
} satisfies Plugin
