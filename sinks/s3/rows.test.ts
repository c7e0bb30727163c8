/**
 * The rows of the ETL files (rows.ts) and their published JSON Schemas: the schemas in
 * docs/etl/schemas are the ones the code generates (`npx vitest run sinks/s3 -u` rewrites
 * them after a schema change), and encoded files hold exactly these rows (encode.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import type { OutboxEvent } from "@wearflow/core/sink"
import { DuckDBInstance } from "@duckdb/node-api"
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { gunzipSync } from "node:zlib"
import { ndjsonGzip, parquet } from "./encode.ts"
import { resourceOf, resourceRows, rowsOf } from "./rows.ts"

const USER = "4e1b4ad8-3a0e-4a2b-9d0e-2f1c8a6b7c11"
const TEAM = "9b0e8f5c-1d2e-4f3a-8b7c-6d5e4f3a2b1c"

const RECORD = "5d6c7b8a-9e0f-4a1b-8c2d-3e4f5a6b7c8d"

const eventOf = (eventType: string, data: unknown, historical = false, recordId: string | null = RECORD): OutboxEvent => ({
  position: "42",
  eventId: "0b5f0a7e-5c1d-4f8e-9a2b-3c4d5e6f7a8b",
  eventType,
  teamId: TEAM,
  userId: USER,
  recordId,
  envelope: { event_type: eventType, data, user_id: USER, client_user_id: "client-7", team_id: TEAM },
  createdAt: new Date("2026-11-22T10:00:00.000Z"),
  historical
})

const source = { provider: "garmin", type: "watch", device_id: null, app_id: null }
const samples = {
  source,
  user_id: USER,
  data: [
    { timestamp: "2016-01-11T00:00:15+00:00", timezone_offset: 3600, type: "watch", unit: "bpm", value: 75 },
    { timestamp: "2016-01-11T00:00:30+00:00", timezone_offset: 3600, type: "watch", unit: "bpm", value: 76, extra: "dropped" }
  ]
}
const bodySummary = {
  id: "c2b1a0f9-8e7d-4c6b-9a5f-4e3d2c1b0a99",
  user_id: USER,
  created_at: "2026-11-22T09:59:59.000Z",
  updated_at: "2026-11-22T09:59:59.000Z",
  date: "2015-08-16T00:00:00+00:00",
  calendar_date: "2015-08-16",
  measured_at: "2015-08-16T07:12:00+00:00",
  weight: 75.45,
  fat: 17.1,
  timezone_offset: null,
  source
}

describe("rows", () => {
  it("knows data events only, digits in resource names included", () => {
    expect(resourceOf("daily.data.vo2_max.created")?.resource).toBe("vo2_max")
    expect(resourceOf("daily.data.heartrate.updated")?.kind).toBe("timeseries")
    expect(resourceOf("historical.data.sleep.created")).toBeUndefined()
    expect(resourceOf("provider.connection.created")).toBeUndefined()
    expect(resourceOf("daily.data.nonsense.created")).toBeUndefined()
  })

  it("puts every deletion event, whatever its resource, in the deletions dataset: one row naming the record, no values", () => {
    expect(resourceOf("daily.data.sleep.deleted")?.resource).toBe("deletions")
    expect(resourceOf("daily.data.heartrate.deleted")?.kind).toBe("deletion")
    expect(resourceOf("daily.data.nonsense.deleted")).toBeUndefined()
    expect(resourceOf("historical.data.sleep.deleted")).toBeUndefined()
    const deletions = resourceRows.get("deletions")!
    const data = { id: RECORD, user_id: USER, provider: "oura", resource: "heartrate", source_id: "sleep-doc-1", deleted_at: "2026-11-22T10:00:00.000Z" }
    const rows = rowsOf(deletions, eventOf("daily.data.heartrate.deleted", data))
    expect(rows).toEqual([{
      event_id: "0b5f0a7e-5c1d-4f8e-9a2b-3c4d5e6f7a8b", event_type: "daily.data.heartrate.deleted", emitted_at: "2026-11-22T10:00:00.000Z", historical: false,
      team_id: TEAM, user_id: USER, client_user_id: "client-7", record_id: RECORD, resource: "heartrate", provider: "oura", source_id: "sleep-doc-1"
    }])
    expect(Object.keys(rows[0]!)).toEqual(deletions.fields.map((f) => f.name))
  })

  it("puts user.deleted in the deleted_users dataset: one row naming the user and when, no data", () => {
    const deletedUsers = resourceOf("user.deleted")!
    expect([deletedUsers.resource, deletedUsers.kind]).toEqual(["deleted_users", "user_deletion"])
    const data = { user_id: USER, client_user_id: "client-7", deleted_at: "2026-11-15T10:00:00.000Z", erased_at: "2026-11-22T10:00:00.000Z" }
    const rows = rowsOf(deletedUsers, eventOf("user.deleted", data))
    expect(rows).toEqual([{
      event_id: "0b5f0a7e-5c1d-4f8e-9a2b-3c4d5e6f7a8b", event_type: "user.deleted", emitted_at: "2026-11-22T10:00:00.000Z", historical: false,
      team_id: TEAM, user_id: USER, client_user_id: "client-7", deleted_at: "2026-11-15T10:00:00.000Z", erased_at: "2026-11-22T10:00:00.000Z"
    }])
    expect(Object.keys(rows[0]!)).toEqual(deletedUsers.fields.map((f) => f.name))
  })

  it("makes one row per sample, with the event's fields and exactly the schema's columns", () => {
    const heartrate = resourceRows.get("heartrate")!
    const event = eventOf("daily.data.heartrate.created", samples, true)
    const rows = rowsOf(heartrate, event)
    expect(rows).toHaveLength(2)
    expect(rows[1]).toEqual({
      event_id: event.eventId, event_type: "daily.data.heartrate.created", emitted_at: "2026-11-22T10:00:00.000Z", historical: true,
      team_id: TEAM, user_id: USER, client_user_id: "client-7", source, record_id: RECORD,
      timestamp: "2016-01-11T00:00:30+00:00", timezone_offset: 3600, type: "watch", unit: "bpm", value: 76
    })
    expect(Object.keys(rows[0]!)).toEqual(heartrate.fields.map((f) => f.name))
  })

  it("makes one row per summary; missing fields are null and `date` is `record_date`", () => {
    const body = resourceRows.get("body")!
    const [row] = rowsOf(body, eventOf("daily.data.body.created", bodySummary))
    expect(row).toMatchObject({ id: bodySummary.id, record_date: bodySummary.date, weight: 75.45, muscle_mass_kilogram: null, historical: false })
    expect(row).not.toHaveProperty("date")
  })

  it("types Parquet columns from the schema: nested structs, lists, timestamps, dates", () => {
    const stream = resourceRows.get("workout_stream")!.duckColumns
    expect(stream).toContain("'time': 'DOUBLE[]'")
    expect(stream).toContain("'time_start': 'TIMESTAMPTZ'")
    expect(stream).toContain("'calendar_date': 'DATE'")
    expect(stream).toContain(`'source': 'STRUCT("provider" VARCHAR, "type" VARCHAR, "device_id" VARCHAR, "app_id" VARCHAR)'`)
    expect(resourceRows.get("activity")!.duckColumns).toContain("'emitted_at': 'TIMESTAMPTZ'")
    expect(resourceRows.get("activity")!.duckColumns).toContain("'steps': 'BIGINT'")
  })

  it("versions each schema by its content", () => {
    const versions = new Set([...resourceRows.values()].map((r) => r.schemaVersion))
    expect(versions.size).toBe(resourceRows.size)
    for (const rows of resourceRows.values()) expect(rows.schemaVersion).toMatch(/^[0-9a-f]{12}$/)
  })

  it.each([...resourceRows.keys()])("publishes the JSON Schema of %s rows in docs/etl/schemas", async (resource) => {
    const rows = resourceRows.get(resource)!
    expect(rows.jsonSchema.$schema).toContain("json-schema.org")
    await expect(JSON.stringify(rows.jsonSchema, null, 2) + "\n").toMatchFileSnapshot(`../../docs/etl/schemas/${resource}.json`)
  })
})

describe("encoding", () => {
  const heartrate = resourceRows.get("heartrate")!
  const rows = rowsOf(heartrate, eventOf("daily.data.heartrate.created", samples))

  it.effect("NDJSON.gz holds one JSON row per line", () =>
    Effect.gen(function* () {
      const bytes = yield* ndjsonGzip(6).encode(heartrate, rows)
      const lines = gunzipSync(bytes).toString("utf8").trimEnd().split("\n")
      expect(lines.map((l) => JSON.parse(l))).toEqual(rows)
    }))

  it.scoped("Parquet holds the same rows, typed", () =>
    Effect.gen(function* () {
      const encoder = yield* parquet
      const bytes = yield* encoder.encode(heartrate, rows)
      expect(Buffer.from(bytes.subarray(0, 4)).toString()).toBe("PAR1")
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "wearflow-rows-"))),
        (d) => Effect.promise(() => fs.rm(d, { recursive: true, force: true }))
      )
      const file = path.join(dir, "rows.parquet")
      yield* Effect.promise(() => fs.writeFile(file, bytes))
      const duck = yield* Effect.acquireRelease(
        Effect.promise(() => DuckDBInstance.create(":memory:").then((db) => db.connect())),
        (connection) => Effect.sync(() => connection.closeSync())
      )
      const read = yield* Effect.promise(() =>
        duck.runAndReadAll(`select epoch(timestamp)::bigint as seconds, value, typeof(timestamp) as t, source.provider as provider from '${file}' order by seconds`))
      expect(read.getRowObjectsJson()).toEqual([
        { seconds: "1452470415", value: 75, t: "TIMESTAMP WITH TIME ZONE", provider: "garmin" },
        { seconds: "1452470430", value: 76, t: "TIMESTAMP WITH TIME ZONE", provider: "garmin" }
      ])
    }))

  it.scoped("Parquet holds deletions rows too", () =>
    Effect.gen(function* () {
      const encoder = yield* parquet
      const deletions = resourceRows.get("deletions")!
      const data = { id: RECORD, user_id: USER, provider: "oura", resource: "sleep", source_id: "sleep-doc-1", deleted_at: "2026-11-22T10:00:00.000Z" }
      const bytes = yield* encoder.encode(deletions, rowsOf(deletions, eventOf("daily.data.sleep.deleted", data)))
      expect(Buffer.from(bytes.subarray(0, 4)).toString()).toBe("PAR1")
    }))

  it.scoped.each<[string, Record<string, unknown>, string]>([
    ["a string that is no time", { timestamp: "not a time" }, "not a time"],
    ["a number too large for an integer column", { timezone_offset: 1e20 }, "1e+20"]
  ])("Parquet refuses %s, for good, without the value in the message", ([, change, value]) =>
    Effect.gen(function* () {
      const encoder = yield* parquet
      const error = yield* Effect.flip(encoder.encode(heartrate, [{ ...rows[0]!, ...change }]))
      expect(error._tag).toBe("EncodeError")
      expect(error.retryable).toBe(false)
      expect(error.message).toContain("does not fit its column type")
      expect(error.message).not.toContain(value)
    }))
})
