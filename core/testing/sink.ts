/**
 * The sink half of the conformance kit: `sinkConformance({ plugin, folder, destination })`.
 * Through the real store, outbox and sink runner on Postgres it checks that every event
 * reaches the destination, and that re-sending the same batches (a crash before the cursor
 * moved) leaves the destination as it was; besides the manifest, the source scan and health.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Accounts } from "../tenancy/accounts.ts"
import { Links } from "../connections/links.ts"
import * as Parked from "../pipeline/parked.ts"
import * as ApiKeyAuth from "../tenancy/api-key-auth.ts"
import { layerTokenCipher } from "../crypto.ts"
import * as Engine from "../engine.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { Inbox, IngestQueue, layerQueueStore } from "../pipeline/inbox.ts"
import * as SinkRunner from "../pipeline/sink-runner.ts"
import { RecordStore } from "../pipeline/store.ts"
import type { Plugin } from "../plugin.ts"
import * as Registry from "../registry.ts"
import { Sinks } from "../sink.ts"
import * as Database from "../storage/database.ts"
import { freshDatabase, stopEmbedded } from "./database.ts"
import { scanPluginSource } from "./source-scan.ts"

/** Where a sink under test delivers, started for a run. */
export interface Destination {
  /** The sink's configuration that points it at this destination (every name declared). */
  readonly env: Readonly<Record<string, string>>
  /**
   * What the destination holds: the outbox event ids it has (a store that keeps the latest
   * state holds each record's last event), and its contents as they must not change when
   * batches are re-sent (leave out times the sink stamps on each write).
   */
  readonly snapshot: (databaseUrl: Redacted.Redacted<string>) => Promise<{ readonly eventIds: ReadonlyArray<string>; readonly contents: unknown }>
  /**
   * Run in the sink's own runtime before anything is delivered: what a destination needs set
   * up for the run's team (e.g. a webhook endpoint registered through the sink's services).
   */
  readonly prepare?: (teamId: string) => Effect.Effect<void, unknown, any>
  /**
   * For sinks that deliver after the runner's commit (a queue of their own): resolves once
   * nothing is left to send, so a snapshot taken after it is final.
   */
  readonly settled?: (databaseUrl: Redacted.Redacted<string>) => Promise<void>
  readonly close: () => Promise<void>
}

export interface SinkConformanceOptions {
  readonly plugin: Plugin
  readonly folder: string | URL
  readonly destination: () => Promise<Destination>
}

const day = "2026-11-30"

/** A day's activity and an hour of heart rate: one summary and one timeseries record. */
const records = (steps: number): ReadonlyArray<NormalizedRecord> => [
  {
    kind: "summary",
    resource: "activity",
    sourceId: `conformance-activity-${day}`,
    data: {
      date: `${day}T00:00:00.000Z`,
      calendar_date: day,
      calories_total: 2100,
      calories_active: 400,
      steps,
      daily_movement: null,
      low: null,
      medium: null,
      high: null,
      floors_climbed: null,
      heart_rate: null,
      wheelchair_use: null,
      wheelchair_push: null,
      timezone_offset: 3600,
      source: { provider: "conformance", type: "watch", device_id: null, app_id: null }
    }
  },
  {
    kind: "timeseries",
    resource: "heartrate",
    sourceId: `conformance-heartrate-${day}`,
    data: {
      source: { provider: "conformance", type: "watch", device_id: null, app_id: null },
      data: Array.from({ length: 60 }, (_, minute) => ({
        timestamp: new Date(Date.parse(`${day}T08:00:00.000Z`) + minute * 60_000).toISOString(),
        timezone_offset: 3600,
        type: "watch" as const,
        unit: "bpm",
        value: 60 + (minute % 20)
      }))
    }
  }
]

const eventually = async <A>(probe: () => Promise<A | undefined>, what: string): Promise<A> => {
  const deadline = Date.now() + 30_000
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not so within 30 s`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export const sinkConformance = (options: SinkConformanceOptions) => {
  const { plugin } = options
  const id = plugin.manifest.id
  const folder = typeof options.folder === "string" ? options.folder : fileURLToPath(options.folder)

  describe(`conformance: sink ${id}`, () => {
    let destination: Destination
    let databaseUrl: Redacted.Redacted<string>
    let runtime: ManagedRuntime.ManagedRuntime<any, any>
    const run = <A>(effect: Effect.Effect<A, unknown, any>): Promise<A> => runtime.runPromise(effect)

    beforeAll(async () => {
      destination = await options.destination()
      databaseUrl = await freshDatabase()
      const Storage = Layer.mergeAll(
        IngestQueue.layer.pipe(Layer.provide(layerQueueStore({}))),
        layerTokenCipher(Redacted.make([randomBytes(32)]))
      ).pipe(Layer.provideMerge(Database.layer({ url: Option.some(databaseUrl), dataDir: "unused" })))
      const Base = Layer.mergeAll(Links.Default.pipe(Layer.provide(Parked.layer), Layer.provideMerge(Accounts.Default)), Inbox.Default, RecordStore.Default, FetchHttpClient.layer).pipe(
        Layer.provideMerge(Engine.layer({ runnerAddress: { host: "sink-conformance", port: 41_000 + Math.floor(Math.random() * 1000) } })),
        Layer.provideMerge(Storage)
      )
      runtime = ManagedRuntime.make(
        Registry.layer([plugin], ConfigProvider.fromMap(new Map(Object.entries(destination.env)))).pipe(Layer.provide(ApiKeyAuth.layer), Layer.provideMerge(Base))
      )
      await runtime.runtime()
    })

    afterAll(async () => {
      await runtime?.dispose()
      await destination?.close()
      await stopEmbedded()
    })

    it("has a valid manifest and reaches nothing it does not declare", () => {
      expect(Registry.checkPlugin(plugin)).toBeUndefined()
      expect(plugin.manifest.kind).toBe("sink")
      expect(scanPluginSource(folder).map((v) => `${v.file}:${v.line} ${v.rule}`)).toEqual([])
    })

    it("passes its health check against the destination", async () => {
      const [entry] = await run(Sinks)
      await run(entry!.sink.health)
    })

    it("delivers every event, and re-sent batches leave the destination as it was", async () => {
      const [entry] = await run(Sinks)
      const events = await run(
        Effect.gen(function* () {
          const accounts = yield* Accounts
          const teamId = yield* accounts.ensureTeamKey("sink-conformance", Redacted.make("sink-conformance-key"))
          if (destination.prepare !== undefined) yield* destination.prepare(teamId)
          const user = yield* accounts.createUser(teamId, "sink-conformance-user")
          const recipient = { userId: user.user_id, teamId, clientUserId: user.client_user_id }
          const inboxId = yield* (yield* Inbox).commit({ provider: "conformance", kind: "records" as never, body: "{}", itemCount: 0 })
          const store = yield* RecordStore
          yield* store.write(recipient, "conformance", records(9_000), inboxId)
          yield* store.write(recipient, "conformance", records(9_500), inboxId)
          const sql = yield* SqlClient.SqlClient
          return yield* sql<{ event_id: string; record_id: string }>`select event_id, record_id from outbox where user_id = ${user.user_id} order by position`
        })
      )
      // Created, created, then the activity updated (the same heart rate again changes nothing).
      expect(events.length).toBe(3)
      const latest = [...new Map(events.map((event) => [event.record_id, event.event_id])).values()]

      const drain = Effect.gen(function* () {
        const runner = yield* SinkRunner.make(entry!.sink, entry!.pacing)
        for (;;) {
          const round = yield* runner.once
          if (round._tag === "Delivered" && round.count === 0) return
        }
      })
      await run(drain)
      const first = await eventually(async () => {
        const held = await destination.snapshot(databaseUrl)
        return latest.every((event) => held.eventIds.includes(event)) ? held : undefined
      }, "each record's latest event at the destination")

      // A crash before the cursor moved: the runner sends the same batches again.
      await destination.settled?.(databaseUrl)
      await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`update sink_cursors set tx = '0', position = 0 where sink_id = ${id}`))
      await run(drain)
      await destination.settled?.(databaseUrl)
      expect(await destination.snapshot(databaseUrl)).toEqual(first)
    })
  })
}
