/**
 * The server's parts, each from its configuration: storage (database, queue, cipher), the
 * core services, the background workers, and the HTTP server with the app's and the plugins'
 * routes. App.ts puts them together.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import { BunHttpServer } from "@effect/platform-bun"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { ApiKeys } from "@wearflow/core/tenancy/api-keys"
import { Links } from "@wearflow/core/connections/links"
import * as ApiKeyAuth from "@wearflow/core/tenancy/api-key-auth"
import { Backfills, layerHistoryObserver } from "@wearflow/core/backfill/backfills"
import * as BackfillChains from "@wearflow/core/backfill/chain"
import * as OnConnect from "@wearflow/core/backfill/on-connect"
import * as Parked from "@wearflow/core/pipeline/parked"
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { BackfillStatus } from "@wearflow/core/backfill/status"
import { Connections } from "@wearflow/core/connections/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Engine from "@wearflow/core/engine"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import { IngestBacklog, IngestQueue, Inbox, InboxSettings, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { IngestWorker, layerTakers } from "@wearflow/core/pipeline/ingest"
import * as Retention from "@wearflow/core/pipeline/retention"
import * as UserErasure from "@wearflow/core/erasure/erase"
import * as GapMonitor from "@wearflow/core/pipeline/gap-monitor"
import * as OperatorWebhook from "@wearflow/core/operator-webhook"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { DataQuery } from "@wearflow/core/query"
import { ResourceIntrospection } from "@wearflow/core/introspect"
import * as Database from "@wearflow/core/storage/database"
import * as SyncOnConnect from "@wearflow/core/sync/on-connect"
import * as SyncPoll from "@wearflow/core/sync/poll"
import { SyncSettings } from "@wearflow/core/sync/settings"
import { SyncStatus } from "@wearflow/core/sync/status"
import { RawRoutes } from "@wearflow/core/registry"
import { type Config as EffectConfig, Effect, Layer, Option, type Redacted } from "effect"
import * as path from "node:path"
import type { WearflowApi } from "./Api.ts"
import { type AlertConfig, type BackfillConfig, receivesOnly, type RunnerConfig, runnerAddress, type ServerConfig, type SyncConfig } from "./config.ts"
import { DashboardLive, DashboardRoute } from "./dashboard/Http.ts"
import { DocsRoute } from "./docs-route.ts"
import { layerPartGarbage } from "./large-body-garbage.ts"
import { BackfillLive, DataLive, LinkLive, UsersLive } from "./handlers.ts"
import { UserLifecycleLive } from "./users/Http.ts"
import { AdminAlertsLive, AlertsLive } from "./alerts/Http.ts"
import { HealthRoute } from "./health.ts"
import { IntrospectLive } from "./introspect/Http.ts"
import { MetricsRoute } from "./metrics.ts"
import { TeamsLive } from "./teams/Http.ts"
import { bunRoutes } from "./raw-routes.ts"
import { layerRetryAfter, layerWithoutEchoedInput } from "./middleware.ts"

type Config = EffectConfig.Config.Success<typeof ServerConfig>

export const Storage = (config: Config, encryptionKey: Redacted.Redacted<ReadonlyArray<Uint8Array>>) =>
  Layer.mergeAll(
    Layer.merge(IngestQueue.layer, IngestBacklog.layer).pipe(Layer.provide(layerQueueStore({ lockExpiration: config.queueLockExpiration }))),
    layerTokenCipher(encryptionKey),
    Layer.succeed(InboxSettings, { partBytes: config.partBytes, partItems: config.partItems, partsInFlight: config.partsInFlight })
  ).pipe(Layer.provideMerge(Database.layer({ url: config.databaseUrl, dataDir: config.dataDir, wait: config.databaseWait, maxConnections: config.databasePool, preparedStatements: config.databasePreparedStatements })))

export const Core = (
  config: Config,
  runner: EffectConfig.Config.Success<typeof RunnerConfig>,
  backfill: EffectConfig.Config.Success<typeof BackfillConfig>,
  sync: EffectConfig.Config.Success<typeof SyncConfig>
) =>
  Layer.mergeAll(
    // Linking replays parked notifications, schedules the connection's backfill and its poll: hooks the upper floors provide.
    Links.Default.pipe(Layer.provide(Layer.mergeAll(Parked.layer, OnConnect.layer, SyncOnConnect.layer)), Layer.provideMerge(Accounts.Default)),
    Inbox.Default,
    SyncStatus.Default,
    RecordStore.Default,
    DataQuery.Default,
    ApiKeys.Default,
    ResourceIntrospection.Default
  ).pipe(
    Layer.provideMerge(Layer.mergeAll(
      Engine.layer({ runnerAddress: receivesOnly(config) ? undefined : runnerAddress(runner, config.port), lockExpiration: runner.lockExpiration }),
      Layer.succeed(BackfillSettings, backfill),
      Layer.succeed(SyncSettings, sync)
    ))
  )

/** Backfill chains run in every process; their status feeds the API and the CLI. */
export const Backfilling = Layer.merge(BackfillChains.layer, layerHistoryObserver).pipe(Layer.provideMerge(Layer.merge(Backfills.Default, BackfillStatus.Default)))

export const Workers = (config: Config) => {
  const files = Option.match(config.filesBucket, {
    onNone: () => ActivityFiles.layerLocal(path.join(config.dataDir, "files")),
    onSome: (bucket) => ActivityFiles.layerS3(bucket, path.join(config.dataDir, "files"))
  })
  return Layer.mergeAll(
    layerTakers(config.ingestConcurrency).pipe(
      Layer.provide(IngestWorker.layer({ pullBackoff: config.pullBackoff })),
      Layer.provide(files),
      Layer.provide(layerPartGarbage)
    ),
    Connections.layerRefresher(config.tokenRefresh),
    Retention.layer(config.retention),
    UserErasure.layer.pipe(Layer.provide(files)),
    SinkRunner.layerAll(),
    // Polled connections: their durable polls, started when linked and again at start.
    SyncPoll.layerStarter.pipe(Layer.provideMerge(SyncPoll.layer))
  )
}

/**
 * Silent-gap monitoring (its arrivals sink and its rounds) in every process, and the operator
 * webhook sending alert events when WEARFLOW_OPERATOR_WEBHOOK_URL is set.
 */
export const Alerting = (alerts: EffectConfig.Config.Success<typeof AlertConfig>, secret: Option.Option<Redacted.Redacted<string>>) =>
  Layer.mergeAll(
    GapMonitor.layer(alerts),
    Option.match(Option.all({ url: alerts.operatorWebhookUrl, secret }), {
      onNone: () => Layer.empty,
      onSome: ({ secret, url }) => OperatorWebhook.layer({ url, secret, backoff: alerts.operatorWebhookBackoff, timeout: alerts.operatorWebhookTimeout })
    })
  )

/**
 * The HTTP server: `api` (the app's groups and the plugins'), health, metrics, docs; the
 * plugins' raw webhook routes are answered before it (raw-routes.ts).
 */
export const Http = (config: Config, api: typeof WearflowApi, traced: boolean) => {
  const publicUrl = Option.getOrElse(config.publicUrl, () => `http://localhost:${config.port}`)
  const Api = HttpApiBuilder.api(api).pipe(
    Layer.provide([
      Layer.mergeAll(UsersLive(publicUrl), DataLive, BackfillLive, DashboardLive, UserLifecycleLive, IntrospectLive, AlertsLive).pipe(Layer.provide(ApiKeyAuth.layer)),
      Layer.merge(TeamsLive, AdminAlertsLive).pipe(Layer.provide(ApiKeyAuth.layerAdmin)),
      LinkLive(publicUrl)
    ])
  )
  return HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
    Layer.provide(layerWithoutEchoedInput(api)),
    Layer.provide(layerRetryAfter),
    Layer.provide(Layer.mergeAll(MetricsRoute, HealthRoute({ ingestStallAfter: config.ingestStallAfter }), DashboardRoute)),
    Layer.provide(DocsRoute),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(Api),
    HttpServer.withLogAddress,
    // Without an exporter a span per request (its URL parsed, an attribute per header) is work
    // for nobody on the hottest path; with one, probes are left out.
    HttpMiddleware.withTracerDisabledWhen((request) => !traced || request.url === "/health" || request.url === "/metrics"),
    // Bun closes a connection silent for 10 s by default, before a request's own bounded wait
    // (WEARFLOW_DATABASE_WAIT, plus a provider call) could answer 503 with Retry-After.
    Layer.provide(Layer.unwrapEffect(Effect.gen(function* () {
      const routes = bunRoutes(yield* RawRoutes, yield* Effect.runtime<never>(), traced)
      return BunHttpServer.layer({ port: config.port, hostname: config.host, maxRequestBodySize: config.maxBodyBytes, idleTimeout: 60, routes })
    })))
  )
}
