/**
 * The composition root: configuration → the configured plugins → storage, core services,
 * connections, backfills, workers and the HTTP server. With DATABASE_URL unset it runs an
 * embedded Postgres under WEARFLOW_DATA_DIR. WEARFLOW_ROLE picks what this process does; an
 * `all` server with WEARFLOW_WORKER_PROCESSES > 0 receives, and its worker processes work.
 */
import * as ApiKeyAuth from "@wearflow/core/tenancy/api-key-auth"
import { Connections } from "@wearflow/core/connections/connections"
import { ErasureSettings, UserDeletion } from "@wearflow/core/erasure/deletion"
import * as OutboundHttp from "@wearflow/core/http-client"
import { BackgroundWork } from "@wearflow/core/plugin"
import * as Registry from "@wearflow/core/registry"
import * as Startup from "@wearflow/core/startup"
import { Tracing } from "@wearflow/core/tracing"
import { Effect, Layer, Option } from "effect"
import { fileURLToPath } from "node:url"
import WearflowConfig from "../../wearflow.config.ts"
import { withPluginRoutes } from "./Api.ts"
import { DatabaseUrl } from "@wearflow/core/storage/database"
import { AlertConfig, BackfillConfig, ErasureConfig, receivesOnly, resolveApiKey, resolveEncryptionKey, resolveOperatorWebhookSecret, RunnerConfig, runnerAddress, ServerConfig, SyncConfig } from "./config.ts"
import { Alerting, Backfilling, Core, Http, Storage, Workers } from "./layers.ts"
import * as WorkerProcesses from "./worker-processes.ts"

export const App = Effect.gen(function* () {
  const config = yield* ServerConfig
  // Each configured plugin is built once, in its sandbox: its routes, provider or sink share it.
  const plugins = yield* Registry.loadPlugins((yield* WearflowConfig).plugins, fileURLToPath(new URL("../../", import.meta.url)))
  const Plugins = Registry.layer(plugins).pipe(Layer.provide(ApiKeyAuth.layer))
  const runner = yield* RunnerConfig
  const supervising = config.role === "all" && config.workerProcesses > 0

  // Requests and provider webhooks, and what a deployment does once at start.
  const Receiving = config.role === "worker"
    ? Layer.empty
    : Layer.mergeAll(
        Http(config, withPluginRoutes(Registry.routesOf(plugins)), (yield* Tracing).enabled),
        Startup.layerReencryptTokens,
        Startup.layerResumeBackfills
      ).pipe(
        Layer.provide(Startup.layerBootstrapKey(yield* resolveApiKey(config))),
        Layer.provide(supervising
          ? Layer.unwrapEffect(Effect.map(DatabaseUrl, (databaseUrl) =>
            WorkerProcesses.layer({ count: config.workerProcesses, databaseUrl, runnerAddress: runnerAddress(runner, config.port) })))
          : Layer.empty)
      )
  // Ingest, sinks, polls, token refresh, retention, alerts: in this process unless its workers do them.
  const alerts = yield* AlertConfig
  const Working = receivesOnly(config)
    ? Layer.empty
    : Layer.merge(Workers(config), Alerting(alerts, yield* resolveOperatorWebhookSecret(config, alerts)))

  const Supervised = config.role === "worker" && Option.isSome(config.processName) ? WorkerProcesses.layerInWorker(config.processName.value) : Layer.empty

  return Layer.mergeAll(Receiving, Working, Supervised).pipe(
    Layer.provideMerge(Backfilling),
    Layer.provideMerge(UserDeletion.Default.pipe(Layer.provideMerge(Layer.succeed(ErasureSettings, yield* ErasureConfig)))),
    Layer.provideMerge(Connections.Default.pipe(Layer.provideMerge(Plugins))),
    Layer.provide(Core(config, runner, yield* BackfillConfig, yield* SyncConfig)),
    Layer.provideMerge(Storage(config, yield* resolveEncryptionKey(config))),
    Layer.provide(OutboundHttp.layer()),
    // What only receives starts none of the plugins' background loops.
    Layer.provide(Layer.succeed(BackgroundWork, !receivesOnly(config)))
  )
}).pipe(Layer.unwrapEffect)
