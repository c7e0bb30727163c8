/**
 * Garmin items end to end, against the real server and Postgres: what one item holds reaches
 * every place it must, and nothing another item holds overwrites it.
 * - Samples of two records at one instant (epochs of two activity types in one slice) are
 *   both kept: store, query API, Postgres sink table, ETL files.
 * - Items the request path accepts (lifecycle items without summaryId, activities whose only
 *   id is activityId, numeric-string ids) are stored or applied by the worker.
 * - A sleep ends where its last stage ends; naps are sleep sessions of their own.
 * - A lifecycle item that arrived before a connection was made does not act on it.
 */
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api"
import { Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CLIENT_ID = "items-garmin-client"
const API_KEY = "items-api-key"

let dir: string
let dataDir: string
let server: RunningServer
let db: pg.Client
let duck: DuckDBConnection

const api = wearflowApi(() => server.baseUrl, API_KEY)
const push = garminWebhook(() => server.baseUrl, CLIENT_ID, "push")
const ping = garminWebhook(() => server.baseUrl, CLIENT_ID, "ping")
const outcomeOf = inboxOutcomes(() => db, 60_000)

const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)

let users = 0
/** A Wearflow user linked to `garminUserId`. */
const linkedUser = async (garminUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: `items-user-${++users}` })
  expect(created.status).toBe(200)
  const userId = created.body.user_id as string
  expect((await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })).status).toBe(200)
  return userId
}

/** Ingest done and every sink caught up with the outbox; nothing staged for ETL files. */
const settled = (timeoutMs = 60_000) =>
  eventually(async () => {
    const waiting = await count(`
      select (select count(*) from inbox where processed_at is null)
           + (select count(*) from outbox o where exists (select 1 from sink_cursors c where (o.tx, o.position) > (c.tx, c.position)))
           + (select count(*) from etl_pending)
           + (select count(*) from etl_batches where status = 'sealed') as n`)
    return waiting === 0 ? true : undefined
  }, timeoutMs)

const etlRows = async (resource: string, userId: string) =>
  (await duck.runAndReadAll(`
    select epoch(timestamp::timestamptz)::bigint as seconds, value::double as value, record_id
    from read_json('${dataDir}/etl/resource=${resource}/*/*.ndjson.gz', format = 'newline_delimited')
    where user_id = '${userId}' order by seconds, value`)).getRowObjectsJson() as Array<{ seconds: string; value: number; record_id: string }>

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-items-"))
  dataDir = path.join(dir, "data")
  const databaseUrl = Redacted.value(await freshDatabaseUrl())
  server = await startServer({
    DATABASE_URL: databaseUrl,
    GARMIN_CLIENT_ID: CLIENT_ID,
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dataDir,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    WEARFLOW_ETL_BATCH_SECONDS: "1"
  })
  db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  duck = await (await DuckDBInstance.create(":memory:")).connect()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  duck?.closeSync()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("samples of two records at one instant", () => {
  const SLICE = 1_700_000_100
  const epoch = (garminUserId: string, activityType: string, steps: number, distanceInMeters: number, activeKilocalories: number) => ({
    userId: garminUserId,
    summaryId: `x-${activityType}-${SLICE}`,
    activityType,
    steps,
    distanceInMeters,
    activeKilocalories,
    durationInSeconds: 900,
    startTimeInSeconds: SLICE,
    startTimeOffsetInSeconds: 3600
  })

  it("keeps both epochs' steps and distance in the store, the query API, the Postgres sink and the ETL files", async () => {
    const garminUserId = "items-epochs-user"
    const userId = await linkedUser(garminUserId)
    const inboxId = await push({
      epochs: [epoch(garminUserId, "WALKING", 300, 210, 20), epoch(garminUserId, "RUNNING", 500, 1250, 80)]
    })
    expect((await outcomeOf(inboxId)).errors).toEqual([])
    await settled()

    // Store: one sample per record, side by side at one timestamp.
    const stored = await db.query("select resource, value from samples where user_id = $1 and ts = to_timestamp($2) order by resource, value", [userId, SLICE])
    expect(stored.rows).toEqual([
      { resource: "calories_active", value: 20 }, { resource: "calories_active", value: 80 },
      { resource: "distance", value: 210 }, { resource: "distance", value: 1250 },
      { resource: "steps", value: 300 }, { resource: "steps", value: 500 }
    ])

    // Query API: two entries at the slice, Junction's sample shape; their sum is the slice's total.
    const at = new Date(SLICE * 1000).toISOString()
    for (const [resource, values] of [["steps", [300, 500]], ["distance", [210, 1250]], ["calories_active", [20, 80]]] as const) {
      const { status, body } = await api("GET", `/v2/timeseries/${userId}/${resource}?start_date=${at}&end_date=${at}`)
      expect(status).toBe(200)
      expect((body as Array<{ timestamp: string; value: number }>).map((s) => s.value).sort((a, b) => a - b), resource).toEqual(values)
      for (const sample of body as Array<Record<string, unknown>>) {
        expect(sample).toMatchObject({ timestamp: at, start: at, end: new Date((SLICE + 900) * 1000).toISOString(), timezone_offset: 3600, type: "watch" })
      }
    }

    // Postgres sink: two rows, each naming its record.
    const sunk = await db.query(`select value, record_id from wearflow_data.steps where user_id = $1 and "timestamp" = to_timestamp($2) order by value`, [userId, SLICE])
    expect(sunk.rows.map((r) => r.value)).toEqual([300, 500])
    expect(new Set(sunk.rows.map((r) => r.record_id)).size).toBe(2)
    const sunkDistance = await db.query(`select value from wearflow_data.distance where user_id = $1 order by value`, [userId])
    expect(sunkDistance.rows.map((r) => r.value)).toEqual([210, 1250])

    // ETL files: two rows, the same records as the sink's.
    const files = await etlRows("steps", userId)
    expect(files.map((r) => [Number(r.seconds), r.value])).toEqual([[SLICE, 300], [SLICE, 500]])
    expect(new Set(files.map((r) => r.record_id))).toEqual(new Set(sunk.rows.map((r) => r.record_id)))
    expect((await etlRows("distance", userId)).map((r) => r.value)).toEqual([210, 1250])

    // A revision of one epoch replaces its own samples only.
    const revised = await push({ epochs: [epoch(garminUserId, "RUNNING", 650, 1600, 95)] })
    expect((await outcomeOf(revised)).errors).toEqual([])
    await settled()
    const { body } = await api("GET", `/v2/timeseries/${userId}/steps?start_date=${at}&end_date=${at}`)
    expect((body as Array<{ value: number }>).map((s) => s.value).sort((a, b) => a - b)).toEqual([300, 650])
    const resunk = await db.query(`select value from wearflow_data.steps where user_id = $1 order by value`, [userId])
    expect(resunk.rows.map((r) => r.value)).toEqual([300, 650])
  })

  it("keeps every timeseries' readings of two records at one instant (SpO2 on demand and all day, snapshot and daily heart rate)", async () => {
    const garminUserId = "items-series-user"
    const userId = await linkedUser(garminUserId)
    const start = 1_700_100_000
    const inboxId = await push({
      pulseox: [
        { userId: garminUserId, summaryId: "x-spo2-day", calendarDate: "2023-11-16", startTimeInSeconds: start, durationInSeconds: 3600, startTimeOffsetInSeconds: 0, timeOffsetSpo2Values: { "0": 95, "60": 96 }, onDemand: false },
        { userId: garminUserId, summaryId: "x-spo2-demand", calendarDate: "2023-11-16", startTimeInSeconds: start, durationInSeconds: 60, startTimeOffsetInSeconds: 0, timeOffsetSpo2Values: { "0": 91 }, onDemand: true }
      ],
      dailies: [
        { userId: garminUserId, summaryId: "x-daily", calendarDate: "2023-11-16", startTimeInSeconds: start, durationInSeconds: 86400, startTimeOffsetInSeconds: 0, steps: 10, timeOffsetHeartRateSamples: { "0": 61 } }
      ],
      healthSnapshot: [
        { userId: garminUserId, summaryId: "x-snapshot", calendarDate: "2023-11-16", startTimeInSeconds: start, durationInSeconds: 120, offsetStartTimeInSeconds: 0, summaries: [{ summaryType: "heart_rate", avgValue: 70, epochSummaries: { "0": 72 } }] }
      ]
    })
    expect((await outcomeOf(inboxId)).errors).toEqual([])
    await settled()
    const at = new Date(start * 1000).toISOString()
    const valuesAt = async (resource: string) =>
      ((await api("GET", `/v2/timeseries/${userId}/${resource}?start_date=${at}&end_date=${at}`)).body as Array<{ value: number }>).map((s) => s.value).sort((a, b) => a - b)
    expect(await valuesAt("blood_oxygen")).toEqual([91, 95])
    expect(await valuesAt("heartrate")).toEqual([61, 72])
    expect((await db.query(`select value from wearflow_data.blood_oxygen where user_id = $1 and "timestamp" = to_timestamp($2) order by value`, [userId, start])).rows.map((r) => r.value)).toEqual([91, 95])
    expect((await etlRows("heartrate", userId)).filter((r) => Number(r.seconds) === start).map((r) => r.value)).toEqual([61, 72])
  })
})

describe("items the request path accepts are stored or applied", () => {
  const connectionOf = async (userId: string) => {
    const { body } = await api("GET", `/v2/user/${userId}`)
    return (body.connected_sources as Array<{ status: string; scopes: Array<string> }>)[0]!
  }

  it("applies a userPermissionsChange without summaryId, and tells the user's team", async () => {
    const garminUserId = "items-permissions-user"
    const userId = await linkedUser(garminUserId)
    const response = await push({
      userPermissionsChange: [{ userId: garminUserId, permissions: ["ACTIVITY_EXPORT"], changeTimeInSeconds: 1_700_000_000 }]
    })
    expect(response).toBeGreaterThan(0)
    const outcome = await outcomeOf(response)
    expect(outcome.errors).toEqual([])
    const connection = await connectionOf(userId)
    expect(connection).toMatchObject({ status: "active", scopes: ["ACTIVITY_EXPORT"] })
    const events = await db.query("select payload from outbox where user_id = $1 and event_type = 'provider.connection.error'", [userId])
    expect(events.rows.map((r) => r.payload.data.error_type)).toEqual(["required_scopes_not_granted"])
  })

  it("answers no per-item error for lifecycle items without summaryId", async () => {
    const response = await fetch(`${server.baseUrl}/api/v1/webhooks/garmin/push`, {
      method: "POST",
      headers: { "garmin-client-id": CLIENT_ID, "content-type": "application/json" },
      body: JSON.stringify({
        userPermissionsChange: [{ userId: "items-nobody", permissions: [] }],
        deregistrations: [{ userId: "items-nobody" }]
      })
    })
    expect(response.status).toBe(200)
    expect((await response.json()).errors).toEqual([])
  })

  it("applies lifecycle items sent to the PING URL (the README says either URL), without pulling them", async () => {
    const garminUserId = "items-ping-lifecycle-user"
    const userId = await linkedUser(garminUserId)
    const response = await fetch(`${server.baseUrl}/api/v1/webhooks/garmin/ping`, {
      method: "POST",
      headers: { "garmin-client-id": CLIENT_ID, "content-type": "application/json" },
      body: JSON.stringify({ userPermissionsChange: [{ userId: garminUserId, permissions: ["HEALTH_EXPORT", "ACTIVITY_EXPORT"] }] })
    })
    const answer = (await response.json()) as { inbox_id: number; errors: Array<unknown> }
    expect([response.status, answer.errors]).toEqual([200, []])
    expect(await outcomeOf(answer.inbox_id)).toMatchObject({ pulled: 0, errors: [] })
    expect(await connectionOf(userId)).toMatchObject({ status: "active", scopes: ["HEALTH_EXPORT", "ACTIVITY_EXPORT"] })

    const deregistered = await ping({ deregistrations: [{ userId: garminUserId }] })
    expect(await outcomeOf(deregistered)).toMatchObject({ pulled: 0, errors: [] })
    expect((await connectionOf(userId)).status).toBe("deregistered")
  })

  it("stores activities and activity details whose only id is activityId, and numeric-string activityIds", async () => {
    const garminUserId = "items-activities-user"
    const userId = await linkedUser(garminUserId)
    const start = 1_700_200_000
    const activity = (fields: Record<string, unknown>) => ({
      userId: garminUserId, activityType: "RUNNING", startTimeInSeconds: start, startTimeOffsetInSeconds: 0, durationInSeconds: 1800, distanceInMeters: 5000, ...fields
    })
    const response = await fetch(`${server.baseUrl}/api/v1/webhooks/garmin/push`, {
      method: "POST",
      headers: { "garmin-client-id": CLIENT_ID, "content-type": "application/json" },
      body: JSON.stringify({
        activities: [
          activity({ activityId: 9001 }),
          activity({ summaryId: "9002", activityId: "9002", startTimeInSeconds: start + 3600 }),
          activity({ summaryId: "9003", activityId: "not-a-number", startTimeInSeconds: start + 7200 })
        ],
        manuallyUpdatedActivities: [activity({ activityId: "9004", startTimeInSeconds: start + 10_800, manual: true })],
        activityDetails: [{
          userId: garminUserId,
          activityId: 9005,
          summary: { activityId: 9005, activityType: "CYCLING", startTimeInSeconds: start + 14_400, durationInSeconds: 60 },
          samples: [{ startTimeInSeconds: start + 14_400, heartRate: 120 }, { startTimeInSeconds: start + 14_410, heartRate: 125 }]
        }]
      })
    })
    expect(response.status).toBe(200)
    const answer = (await response.json()) as { inbox_id: number; errors: Array<{ key: string; index: number; message: string }> }
    // What cannot be stored is left out and recorded on the stored body, never a failure later in the worker.
    expect(answer.errors).toEqual([])
    expect((await outcomeOf(answer.inbox_id)).errors).toEqual([{ key: "activities", index: 2, message: "activityId is not a valid id" }])

    const { body } = await api("GET", `/v2/summary/workouts/${userId}?start_date=2023-11-17&end_date=2023-11-18`)
    const workouts = body.workouts as Array<{ provider_id: string; sport: { slug: string } }>
    expect(workouts.map((w) => w.provider_id)).toEqual(["9001", "9002", "9004", "9005"])
    const stream = (await api("GET", `/v2/summary/workout_stream/${userId}?start_date=2023-11-17&end_date=2023-11-18`)).body.workout_stream as Array<{ workout_id: string; heartrate: Array<number> }>
    expect(stream.map((s) => [s.workout_id, s.heartrate])).toEqual([["9005", [120, 125]]])

    // The activity under its summaryId and its details keyed by activityId are one workout.
    const again = await push({ activities: [activity({ summaryId: "9005", activityId: 9005, activityType: "CYCLING", startTimeInSeconds: start + 14_400, durationInSeconds: 60, activityName: "named" })] })
    expect((await outcomeOf(again)).errors).toEqual([])
    const after = (await api("GET", `/v2/summary/workouts/${userId}?start_date=2023-11-17&end_date=2023-11-18`)).body.workouts as Array<{ provider_id: string; title: string | null }>
    expect(after.filter((w) => w.provider_id === "9005").map((w) => w.title)).toEqual(["named"])
  })
})

describe("sleeps", () => {
  it("end where the awake tail ends, and naps come back as sleep sessions of their own", async () => {
    const garminUserId = "items-sleep-user"
    const userId = await linkedUser(garminUserId)
    const start = 1_700_350_000 // 2023-11-18T23:26:40Z
    const inboxId = await push({
      sleeps: [{
        userId: garminUserId, summaryId: "x-night", calendarDate: "2023-11-19", startTimeInSeconds: start, startTimeOffsetInSeconds: 0,
        durationInSeconds: 20_400, lightSleepDurationInSeconds: 10_000, deepSleepDurationInSeconds: 6_000, remSleepInSeconds: 4_400, awakeDurationInSeconds: 0,
        validation: "ENHANCED_FINAL",
        sleepLevelsMap: {
          light: [{ startTimeInSeconds: start, endTimeInSeconds: start + 10_000 }],
          deep: [{ startTimeInSeconds: start + 10_000, endTimeInSeconds: start + 16_000 }],
          rem: [{ startTimeInSeconds: start + 16_000, endTimeInSeconds: start + 20_400 }],
          awake: [{ startTimeInSeconds: start + 20_400, endTimeInSeconds: start + 21_600 }]
        },
        naps: [{ napStartTimeInSeconds: start + 50_000, napDurationInSeconds: 1_800, napOffsetInSeconds: 0, napValidation: "DEVICE" }]
      }]
    })
    expect((await outcomeOf(inboxId)).errors).toEqual([])
    const { body } = await api("GET", `/v2/summary/sleep/${userId}?start_date=2023-11-18&end_date=2023-11-20`)
    const sessions = body.sleep as Array<Record<string, unknown>>
    expect(sessions.map((s) => [s.type, s.bedtime_start, s.bedtime_stop, s.duration, s.total, s.awake])).toEqual([
      ["long_sleep", new Date(start * 1000).toISOString(), new Date((start + 21_600) * 1000).toISOString(), 21_600, 20_400, 1_200],
      ["acknowledged_nap", new Date((start + 50_000) * 1000).toISOString(), new Date((start + 51_800) * 1000).toISOString(), 1_800, 1_800, null]
    ])
    await settled()
    const sunk = await db.query(`select type, duration from wearflow_data.sleep where user_id = $1 order by bedtime_start`, [userId])
    expect(sunk.rows).toEqual([{ type: "long_sleep", duration: 21_600 }, { type: "acknowledged_nap", duration: 1_800 }])
  })
})

describe("lifecycle items older than the connection", () => {
  it("a deregistration and a permission change parked before the user was linked do not act on the new connection; a later one does", async () => {
    const garminUserId = "items-stale-deregistration-user"
    const day = { userId: garminUserId, summaryId: "x-stale-day", calendarDate: "2023-11-20", startTimeInSeconds: 1_700_438_400, durationInSeconds: 86_400, startTimeOffsetInSeconds: 0, steps: 4242 }
    const parked = await push({
      dailies: [day],
      deregistrations: [{ userId: garminUserId }],
      userPermissionsChange: [{ userId: garminUserId, permissions: [], changeTimeInSeconds: 1_700_000_000 }]
    })
    expect((await outcomeOf(parked)).unlinked).toBe(1)

    const created = await api("POST", "/v2/user", { client_user_id: "items-stale" })
    const userId = created.body.user_id as string
    const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })
    expect(linked.body.replayed_notifications).toBe(1)

    // The replay stores the day's data, or (the bug) deregisters the connection and parks it again.
    const connection = async () => ((await api("GET", `/v2/user/${userId}`)).body.connected_sources as Array<{ status: string; scopes: Array<string> }>)[0]!
    const steps = async () => ((await api("GET", `/v2/summary/activity/${userId}?start_date=2023-11-20&end_date=2023-11-20`)).body.activity as Array<{ steps: number }>).map((a) => a.steps)
    await eventually(async () => ((await steps()).length > 0 || (await connection()).status !== "active" ? true : undefined), 60_000)
    expect(await steps()).toEqual([4242])
    expect(await connection()).toMatchObject({ status: "active", scopes: [] })
    expect(await count("select count(*) as n from outbox where user_id = $1 and event_type = 'provider.connection.error'", [userId])).toBe(0)

    // A deregistration Garmin sends after the link ends the connection.
    const fresh = await push({ deregistrations: [{ userId: garminUserId }] })
    await outcomeOf(fresh)
    expect((await connection()).status).toBe("deregistered")
    const events = await db.query("select payload from outbox where user_id = $1 and event_type = 'provider.connection.error'", [userId])
    expect(events.rows.map((r) => r.payload.data.error_type)).toEqual(["deregistered_per_provider"])
  })
})
