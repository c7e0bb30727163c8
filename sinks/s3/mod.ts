/**
 * The ETL sink: resource data as files for data teams — gzipped NDJSON (default) or
 * Parquet — in an S3-compatible bucket or a local directory (the default,
 * `<data dir>/etl`). Layout, Hive-style, under the prefix:
 *
 *   resource=<resource>/date=<YYYY-MM-DD>/<batch>.ndjson.gz     data, one row per record or sample
 *   _manifests/resource=<resource>/date=<YYYY-MM-DD>/<batch>.json  written last: the batch is complete
 *   _schemas/<resource>.json, _schemas/<resource>/<version>.json  JSON Schema of the rows
 *
 * `date` is the UTC day the batch was sealed. Batching and the one-copy guarantee: batches.ts.
 *
 * Net permission: the bucket's host (the configured endpoint, or AWS S3's in the region). The
 * SDK's requests go through the HttpClient the plugin host gives the sink (http-handler.ts),
 * so any other host is refused; a bucket whose endpoint is not declared fails the layer. One exception: without explicit keys, the SDK's default
 * credential chain may ask the instance-metadata service (EC2, ECS) over its own connections.
 */
import { forkWhenWorking, type Manifest, type Plugin } from "@wearflow/core/plugin"
import { type OutboxEntry, type Sink, SinkError, sinkErrorFromSql } from "@wearflow/core/sink"
import { Config, Context, Effect, Layer, Option } from "effect"
import { EtlApi } from "./Api.ts"
import * as Batches from "./batches.ts"
import { EtlLive } from "./http.ts"
import * as Retention from "./retention.ts"
import { migrate } from "./migrations.ts"
import * as ObjectStore from "./object-store.ts"
import { config, type Settings } from "./settings.ts"

export const manifest: Manifest<Settings> = {
  id: "s3",
  kind: "sink",
  version: "0.1.0",
  permissions: {
    net: Config.all({
      endpoint: Config.option(Config.url("WEARFLOW_ETL_S3_ENDPOINT")),
      region: Config.string("WEARFLOW_ETL_S3_REGION").pipe(Config.withDefault("us-east-1"))
    }).pipe(
      Config.map(({ endpoint, region }) =>
        Option.match(endpoint, { onSome: (url) => [url.host], onNone: () => [`s3.${region}.amazonaws.com`, `*.s3.${region}.amazonaws.com`] })
      )
    ),
    env: ["WEARFLOW_ETL_*", "WEARFLOW_DATA_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
  },
  config
}

export class EtlSink extends Context.Tag("wearflow/sinks/EtlSink")<EtlSink, Sink>() {}

const classify = sinkErrorFromSql("s3")

/** The sink, with its flusher running for the layer's lifetime. Off (WEARFLOW_ETL_ENABLED=false): a sink that takes nothing. */
export const layer = Layer.scoped(
  EtlSink,
  Effect.gen(function* () {
    const settings = yield* config
    if (!settings.enabled) {
      return { id: manifest.id, reads: "entries", deliver: () => Effect.void, health: Effect.void } satisfies Sink
    }
    yield* migrate
    const store = settings.destination._tag === "Bucket"
      ? yield* ObjectStore.bucket(settings.destination.location, { plugin: manifest.id, hosts: yield* manifest.permissions.net })
      : ObjectStore.directory(settings.destination.path)
    const batches = yield* Batches.make(settings, store)
    yield* forkWhenWorking(batches.run.pipe(Effect.annotateLogs("sink", manifest.id)))
    // In the background: a slow or unreachable store must not hold up the server's start.
    yield* batches.probe.pipe(
      Effect.zipRight(batches.publishSchemas),
      Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new ObjectStore.StorageError({ message: `${store.location}: no answer within 30 s` }) }),
      Effect.zipRight(Effect.logInfo("ETL files go to " + store.location).pipe(Effect.annotateLogs({ format: settings.format }))),
      Effect.catchAll((e) => Effect.logWarning("ETL storage is not writable yet; batches will wait").pipe(Effect.annotateLogs("error", e.message))),
      Effect.annotateLogs("sink", manifest.id),
      Effect.forkScoped
    )
    return {
      id: manifest.id,
      reads: "entries",
      deliver: (entries: ReadonlyArray<OutboxEntry>) => batches.stage(entries).pipe(Effect.mapError(classify)),
      health: batches.probe.pipe(Effect.mapError((e) => new SinkError({ message: e.message, retryable: true, cause: e }))),
      afterCommit: batches.wake,
      // Staged references to a deleted user's events (the events themselves go from the outbox
      // next); a batch whose event is gone writes without it.
      eraseUser: (userId) => batches.unstageUser(userId).pipe(Effect.mapError(classify)),
      historicalData: settings.historicalData,
      retention: yield* Retention.make
    } satisfies Sink
  })
)

/** The plugin: the sink and its flusher, and the team's read route over its staging (Api.ts). */
export const plugin = {
  manifest,
  layer: EtlLive.pipe(Layer.provideMerge(layer)),
  sink: { tag: EtlSink, pacing: { batchSize: 10_000 } },
  routes: [EtlApi]
} satisfies Plugin
