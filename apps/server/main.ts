/**
 * The Wearflow server: configuration → layers → HTTP API and background workers, on Bun.
 * With DATABASE_URL unset it runs an embedded Postgres under WEARFLOW_DATA_DIR.
 */
import { HttpApiBuilder, HttpApiScalar, HttpMiddleware, HttpServer } from "@effect/platform"
import { BunHttpServer, BunRuntime } from "@effect/platform-bun"
import { Accounts } from "@wearflow/core/accounts"
import { Backfills, startChain } from "@wearflow/core/backfill/backfills"
import * as BackfillChains from "@wearflow/core/backfill/chain"
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { BackfillStatus } from "@wearflow/core/backfill/status"
import * as Engine from "@wearflow/core/engine"
import { Connections } from "@wearflow/core/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Host from "@wearflow/core/host"
import * as OutboundHttp from "@wearflow/core/http-client"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import { IngestBacklog, IngestQueue, Inbox, InboxSettings, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import * as InboxRetention from "@wearflow/core/pipeline/retention"
import { IngestWorker, layerTakers } from "@wearflow/core/pipeline/ingest"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { Providers } from "@wearflow/core/provider"
import { DataQuery } from "@wearflow/core/query"
import * as Database from "@wearflow/core/storage/database"
import * as Garmin from "@wearflow/garmin"
import * as PostgresSink from "@wearflow/sink-postgres"
import * as EtlSink from "@wearflow/sink-s3"
import * as WebhooksSink from "@wearflow/sink-webhooks"
import { Effect, Layer, Logger, Option } from "effect"
import * as path from "node:path"
import { WearflowApi } from "./Api.ts"
import { BackfillConfig, resolveApiKey, resolveEncryptionKey, RunnerConfig, runnerAddress, ServerConfig } from "./config.ts"
import { ApiKeyAuthLive, BackfillLive, DataLive, LinkLive, UsersLive } from "./handlers.ts"
import { HealthRoute } from "./health.ts"
import { MetricsRoute } from "./metrics.ts"
import { layerRetryAfter, layerWithoutEchoedInput } from "./middleware.ts"
import { WebhooksLive } from "./webhooks.ts"

const AppLayer = Effect.gen(function* () {
  const config = yield* ServerConfig
  const apiKey = yield* resolveApiKey(config)
  const encryptionKey = yield* resolveEncryptionKey(config)

  const Storage = Layer.mergeAll(
    Layer.merge(IngestQueue.layer, IngestBacklog.layer).pipe(Layer.provide(layerQueueStore({ lockExpiration: config.queueLockExpiration }))),
    layerTokenCipher(encryptionKey),
    Layer.succeed(InboxSettings, { partBytes: config.partBytes, partItems: config.partItems, partsInFlight: config.partsInFlight })
  ).pipe(Layer.provideMerge(Database.layer({ url: config.databaseUrl, dataDir: config.dataDir, wait: config.databaseWait })))

  // Built once: the webhook routes and the Provider the workers use share one sandbox.
  const GarminLive = Host.load(Garmin.plugin)

  const runner = yield* RunnerConfig
  const Core = Layer.mergeAll(Accounts.Default, Inbox.Default, RecordStore.Default, DataQuery.Default).pipe(
    Layer.provideMerge(Layer.mergeAll(
      Engine.layer({ runnerAddress: runnerAddress(runner, config.port), lockExpiration: runner.lockExpiration }),
      Layer.succeed(BackfillSettings, yield* BackfillConfig)
    )),
    Layer.provideMerge(Storage)
  )

  const publicUrl = Option.getOrElse(config.publicUrl, () => `http://localhost:${config.port}`)

  // The providers (with their sandboxed clients) and the connections they keep up.
  const ConnectionsLive = Connections.Default.pipe(
    Layer.provideMerge(Providers.fromTags(Garmin.GarminProvider).pipe(Layer.provide(GarminLive)))
  )

  // Backfills: the chains run here; those recorded but never started (a crash right after a link) start now.
  const BackfillsLive = BackfillChains.layer.pipe(Layer.provideMerge(Layer.merge(Backfills.Default, BackfillStatus.Default)))
  const ResumeScheduled = Layer.effectDiscard(
    Effect.flatMap(Backfills, (backfills) => backfills.scheduled).pipe(
      Effect.flatMap((ids) => Effect.forEach(ids, startChain, { discard: true })),
      Effect.catchAllCause((cause) => Effect.logError("could not start scheduled backfills", cause))
    )
  )

  const Bootstrap = Layer.effectDiscard(Effect.flatMap(Accounts, (accounts) => accounts.ensureTeamKey("default", apiKey)))

  // After a key rotation, tokens and webhook secrets move to the new key in the background.
  const TokenRotation = Layer.scopedDiscard(
    Effect.all([Accounts, WebhooksSink.WebhookEndpoints]).pipe(
      Effect.flatMap(([accounts, webhooks]) =>
        Effect.all([
          accounts.reencryptTokens().pipe(
            Effect.tap((moved) => (moved > 0 ? Effect.logInfo("re-encrypted provider tokens with the current key").pipe(Effect.annotateLogs("connections", moved)) : Effect.void)),
            Effect.catchAllCause((cause) => Effect.logError("could not re-encrypt provider tokens", cause))
          ),
          webhooks.reencrypt.pipe(
            Effect.tap((moved) => (moved > 0 ? Effect.logInfo("re-encrypted webhook secrets with the current key").pipe(Effect.annotateLogs("endpoints", moved)) : Effect.void)),
            Effect.catchAllCause((cause) => Effect.logError("could not re-encrypt webhook secrets", cause))
          )
        ])
      ),
      Effect.forkScoped
    )
  )

  // Built once: the sink runners, the management API and the health check share them.
  const SinkPlugins = Layer.mergeAll(Host.load(PostgresSink.plugin), Host.load(WebhooksSink.plugin), Host.load(EtlSink.plugin))

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
    SinkRunner.layer(PostgresSink.PostgresSink),
    // Short idle polls: webhook latency is the time from the outbox to the customer.
    SinkRunner.layer(WebhooksSink.WebhooksSink, { idle: "20 millis", batchSize: 1000 }),
    SinkRunner.layer(EtlSink.EtlSink, { batchSize: 2000 })
  )

  const Api = HttpApiBuilder.api(WearflowApi).pipe(
    Layer.provide([
      Layer.mergeAll(UsersLive(publicUrl), DataLive, BackfillLive, WebhooksLive).pipe(Layer.provide(ApiKeyAuthLive)),
      LinkLive(publicUrl),
      GarminLive
    ])
  )

  const Http = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
    Layer.provide(layerWithoutEchoedInput),
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
    Layer.provideMerge(SinkPlugins),
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
