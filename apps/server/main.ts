/**
 * The Wearflow server: configuration → layers → HTTP API and background workers, on Bun.
 * With DATABASE_URL unset it runs an embedded Postgres under WEARFLOW_DATA_DIR.
 */
import { HttpApiBuilder, HttpApiScalar, HttpMiddleware, HttpServer } from "@effect/platform"
import { BunHttpServer, BunRuntime } from "@effect/platform-bun"
import { Accounts } from "@wearflow/core/accounts"
import * as ApiKeyAuth from "@wearflow/core/api-key-auth"
import { Backfills, startChain } from "@wearflow/core/backfill/backfills"
import * as BackfillChains from "@wearflow/core/backfill/chain"
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { BackfillStatus } from "@wearflow/core/backfill/status"
import * as Engine from "@wearflow/core/engine"
import { Connections } from "@wearflow/core/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as OutboundHttp from "@wearflow/core/http-client"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import { IngestBacklog, IngestQueue, Inbox, InboxSettings, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import * as InboxRetention from "@wearflow/core/pipeline/retention"
import { IngestWorker, layerTakers } from "@wearflow/core/pipeline/ingest"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { DataQuery } from "@wearflow/core/query"
import * as Registry from "@wearflow/core/registry"
import * as Database from "@wearflow/core/storage/database"
import { Effect, Layer, Logger, Option } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import WearflowConfig from "../../wearflow.config.ts"
import { withPluginRoutes } from "./Api.ts"
import { BackfillConfig, resolveApiKey, resolveEncryptionKey, RunnerConfig, runnerAddress, ServerConfig } from "./config.ts"
import { BackfillLive, DataLive, LinkLive, UsersLive } from "./handlers.ts"
import { HealthRoute } from "./health.ts"
import { MetricsRoute } from "./metrics.ts"
import { layerRetryAfter, layerWithoutEchoedInput } from "./middleware.ts"

const AppLayer = Effect.gen(function* () {
  const config = yield* ServerConfig
  const apiKey = yield* resolveApiKey(config)
  const encryptionKey = yield* resolveEncryptionKey(config)

  const Storage = Layer.mergeAll(
    Layer.merge(IngestQueue.layer, IngestBacklog.layer).pipe(Layer.provide(layerQueueStore({ lockExpiration: config.queueLockExpiration }))),
    layerTokenCipher(encryptionKey),
    Layer.succeed(InboxSettings, { partBytes: config.partBytes, partItems: config.partItems, partsInFlight: config.partsInFlight })
  ).pipe(Layer.provideMerge(Database.layer({ url: config.databaseUrl, dataDir: config.dataDir, wait: config.databaseWait })))

  // The configured plugins, each built once in its sandbox: their routes, the providers the
  // workers use and the sinks the runners drive share it.
  const plugins = yield* Registry.loadPlugins((yield* WearflowConfig).plugins, fileURLToPath(new URL("../../", import.meta.url)))
  const Plugins = Registry.layer(plugins).pipe(Layer.provide(ApiKeyAuth.layer))

  const runner = yield* RunnerConfig
  const Core = Layer.mergeAll(Accounts.Default, Inbox.Default, RecordStore.Default, DataQuery.Default).pipe(
    Layer.provideMerge(Layer.mergeAll(
      Engine.layer({ runnerAddress: runnerAddress(runner, config.port), lockExpiration: runner.lockExpiration }),
      Layer.succeed(BackfillSettings, yield* BackfillConfig)
    )),
    Layer.provideMerge(Storage)
  )

  const publicUrl = Option.getOrElse(config.publicUrl, () => `http://localhost:${config.port}`)

  // The connections the providers keep up.
  const ConnectionsLive = Connections.Default.pipe(Layer.provideMerge(Plugins))

  // Backfills: the chains run here; those recorded but never started (a crash right after a link) start now.
  const BackfillsLive = BackfillChains.layer.pipe(Layer.provideMerge(Layer.merge(Backfills.Default, BackfillStatus.Default)))
  const ResumeScheduled = Layer.effectDiscard(
    Effect.flatMap(Backfills, (backfills) => backfills.scheduled).pipe(
      Effect.flatMap((ids) => Effect.forEach(ids, startChain, { discard: true })),
      Effect.catchAllCause((cause) => Effect.logError("could not start scheduled backfills", cause))
    )
  )

  const Bootstrap = Layer.effectDiscard(Effect.flatMap(Accounts, (accounts) => accounts.ensureTeamKey("default", apiKey)))

  // After a key rotation, tokens move to the new key in the background (plugins move their own secrets).
  const TokenRotation = Layer.scopedDiscard(
    Effect.flatMap(Accounts, (accounts) => accounts.reencryptTokens()).pipe(
      Effect.tap((moved) => (moved > 0 ? Effect.logInfo("re-encrypted provider tokens with the current key").pipe(Effect.annotateLogs("connections", moved)) : Effect.void)),
      Effect.catchAllCause((cause) => Effect.logError("could not re-encrypt provider tokens", cause)),
      Effect.forkScoped
    )
  )

  const Workers = Layer.mergeAll(
    layerTakers(config.ingestConcurrency).pipe(
      Layer.provide(IngestWorker.layer({ pullBackoff: config.pullBackoff })),
      Layer.provide(Option.match(config.filesBucket, {
        onNone: () => ActivityFiles.layerLocal(path.join(config.dataDir, "files")),
        onSome: (bucket) => ActivityFiles.layerS3(bucket, path.join(config.dataDir, "files"))
      }))
    ),
    Connections.layerRefresher(config.tokenRefresh),
    InboxRetention.layer({ retention: config.inboxRetention, interval: config.inboxRetentionInterval }),
    SinkRunner.layerAll()
  )

  const api = withPluginRoutes(Registry.routesOf(plugins))
  const Api = HttpApiBuilder.api(api).pipe(
    Layer.provide([
      Layer.mergeAll(UsersLive(publicUrl), DataLive, BackfillLive).pipe(Layer.provide(ApiKeyAuth.layer)),
      LinkLive(publicUrl)
    ])
  )

  const Http = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
    Layer.provide(layerWithoutEchoedInput(api)),
    Layer.provide(layerRetryAfter),
    Layer.provide(Layer.merge(MetricsRoute, HealthRoute({ ingestStallAfter: config.ingestStallAfter }))),
    Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(Api),
    HttpServer.withLogAddress,
    // Bun closes a connection silent for 10 s by default, before a request's own bounded wait
    // (WEARFLOW_DATABASE_WAIT, plus a provider call) could answer 503 with Retry-After.
    Layer.provide(BunHttpServer.layer({ port: config.port, hostname: config.host, maxRequestBodySize: config.maxBodyBytes, idleTimeout: 60 }))
  )

  return Layer.mergeAll(Http, Workers, TokenRotation, ResumeScheduled).pipe(
    Layer.provide(Bootstrap),
    Layer.provideMerge(BackfillsLive),
    Layer.provideMerge(ConnectionsLive),
    Layer.provide(Core),
    Layer.provide(OutboundHttp.layer())
  )
}).pipe(Layer.unwrapEffect)

const LoggingLayer = Effect.gen(function* () {
  const { logLevel } = yield* ServerConfig
  return Layer.merge(Logger.json, Logger.minimumLogLevel(logLevel))
}).pipe(Layer.unwrapEffect)

Layer.launch(AppLayer).pipe(Effect.provide(LoggingLayer), BunRuntime.runMain({ disablePrettyLogger: true }))
