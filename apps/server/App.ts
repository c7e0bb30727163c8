/**
 * The composition root: configuration → the configured plugins → storage, core services,
 * connections, backfills, workers and the HTTP server. With DATABASE_URL unset it runs an
 * embedded Postgres under WEARFLOW_DATA_DIR.
 */
import * as ApiKeyAuth from "@wearflow/core/tenancy/api-key-auth"
import { Connections } from "@wearflow/core/connections/connections"
import { ErasureSettings, UserDeletion } from "@wearflow/core/erasure/deletion"
import * as OutboundHttp from "@wearflow/core/http-client"
import * as Registry from "@wearflow/core/registry"
import * as Startup from "@wearflow/core/startup"
import { Tracing } from "@wearflow/core/tracing"
import { Effect, Layer } from "effect"
import { fileURLToPath } from "node:url"
import WearflowConfig from "../../wearflow.config.ts"
import { withPluginRoutes } from "./Api.ts"
import { AlertConfig, BackfillConfig, ErasureConfig, resolveApiKey, resolveEncryptionKey, resolveOperatorWebhookSecret, RunnerConfig, ServerConfig, SyncConfig } from "./config.ts"
import { Alerting, Backfilling, Core, Http, Storage, Workers } from "./layers.ts"

export const App = Effect.gen(function* () {
  const config = yield* ServerConfig
  // Each configured plugin is built once, in its sandbox: its routes, provider or sink share it.
  const plugins = yield* Registry.loadPlugins((yield* WearflowConfig).plugins, fileURLToPath(new URL("../../", import.meta.url)))
  const Plugins = Registry.layer(plugins).pipe(Layer.provide(ApiKeyAuth.layer))
  const api = withPluginRoutes(Registry.routesOf(plugins))
  const alerts = yield* AlertConfig

  return Layer.mergeAll(Http(config, api, (yield* Tracing).enabled), Workers(config), Alerting(alerts, yield* resolveOperatorWebhookSecret(config, alerts)), Startup.layerReencryptTokens, Startup.layerResumeBackfills).pipe(
    Layer.provide(Startup.layerBootstrapKey(yield* resolveApiKey(config))),
    Layer.provideMerge(Backfilling),
    Layer.provideMerge(UserDeletion.Default.pipe(Layer.provideMerge(Layer.succeed(ErasureSettings, yield* ErasureConfig)))),
    Layer.provideMerge(Connections.Default.pipe(Layer.provideMerge(Plugins))),
    Layer.provide(Core(config, yield* RunnerConfig, yield* BackfillConfig, yield* SyncConfig)),
    Layer.provideMerge(Storage(config, yield* resolveEncryptionKey(config))),
    Layer.provide(OutboundHttp.layer())
  )
}).pipe(Layer.unwrapEffect)
