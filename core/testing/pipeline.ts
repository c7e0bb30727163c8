/**
 * The pipeline as the server wires it, on a conformance run's database, with one plugin
 * under test loaded through the host (its configuration from `env` only): inbox → ingest
 * worker → store + outbox, and the plugin's own layer (its routes' handlers, its daemons).
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { ConfigProvider, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import { Accounts } from "../tenancy/accounts.ts"
import { Links } from "../connections/links.ts"
import * as OnConnect from "../backfill/on-connect.ts"
import * as Parked from "../pipeline/parked.ts"
import * as ApiKeyAuth from "../tenancy/api-key-auth.ts"
import { Backfills, layerHistoryObserver } from "../backfill/backfills.ts"
import { BackfillSettings } from "../backfill/settings.ts"
import { Connections } from "../connections/connections.ts"
import { layerTokenCipher } from "../crypto.ts"
import * as Engine from "../engine.ts"
import { ActivityFiles } from "../pipeline/files.ts"
import { Inbox, IngestQueue, layerQueueStore } from "../pipeline/inbox.ts"
import { IngestWorker } from "../pipeline/ingest.ts"
import { RecordStore } from "../pipeline/store.ts"
import type { Plugin } from "../plugin.ts"
import { DataQuery } from "../query.ts"
import * as Registry from "../registry.ts"
import * as Database from "../storage/database.ts"

let runnerPort = 40_000

export const pipelineWith = (plugin: Plugin, databaseUrl: Redacted.Redacted<string>, env: Readonly<Record<string, string>>) => {
  const Storage = Layer.mergeAll(
    IngestQueue.layer.pipe(Layer.provide(layerQueueStore({ pollInterval: "20 millis" }))),
    layerTokenCipher(Redacted.make([randomBytes(32)]))
  ).pipe(Layer.provideMerge(Database.layer({ url: Option.some(databaseUrl), dataDir: "unused" })))
  const Base = Layer.mergeAll(Links.Default.pipe(Layer.provide(Layer.merge(Parked.layer, OnConnect.layer)), Layer.provideMerge(Accounts.Default)), Inbox.Default, RecordStore.Default, DataQuery.Default, FetchHttpClient.layer).pipe(
    Layer.provideMerge(Engine.layer({ runnerAddress: { host: "conformance", port: ++runnerPort } })),
    Layer.provideMerge(Layer.succeed(BackfillSettings, BackfillSettings.defaults)),
    Layer.provideMerge(Storage)
  )
  return IngestWorker.layer().pipe(
    Layer.provideMerge(layerHistoryObserver),
    Layer.provideMerge(Backfills.Default),
    Layer.provideMerge(Connections.Default),
    Layer.provideMerge(Registry.layer([plugin], ConfigProvider.fromMap(new Map(Object.entries(env)))).pipe(Layer.provide(ApiKeyAuth.layer))),
    Layer.provideMerge(ActivityFiles.layerLocal(path.join(os.tmpdir(), `wearflow-conformance-files-${plugin.manifest.id}`))),
    Layer.provideMerge(Base)
  )
}
