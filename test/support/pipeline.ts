/**
 * The pipeline's services on a test database, as the server wires them: inbox → ingest
 * worker → store + outbox, with the Garmin provider loaded through the plugin host.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import * as OnConnect from "@wearflow/core/backfill/on-connect"
import * as Parked from "@wearflow/core/pipeline/parked"
import { Backfills, layerHistoryObserver } from "@wearflow/core/backfill/backfills"
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import * as Engine from "@wearflow/core/engine"
import { Connections } from "@wearflow/core/connections/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Host from "@wearflow/core/host"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import { Inbox, IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { Providers } from "@wearflow/core/provider"
import { DataQuery } from "@wearflow/core/query"
import * as Database from "@wearflow/core/storage/database"
import * as Garmin from "@wearflow/garmin"
import { ConfigProvider, type Duration, Layer, Option, Redacted } from "effect"

export interface PipelineOptions {
  readonly databaseUrl: Redacted.Redacted<string>
  /** Token encryption keys: the first encrypts, every one decrypts. */
  readonly tokenKeys: ReadonlyArray<Uint8Array>
  /** Where activity files are kept (local disk). */
  readonly filesDir: string
  /** How often the ingest queue polls for jobs. */
  readonly pollInterval: Duration.DurationInput
  /** The providers to run instead of Garmin alone. */
  readonly providers?: Layer.Layer<Providers> | undefined
}

/** Each pipeline is its own workflow runner. */
let runnerPort = 1

export const pipelineServices = (options: PipelineOptions) => {
  const Storage = Layer.mergeAll(
    IngestQueue.layer.pipe(Layer.provide(layerQueueStore({ pollInterval: options.pollInterval }))),
    layerTokenCipher(Redacted.make(options.tokenKeys))
  ).pipe(Layer.provideMerge(Database.layer({ url: Option.some(options.databaseUrl), dataDir: "unused" })))

  // An empty configuration: no Garmin credentials, default base URLs.
  const GarminProvider = Host.load({ manifest: Garmin.manifest, layer: Garmin.layerProvider }, ConfigProvider.fromMap(new Map())).pipe(
    Layer.provide(FetchHttpClient.layer)
  )

  return IngestWorker.layer().pipe(
    Layer.provideMerge(layerHistoryObserver),
    Layer.provideMerge(Backfills.Default),
    Layer.provideMerge(Connections.Default),
    Layer.provideMerge(
      Layer.mergeAll(
        Links.Default.pipe(Layer.provide(Layer.merge(Parked.layer, OnConnect.layer)), Layer.provideMerge(Accounts.Default)),
        Inbox.Default,
        RecordStore.Default,
        DataQuery.Default,
        options.providers ?? Providers.fromTags(Garmin.GarminProvider).pipe(Layer.provide(GarminProvider)),
        ActivityFiles.layerLocal(options.filesDir)
      )
    ),
    Layer.provideMerge(Engine.layer({ runnerAddress: { host: "pipeline-test", port: ++runnerPort } })),
    Layer.provideMerge(Layer.succeed(BackfillSettings, BackfillSettings.defaults)),
    Layer.provideMerge(Storage)
  )
}
