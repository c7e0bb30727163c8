/**
 * Batching against a real Postgres and a real directory: the record and byte limits, a batch
 * whose rows its schema refuses, two replicas sharing the work, and an upload that hangs
 * without holding back the other sinks.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import * as Host from "@wearflow/core/host"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import type { OutboxRow } from "@wearflow/core/pipeline/sink-runner"
import * as Database from "@wearflow/core/storage/database"
import { ConfigProvider, Deferred, Effect, Layer, Logger, LogLevel, Option, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { gunzipSync, gzipSync } from "node:zlib"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import * as Batches from "./batches.ts"
import { migrate } from "./migrations.ts"
import { resourceOf, rowsOf as rowsOfEvent } from "./rows.ts"
import * as EtlSink from "./mod.ts"
import type { ObjectStore } from "./object-store.ts"
import { config } from "./settings.ts"

const TEAM = randomUUID()
const USER = randomUUID()
const source = { provider: "garmin", type: "watch", device_id: null, app_id: null }

const activity = (day: number, calendarDate = `2026-01-${String(day).padStart(2, "0")}`) => ({
  type: "daily.data.activity.created",
  data: { id: randomUUID(), user_id: USER, calendar_date: calendarDate, steps: 1000 + day, source }
})
const heartrate = (samples: number) => ({
  type: "daily.data.heartrate.created",
  data: {
    source,
    user_id: USER,
    data: Array.from({ length: samples }, (_, i) => ({
      timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), timezone_offset: 0, type: "watch", unit: "bpm", value: 60 + i
    }))
  }
})

const append = (events: ReadonlyArray<{ readonly type: string; readonly data: unknown }>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`insert into outbox (event_id, event_type, team_id, user_id, payload)
        select * from unnest(${events.map(() => randomUUID())}::uuid[], ${events.map((e) => e.type)}::text[],
                             ${events.map(() => TEAM)}::uuid[], ${events.map(() => USER)}::uuid[],
                             ${events.map((e) => JSON.stringify({ event_type: e.type, data: e.data, user_id: USER, client_user_id: "c", team_id: TEAM }))}::jsonb[])`)

/** The plugin as the server runs it (its runner included), on a fresh database, files in a temp directory. */
const withSink = (settings: Record<string, string>, replicas: 1 | 2 = 1, runnerBatch = 7) =>
  Effect.gen(function* () {
    const url = yield* Effect.promise(() => freshDatabaseUrl())
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "wearflow-etl-batches-"))),
      (d) => Effect.promise(() => fs.rm(d, { recursive: true, force: true }))
    )
    const Db = Database.layer({ url: Option.some(url), dataDir: "unused" })
    const env = new Map(Object.entries({ WEARFLOW_ETL_DIR: dir, WEARFLOW_ETL_BATCH_SECONDS: "0.2", ...settings }))
    const replica = () =>
      SinkRunner.layer(EtlSink.EtlSink, { batchSize: runnerBatch, idle: "20 millis" }).pipe(
        Layer.provideMerge(Host.load({ manifest: EtlSink.manifest, layer: EtlSink.layer }, ConfigProvider.fromMap(env))),
        Layer.provide(FetchHttpClient.layer)
      )
    const context = yield* Layer.build(
      (replicas === 1 ? replica() : Layer.merge(replica(), replica())).pipe(
        Layer.provideMerge(Db),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
      )
    )
    return { dir, context }
  })

/** Waits until the sink took every event and every batch is written or set aside. */
const drained = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ n: number }>`
    select (select count(*) from outbox o where not exists (
              select 1 from sink_cursors c where c.sink_id = 's3' and (o.tx, o.position) <= (c.tx, c.position)))
         + (select count(*) from etl_batches where status = 'sealed')
         + (select count(*) from etl_pending p where not exists (
              select 1 from etl_batches b where b.status = 'failed' and b.resource = p.resource and p.seq between b.first_seq and b.last_seq)) as n`.pipe(
    Effect.map((rows) => Number(rows[0]!.n)),
    Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("50 millis") }),
    Effect.timeout("30 seconds")
  ))

interface Manifest {
  readonly record_count: number
  readonly event_count: number
  readonly files: ReadonlyArray<{ readonly key: string }>
}

const manifestsOf = (dir: string, resource: string) =>
  Effect.promise(async () => {
    const folder = path.join(dir, `_manifests/resource=${resource}`)
    const names = (await fs.readdir(folder, { recursive: true }).catch(() => [] as Array<string>)).filter((n) => n.endsWith(".json")).sort()
    return Promise.all(names.map(async (n) => JSON.parse(await fs.readFile(path.join(folder, n), "utf8")) as Manifest))
  })

const rowsOf = (dir: string, manifests: ReadonlyArray<Manifest>) =>
  Effect.promise(async () => {
    const rows: Array<Record<string, unknown>> = []
    for (const m of manifests) {
      for (const f of m.files) {
        const text = gunzipSync(await fs.readFile(path.join(dir, f.key))).toString("utf8").trimEnd()
        rows.push(...text.split("\n").map((line) => JSON.parse(line) as Record<string, unknown>))
      }
    }
    return rows
  })

describe("batches", () => {
  it.scopedLive("cut at the record limit: events are never split, every row is written once", () =>
    Effect.gen(function* () {
      // Staged in one runner batch: staged over several, the age limit could seal a part first.
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_BATCH_RECORDS: "25" }, 1, 100)
      yield* Effect.gen(function* () {
        yield* append([...Array.from({ length: 10 }, () => heartrate(10)), ...Array.from({ length: 30 }, (_, i) => activity(i + 1))])
        yield* drained
        const heart = yield* manifestsOf(dir, "heartrate")
        // 10-sample events: two fit under 25 records, a third would not.
        expect(heart.map((m) => [m.event_count, m.record_count])).toEqual(Array(5).fill([2, 20]))
        const days = yield* manifestsOf(dir, "activity")
        expect(days.map((m) => m.record_count).sort((a, b) => b - a)).toEqual([25, 5])
        const rows = yield* rowsOf(dir, days)
        expect(rows.map((r) => r.steps).sort()).toEqual(Array.from({ length: 30 }, (_, i) => 1001 + i).sort())
        expect(new Set((yield* rowsOf(dir, heart)).map((r) => `${r.event_id}/${r.timestamp}`)).size).toBe(100)
      }).pipe(Effect.provide(context))
    }))

  it.scopedLive("a batch of more events than one read page is written whole: every row once, in event order", () =>
    Effect.gen(function* () {
      // Sealed at exactly 2½ pages of summaries (the age limit out of reach).
      const events = Batches.PAGE_RECORDS * 2.5
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_BATCH_RECORDS: String(events), WEARFLOW_ETL_BATCH_SECONDS: "600" }, 1, 1000)
      yield* Effect.gen(function* () {
        yield* append(Array.from({ length: events }, (_, i) => {
          const event = activity(1 + (i % 28))
          return { ...event, data: { ...event.data, steps: i } }
        }))
        yield* drained
        const days = yield* manifestsOf(dir, "activity")
        expect(days.map((m) => [m.event_count, m.record_count])).toEqual([[events, events]])
        expect((yield* rowsOf(dir, days)).map((r) => r.steps)).toEqual(Array.from({ length: events }, (_, i) => i))
      }).pipe(Effect.provide(context))
    }))

  it.scopedLive("cut at the byte limit, one event at least", () =>
    Effect.gen(function* () {
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_BATCH_BYTES: "600" })
      yield* Effect.gen(function* () {
        yield* append([...Array.from({ length: 9 }, (_, i) => activity(i + 1)), heartrate(50)])
        yield* drained
        const days = yield* manifestsOf(dir, "activity")
        const size = JSON.stringify(activity(1).data).length
        expect(days.every((m) => m.event_count <= Math.max(1, Math.floor(600 / size)))).toBe(true)
        expect(days.reduce((n, m) => n + m.record_count, 0)).toBe(9)
        // Larger than the limit on its own: a batch of one.
        expect((yield* manifestsOf(dir, "heartrate")).map((m) => m.record_count)).toEqual([50])
      }).pipe(Effect.provide(context))
    }))

  it.scopedLive("sets a batch its schema refuses aside, says why without the value, and goes on", () =>
    Effect.gen(function* () {
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_BATCH_RECORDS: "1", WEARFLOW_ETL_FORMAT: "parquet" })
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* append([activity(1), activity(2, "2026-13-99"), activity(3)])
        yield* drained
        const batches = yield* sql<{ status: string; last_error: string | null }>`select status, last_error from etl_batches order by id`
        expect(batches.map((b) => b.status)).toEqual(["written", "failed", "written"])
        expect(batches[1]!.last_error).toContain("does not fit its column type")
        expect(batches[1]!.last_error).not.toContain("2026-13-99")
        const files = yield* Effect.promise(() => fs.readdir(path.join(dir, "resource=activity"), { recursive: true }))
        expect(files.filter((f) => f.endsWith(".parquet"))).toHaveLength(2)
      }).pipe(Effect.provide(context))
    }))

  it.scopedLive.each(["ndjson", "parquet"])("writes deletion events as rows of the deletions dataset (%s), beside the resources' batches", (format) =>
    Effect.gen(function* () {
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_FORMAT: format })
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const day = activity(1)
        const gone = (resource: string) => ({
          type: `daily.data.${resource}.deleted`,
          data: { id: day.data.id, user_id: USER, provider: "oura", resource, source_id: "doc-1", deleted_at: "2026-01-02T00:00:00.000Z" }
        })
        yield* append([day, gone("activity"), heartrate(3), gone("heartrate")])
        yield* drained
        const batches = yield* sql<{ resource: string; status: string; records: number }>`select resource, status, records from etl_batches order by resource`
        expect(batches.map((b) => [b.resource, b.status])).toEqual([["activity", "written"], ["deletions", "written"], ["heartrate", "written"]])
        const [deletions] = yield* manifestsOf(dir, "deletions")
        expect([deletions!.event_count, deletions!.record_count]).toEqual([2, 2])
        const files = yield* Effect.promise(() => fs.readdir(path.join(dir, "resource=deletions"), { recursive: true }))
        expect(files.filter((f) => f.endsWith(format === "parquet" ? ".parquet" : ".ndjson.gz"))).toHaveLength(1)
        if (format === "ndjson") {
          const rows = yield* rowsOf(dir, [deletions!])
          expect(rows.map((r) => [r.event_type, r.record_id, r.resource, r.provider, r.source_id])).toEqual([
            ["daily.data.activity.deleted", day.data.id, "activity", "oura", "doc-1"],
            ["daily.data.heartrate.deleted", day.data.id, "heartrate", "oura", "doc-1"]
          ])
        }
      }).pipe(Effect.provide(context))
    }))

  it.scopedLive("files hold, byte for byte, the rows rowsOf makes of each whole outbox event, in outbox order", () =>
    Effect.gen(function* () {
      const { context, dir } = yield* withSink({}, 1, 5)
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const day = activity(1)
        // One transaction: the runner sees the events only as finally written.
        yield* sql.withTransaction(Effect.gen(function* () {
          yield* append([
            day,
            heartrate(4),
            // Values JSON escapes, a missing field, nesting, a number with a fraction.
            { ...day, data: { ...day.data, id: randomUUID(), calendar_date: "2026-01-02", steps: 12.5, source: { ...source, device_id: "a\"b\nc\u0001é" } } },
            { type: "daily.data.activity.deleted", data: { id: day.data.id, user_id: USER, provider: "garmin", resource: "activity", source_id: "s-1" } },
            { type: "user.deleted", data: { user_id: USER, deleted_at: "2026-01-03T00:00:00.000Z", erased_at: "2026-01-04T00:00:00.000Z" } }
          ])
          // Emission times with microseconds, as now() gives them; a record id on samples; a client user id with a tab and a line break.
          yield* sql`update outbox set created_at = created_at + make_interval(secs => position * 0.000291)`
          yield* sql`update outbox set record_id = gen_random_uuid() where event_type = 'daily.data.heartrate.created'`
          yield* sql`update outbox set payload = jsonb_set(payload, '{client_user_id}', to_jsonb(E'a\tb\nc'::text)) where event_type = 'user.deleted'`
        }))
        yield* drained
        const events = yield* sql<OutboxRow>`
          select position, tx::text as tx, event_id, event_type, team_id, user_id, record_id, payload, created_at, historical
          from outbox order by tx, position`
        for (const dataset of ["activity", "heartrate", "deletions", "deleted_users"]) {
          const expected = events.filter((e) => resourceOf(e.event_type)?.resource === dataset)
            .flatMap((e) => rowsOfEvent(resourceOf(e.event_type)!, SinkRunner.toEvent(e)))
            .map((row) => JSON.stringify(row) + "\n").join("")
          const manifests = yield* manifestsOf(dir, dataset)
          const files = yield* Effect.promise(() => Promise.all(manifests.flatMap((m) => m.files.map((f) => fs.readFile(path.join(dir, f.key))))))
          expect(files.map((f) => gunzipSync(f).toString("utf8")).join(""), dataset).toBe(expected)
          expect(expected.length, dataset).toBeGreaterThan(0)
        }
      }).pipe(Effect.provide(context))
    }))

  it.scopedLive("compresses NDJSON at WEARFLOW_ETL_GZIP_LEVEL", () =>
    Effect.gen(function* () {
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_GZIP_LEVEL: "1" }, 1, 100)
      yield* Effect.gen(function* () {
        yield* append(Array.from({ length: 20 }, () => heartrate(50)))
        yield* drained
        const [manifest] = yield* manifestsOf(dir, "heartrate")
        const file = yield* Effect.promise(() => fs.readFile(path.join(dir, manifest!.files[0]!.key)))
        const text = gunzipSync(file)
        // zlib's output depends only on the text and the level: the file is level 1's, not the default's.
        expect(Buffer.compare(file, gzipSync(text, { level: 1 }))).toBe(0)
        expect(Buffer.compare(file, gzipSync(text, { level: 6 }))).not.toBe(0)
      }).pipe(Effect.provide(context))
    }))

  it.effect("refuses a gzip level outside 1-9", () =>
    Effect.gen(function* () {
      for (const level of ["0", "10"]) {
        const refused = yield* Effect.flip(config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["WEARFLOW_ETL_GZIP_LEVEL", level]])))))
        expect(String(refused)).toContain("WEARFLOW_ETL_GZIP_LEVEL must be 1-9")
      }
    }))

  it.scopedLive("two replicas on one database share the work: each event's rows in exactly one file", () =>
    Effect.gen(function* () {
      const { context, dir } = yield* withSink({ WEARFLOW_ETL_BATCH_RECORDS: "30" }, 2)
      yield* Effect.gen(function* () {
        for (let round = 0; round < 5; round++) {
          yield* append([...Array.from({ length: 8 }, () => heartrate(5)), ...Array.from({ length: 12 }, (_, i) => activity(i + 1))])
          yield* Effect.sleep("30 millis")
        }
        yield* drained
        const heart = yield* rowsOf(dir, yield* manifestsOf(dir, "heartrate"))
        expect(heart).toHaveLength(5 * 8 * 5)
        expect(new Set(heart.map((r) => `${r.event_id}/${r.timestamp}`)).size).toBe(heart.length)
        const days = yield* rowsOf(dir, yield* manifestsOf(dir, "activity"))
        expect(days).toHaveLength(5 * 12)
        expect(new Set(days.map((r) => r.event_id)).size).toBe(days.length)
      }).pipe(Effect.provide(context))
    }))
  it.scopedLive("seals and writes the next batch while one is still being written", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(() => freshDatabaseUrl())
      const context = yield* Layer.build(Database.layer({ url: Option.some(url), dataDir: "unused" }))
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        // The first data file's upload waits until the test lets it go; everything else is stored at once.
        const release = yield* Deferred.make<void>()
        const stored: Array<string> = []
        let first: string | undefined
        const slowFirst: ObjectStore = {
          location: "slow-first",
          keyOf: (key) => key,
          put: (key) =>
            Effect.suspend(() => {
              if (key.startsWith("resource=") && first === undefined) first = key
              return key === first ? Deferred.await(release) : Effect.void
            }).pipe(Effect.zipRight(Effect.sync(() => void stored.push(key)))),
          remove: () => Effect.void
        }
        yield* migrate
        const settings = yield* config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["WEARFLOW_ETL_BATCH_SECONDS", "0.1"]]))))
        const batches = yield* Batches.make(settings, slowFirst)
        const etl = yield* SinkRunner.make({ id: "s3", deliver: (events) => batches.stage(events).pipe(Effect.orDie), health: Effect.void, afterCommit: batches.wake })
        yield* Effect.forkScoped(batches.run)
        yield* append([activity(1)])
        yield* etl.once
        const uploading = Effect.suspend(() => (first === undefined ? Effect.fail("not yet") : Effect.void))
        yield* uploading.pipe(Effect.retry(Schedule.spaced("20 millis")), Effect.timeout("10 seconds"))

        // The first batch's upload is held; the next events still become a batch and a file.
        yield* append([activity(2)])
        yield* etl.once
        const written = sql<{ n: number }>`select count(*)::int as n from etl_batches where status = 'written'`.pipe(
          Effect.map((rows) => rows[0]!.n),
          Effect.repeat({ until: (n) => n === 1, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("10 seconds")
        )
        yield* written
        expect(stored.filter((k) => k.startsWith("resource=activity/"))).toHaveLength(1)
        expect(stored).not.toContain(first)

        yield* Deferred.succeed(release, undefined)
        yield* sql<{ n: number }>`select count(*)::int as n from etl_batches where status = 'written'`.pipe(
          Effect.map((rows) => rows[0]!.n),
          Effect.repeat({ until: (n) => n === 2, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("10 seconds")
        )
      }).pipe(Effect.provide(context))
    }))
})

describe("an upload that hangs", () => {
  it.scopedLive("holds back no other sink: the claim is a session lock, not an open transaction", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(() => freshDatabaseUrl())
      const context = yield* Layer.build(Database.layer({ url: Option.some(url), dataDir: "unused" }))
      yield* Effect.gen(function* () {
        const uploading = yield* Deferred.make<void>()
        const hanging: ObjectStore = {
          location: "hanging",
          keyOf: (key) => key,
          put: () => Deferred.succeed(uploading, undefined).pipe(Effect.zipRight(Effect.never)),
          remove: () => Effect.void
        }
        yield* migrate
        const settings = yield* config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["WEARFLOW_ETL_BATCH_SECONDS", "0.1"]]))))
        const batches = yield* Batches.make(settings, hanging)
        const etl = yield* SinkRunner.make({ id: "s3", deliver: (events) => batches.stage(events).pipe(Effect.orDie), health: Effect.void, afterCommit: batches.wake })
        yield* Effect.forkScoped(batches.run)
        yield* append([activity(1)])
        yield* etl.once
        yield* Deferred.await(uploading).pipe(Effect.timeout("10 seconds"))

        // Another sink still reads events appended while the upload hangs.
        const received: Array<string> = []
        const other = yield* SinkRunner.make({ id: "other", deliver: (events) => Effect.sync(() => void received.push(...events.map((e) => e.eventType))), health: Effect.void })
        yield* other.once
        yield* append([heartrate(3)])
        yield* other.once
        expect(received).toEqual(["daily.data.activity.created", "daily.data.heartrate.created"])
      }).pipe(Effect.provide(context))
    }))
})
