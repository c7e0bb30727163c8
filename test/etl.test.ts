/**
 * The ETL sink against the real server: Garmin PUSH fixtures → outbox → batches → files in a
 * real S3-protocol server (s3rver) on loopback, read back with DuckDB. NDJSON.gz and Parquet;
 * manifests and schemas; a crash between upload and progress; a storage outage; the local
 * directory default.
 */
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api"
import { Resources } from "@wearflow/core/schema"
import { Redacted } from "effect"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { type S3Server, startS3 } from "./support/s3.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"
import { scrape } from "./support/metrics.ts"

const fixture = (name: string) => readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8")
const CLIENT_ID = "etl-garmin-client"
const API_KEY = "etl-api-key"
const SPEC_USER = "4aacafe82427c251df9c9592d0c06768"
const BUCKET = "wearflow-etl"
/**
 * Every PUSH fixture that carries data, and the ETL rows each must become per resource
 * (a summary is one row, a timeseries one row per sample), counted from the fixtures: e.g.
 * dailies are two days with 8 heart-rate samples each, sleeps two nights (the first with a nap,
 * a session of its own) with 4 respiration and 7 SpO2 readings in the first, epochs three slices
 * (walking, sedentary with measured zeros, running), bloodPressures one reading with its pulse.
 */
const ROWS_PER_FIXTURE: Record<string, Record<string, number>> = {
  dailies: { activity: 2, heartrate: 16 },
  sleeps: { sleep: 3, respiratory_rate: 4, blood_oxygen: 7 },
  epochs: { steps: 3, calories_active: 3, distance: 3 },
  hrv: { hrv: 12 },
  stressDetails: { stress_level: 4 },
  bodyComps: { body: 2, weight: 2, fat: 2 },
  pulseox: { blood_oxygen: 20 },
  allDayRespiration: { respiratory_rate: 22 },
  bloodPressures: { blood_pressure: 1, heartrate: 1 },
  skinTemp: { body_temperature_delta: 1 },
  userMetrics: { vo2_max: 1 },
  activities: { workouts: 2 },
  activityDetails: { workouts: 1, workout_stream: 1, heartrate: 2 },
  manuallyUpdatedActivities: { workouts: 2 },
  moveIQActivities: { workouts: 1 },
  mct: { menstrual_cycle: 3 },
  healthSnapshot: { heartrate: 12, respiratory_rate: 12, stress_level: 12, blood_oxygen: 12, hrv: 1 }
}
/**
 * The bodies posted: one per fixture, except that an activity, its details and its manual
 * update share one body, as Garmin may send them. In separate bodies their events would depend
 * on which worker took which body first (an older body never overwrites a newer one's record).
 */
const SHARING_RECORDS = ["activities", "activityDetails", "manuallyUpdatedActivities"]
const bodiesFor = (garminUserId: string): Array<string> => {
  const own = (name: string) => JSON.parse(fixture(name).replaceAll(SPEC_USER, garminUserId)) as Record<string, unknown>
  const separate = Object.keys(ROWS_PER_FIXTURE).filter((name) => !SHARING_RECORDS.includes(name))
  return [...separate.map((name) => JSON.stringify(own(name))), JSON.stringify(Object.assign({}, ...SHARING_RECORDS.map(own)))]
}
/** The rows one pushEverything must put in the files, per resource. */
const ROWS_PER_RESOURCE = new Map<string, number>()
for (const rows of Object.values(ROWS_PER_FIXTURE)) {
  for (const [resource, n] of Object.entries(rows)) ROWS_PER_RESOURCE.set(resource, (ROWS_PER_RESOURCE.get(resource) ?? 0) + n)
}

let dir: string
let databaseUrl: string
let s3: S3Server
let server: RunningServer
let db: pg.Client
let duck: DuckDBConnection

const api = wearflowApi(() => server.baseUrl, API_KEY)

const envFor = (overrides: Record<string, string>) => ({
  DATABASE_URL: databaseUrl,
  GARMIN_CLIENT_ID: CLIENT_ID,
  WEARFLOW_API_KEY: API_KEY,
  WEARFLOW_DATA_DIR: path.join(dir, "data"),
  GARMIN_API_URL: "http://127.0.0.1:9",
  WEARFLOW_BACKFILL_ON_CONNECT: "false",
  WEARFLOW_ETL_S3_BUCKET: BUCKET,
  WEARFLOW_ETL_S3_ENDPOINT: s3.url,
  WEARFLOW_ETL_S3_FORCE_PATH_STYLE: "true",
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  WEARFLOW_ETL_BATCH_SECONDS: "1",
  ...overrides
})

const push = async (body: string) => {
  const response = await sendGarminNotification(server.baseUrl, CLIENT_ID, "push", body)
  expect(response.status).toBe(200)
}

let users = 0
/** A Wearflow user linked to `garminUserId`, and every data fixture pushed for that Garmin user. */
const pushEverything = async (garminUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: `etl-user-${++users}` })
  const userId = created.body.user_id as string
  expect((await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })).status).toBe(200)
  for (const body of bodiesFor(garminUserId)) await push(body)
  return userId
}

const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)

/** Ingest done, the sink caught up with the outbox, nothing staged or sealed. */
const settled = (timeoutMs = 60_000) =>
  eventually(async () => {
    const waiting = await count(`
      select (select count(*) from inbox where processed_at is null)
           + (select count(*) from outbox o where not exists (
                select 1 from sink_cursors c where c.sink_id = 's3' and (o.tx, o.position) <= (c.tx, c.position)))
           + (select count(*) from etl_pending)
           + (select count(*) from etl_batches where status = 'sealed') as n`)
    return waiting === 0 ? true : undefined
  }, timeoutMs)

/**
 * Rows the files must hold: per resource from the fixtures; per event, and each event's
 * resource, from the outbox (so each event's rows are found once).
 */
const expectedRows = async (userId: string) => {
  const { rows } = await db.query<{ event_id: string; event_type: string; payload: { data: { data?: Array<unknown> } } }>(
    "select event_id, event_type, payload from outbox where user_id = $1 and event_type like 'daily.data.%'",
    [userId]
  )
  const perEvent = new Map<string, number>()
  const resourceOf = new Map<string, string>()
  const fromOutbox = new Map<string, number>()
  for (const row of rows) {
    const resource = row.event_type.split(".")[2]!
    const n = Array.isArray(row.payload.data.data) ? row.payload.data.data.length : 1
    fromOutbox.set(resource, (fromOutbox.get(resource) ?? 0) + n)
    perEvent.set(row.event_id, n)
    if (n > 0) resourceOf.set(row.event_id, resource)
  }
  // A record lost before the outbox shows here, not only in the files.
  expect(fromOutbox).toEqual(ROWS_PER_RESOURCE)
  return { perResource: ROWS_PER_RESOURCE, perEvent, resourceOf }
}

interface ManifestFile {
  readonly key: string
  readonly records: number
  readonly bytes: number
  readonly sha256: string
}
interface Manifest {
  readonly batch_id: string
  readonly resource: string
  readonly format: string
  readonly schema_version: string
  readonly schema_key: string
  readonly record_count: number
  readonly event_count: number
  readonly files: ReadonlyArray<ManifestFile>
}

/**
 * Downloads everything under `prefix`, checks every manifest against its files (size,
 * SHA-256) and that every data file belongs to exactly one manifest; answers the local root.
 */
const downloadChecked = async (prefix: string, extension: string) => {
  const local = await fs.mkdtemp(path.join(dir, "read-"))
  const keys = await s3.download(prefix, local)
  const manifests = await Promise.all(
    keys.filter((k) => k.startsWith(`${prefix}/_manifests/`)).map(async (k) => JSON.parse(await fs.readFile(path.join(local, k), "utf8")) as Manifest)
  )
  const dataKeys = keys.filter((k) => k.startsWith(`${prefix}/resource=`))
  expect(dataKeys.every((k) => k.endsWith(`.${extension}`))).toBe(true)
  expect(manifests.flatMap((m) => m.files.map((f) => f.key)).sort()).toEqual(dataKeys)
  for (const manifest of manifests) {
    expect(manifest.files).toHaveLength(1)
    const file = manifest.files[0]!
    const bytes = await fs.readFile(path.join(local, file.key))
    expect(bytes.length).toBe(file.bytes)
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(file.sha256)
    expect(file.records).toBe(manifest.record_count)
    expect(keys).toContain(manifest.schema_key)
  }
  return { local, manifests, dataKeys }
}

const query = async (sql: string) => (await duck.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, any>>

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-etl-"))
  databaseUrl = Redacted.value(await freshDatabaseUrl())
  s3 = await startS3(BUCKET)
  server = await startServer(envFor({ WEARFLOW_ETL_S3_PREFIX: "etl/ndjson" }))
  db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  duck = await (await DuckDBInstance.create(":memory:")).connect()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  duck?.closeSync()
  await s3?.close()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("ETL files in an S3-compatible bucket", () => {
  it("writes every posted record once as NDJSON.gz that DuckDB reads back, with manifests and schemas", async () => {
    const userId = await pushEverything(SPEC_USER)
    await settled()
    const expected = await expectedRows(userId)
    const { local, manifests } = await downloadChecked("etl/ndjson", "ndjson.gz")
    const root = path.join(local, "etl/ndjson")

    // Every resource's rows: as many as the outbox events hold, each event's rows once.
    expect(new Set(manifests.map((m) => m.resource))).toEqual(new Set(expected.perResource.keys()))
    for (const [resource, rows] of expected.perResource) {
      const files = `${root}/resource=${resource}/*/*.ndjson.gz`
      const [total] = await query(`select count(*)::int as n from read_json('${files}', format = 'newline_delimited')`)
      expect(total!.n, resource).toBe(rows)
      const perEvent = await query(`select event_id, count(*)::int as n from read_json('${files}', format = 'newline_delimited') group by event_id`)
      for (const { event_id, n } of perEvent) expect(n, `${resource} ${event_id}`).toBe(expected.perEvent.get(event_id))
      expect(manifests.filter((m) => m.resource === resource).reduce((n, m) => n + m.record_count, 0)).toBe(rows)
    }

    // Values as posted to Garmin's endpoint (dailies: steps, floors, heart rate samples).
    const daily = JSON.parse(fixture("dailies")).dailies[0]
    const [activity] = await query(`
      select steps::int as steps, floors_climbed::int as floors_climbed, calendar_date, client_user_id, user_id, historical, event_type, source.provider as provider
      from read_json('${root}/resource=activity/*/*.ndjson.gz', format = 'newline_delimited') where calendar_date = '${daily.calendarDate}'`)
    expect(activity).toMatchObject({
      steps: daily.steps, floors_climbed: daily.floorsClimbed, client_user_id: "etl-user-1", user_id: userId,
      historical: false, event_type: "daily.data.activity.created", provider: "garmin"
    })
    const start = daily.startTimeInSeconds as number
    const offsets = Object.entries(daily.timeOffsetHeartRateSamples as Record<string, number>)
    const heartrate = await query(`
      select epoch(timestamp::timestamptz)::bigint as at, value from read_json('${root}/resource=heartrate/*/*.ndjson.gz', format = 'newline_delimited')
      where epoch(timestamp::timestamptz) between ${start} and ${start + 86_400}`)
    expect(new Map(heartrate.map((r) => [Number(r.at), Number(r.value)]))).toEqual(new Map(offsets.map(([s, bpm]) => [start + Number(s), bpm])))

    // Each file's manifest names the resource's published JSON Schema.
    const schema = JSON.parse(await fs.readFile(path.join(local, manifests[0]!.schema_key), "utf8"))
    expect(schema.$schema).toContain("json-schema.org")
    expect(JSON.stringify(schema)).toContain("event_id")
  })

  it("writes Parquet with the resource schema's column types", async () => {
    await server.stop()
    server = await startServer(envFor({ WEARFLOW_ETL_S3_PREFIX: "etl/parquet", WEARFLOW_ETL_FORMAT: "parquet" }))
    const userId = await pushEverything("etl-parquet-garmin-user")
    await settled()
    const expected = await expectedRows(userId)
    const { local } = await downloadChecked("etl/parquet", "parquet")
    const root = path.join(local, "etl/parquet")

    for (const [resource, rows] of expected.perResource) {
      const [total] = await query(`select count(*)::int as n from read_parquet('${root}/resource=${resource}/*/*.parquet') where user_id = '${userId}'`)
      expect(total!.n, resource).toBe(rows)
    }
    const types = Object.fromEntries(
      (await query(`select column_name, column_type from (describe select * from read_parquet('${root}/resource=activity/*/*.parquet'))`)).map((r) => [r.column_name, r.column_type])
    )
    expect(types).toMatchObject({
      event_id: "VARCHAR", emitted_at: "TIMESTAMP WITH TIME ZONE", historical: "BOOLEAN", record_date: "TIMESTAMP WITH TIME ZONE",
      calendar_date: "DATE", steps: "BIGINT", calories_total: "DOUBLE", wheelchair_use: "BOOLEAN",
      source: "STRUCT(provider VARCHAR, \"type\" VARCHAR, device_id VARCHAR, app_id VARCHAR)"
    })
    const daily = JSON.parse(fixture("dailies")).dailies[0]
    const [activity] = await query(`
      select steps, calendar_date::varchar as day, heart_rate.max_bpm as max_bpm from read_parquet('${root}/resource=activity/*/*.parquet')
      where calendar_date = '${daily.calendarDate}'`)
    expect(activity).toMatchObject({ steps: String(daily.steps), day: daily.calendarDate, max_bpm: daily.maxHeartRateInBeatsPerMinute })
    const streamTypes = Object.fromEntries(
      (await query(`select column_name, column_type from (describe select * from read_parquet('${root}/resource=workout_stream/*/*.parquet'))`)).map((r) => [r.column_name, r.column_type])
    )
    expect(streamTypes).toMatchObject({ time: "DOUBLE[]", heartrate: "DOUBLE[]", time_start: "TIMESTAMP WITH TIME ZONE" })
  })

  it("rewrites the same keys after a crash between the upload and the progress record: no second copy", async () => {
    await server.stop()
    const env = envFor({ WEARFLOW_ETL_S3_PREFIX: "etl/crash" })
    server = await startServer(env)
    const victim = server
    let manifestKey: string | undefined
    s3.afterPut = async (key) => {
      if (!key.startsWith("etl/crash/_manifests/") || manifestKey !== undefined) return
      manifestKey = key
      // The manifest is stored; the server dies before it hears so, let alone records it.
      victim.process.kill("SIGKILL")
      await new Promise((resolve) => victim.process.once("exit", resolve))
    }
    const userId = await pushEverything("etl-crash-garmin-user")
    await eventually(async () => manifestKey, 60_000)
    s3.afterPut = undefined
    expect(await count("select count(*) as n from etl_batches where status = 'sealed'")).toBeGreaterThan(0)

    server = await startServer(env)
    await settled()
    const dataKey = manifestKey!.replace("_manifests/", "").replace(/\.json$/, ".ndjson.gz")
    expect(s3.puts.get(manifestKey!)).toBe(2)
    expect(s3.puts.get(dataKey)).toBe(2)
    const expected = await expectedRows(userId)
    const { local } = await downloadChecked("etl/crash", "ndjson.gz")
    for (const [resource, rows] of expected.perResource) {
      const [total] = await query(`
        select count(*)::int as n, count(distinct event_id)::int as events
        from read_json('${local}/etl/crash/resource=${resource}/*/*.ndjson.gz', format = 'newline_delimited')`)
      expect(total!.n, resource).toBe(rows)
      expect(total!.events, resource).toBe([...expected.perEvent.keys()].filter((id) => expected.resourceOf.get(id) === resource).length)
    }
  })

  it("waits out a storage outage: batches flush afterwards, nothing lost, nothing twice", async () => {
    s3.down = true
    const before = await count("select count(*) as n from etl_batches")
    const userId = await pushEverything("etl-outage-garmin-user")
    // Batches are sealed and their writes fail; the backlog is reported.
    await eventually(async () => ((await count("select count(*) as n from etl_batches where status = 'sealed' and attempts > 0")) > 0 ? true : undefined), 30_000)
    await eventually(async () => (server.logs().includes("ETL batch could not be written") ? true : undefined))
    expect(server.logs()).toMatch(/"backlog_records":[1-9]/)
    const metric = async (name: string) => (await scrape(server.baseUrl, name)) ?? Number.NaN
    // The other sinks carry on meanwhile.
    await eventually(async () => ((await count(
      "select count(*) as n from outbox o, sink_cursors c where c.sink_id = 'postgres' and (o.tx, o.position) > (c.tx, c.position)")) === 0 ? true : undefined))
    expect(await count("select count(*) as n from wearflow_data.activity where user_id = $1", [userId])).toBeGreaterThan(0)
    // The health check proves write access, and says the ETL sink fails without saying why.
    const health = await fetch(`${server.baseUrl}/health`)
    expect(health.status).toBe(503)
    expect(await health.json()).toMatchObject({ status: "failing", database: "ok", sinks: { postgres: "ok", webhooks: "ok", s3: "failing" }, ingest: { status: "ok" } })
    await eventually(async () => ((await metric("wearflow_etl_backlog_records")) > 0 ? true : undefined))
    expect(await metric("wearflow_etl_backlog_sealed_batches")).toBeGreaterThan(0)
    expect(await metric("wearflow_etl_write_errors_total")).toBeGreaterThan(0)
    // A batch has been tried three times (over seconds of back-off) while the storage was down: nothing was written.
    await eventually(async () => ((await count("select count(*) as n from etl_batches where status = 'sealed' and attempts >= 3 and id > $1", [before])) > 0 ? true : undefined), 30_000)
    expect(await count("select count(*) as n from etl_batches where status = 'written' and id > $1", [before])).toBe(0)

    s3.down = false
    await settled(90_000)
    const expected = await expectedRows(userId)
    const { local } = await downloadChecked("etl/crash", "ndjson.gz")
    for (const [resource, rows] of expected.perResource) {
      const [total] = await query(`
        select count(*)::int as n from read_json('${local}/etl/crash/resource=${resource}/*/*.ndjson.gz', format = 'newline_delimited')
        where user_id = '${userId}'`)
      expect(total!.n, resource).toBe(rows)
    }
    // Another writer may have flushed the batches while the flusher slept out its back-off; it says so when it next wakes.
    await eventually(async () => (server.logs().includes("ETL storage writes resumed") ? true : undefined), 60_000)
    await eventually(async () => ((await metric("wearflow_etl_backlog_records")) === 0 ? true : undefined))
    const healthy = await fetch(`${server.baseUrl}/health`)
    expect([healthy.status, await healthy.json()]).toMatchObject([200, { status: "ok", database: "ok", sinks: { postgres: "ok", webhooks: "ok", s3: "ok" }, ingest: { status: "ok" } }])
    expect(await metric("wearflow_etl_records_written_total")).toBeGreaterThan(0)
  })
})

describe("ETL files in the local directory (the default)", () => {
  it("writes batches, manifests and schemas under <data dir>/etl", async () => {
    await server.stop()
    const dataDir = path.join(dir, "local-data")
    const {
      WEARFLOW_ETL_S3_BUCKET: _b, WEARFLOW_ETL_S3_ENDPOINT: _e, WEARFLOW_ETL_S3_FORCE_PATH_STYLE: _f, ...local
    } = envFor({ WEARFLOW_DATA_DIR: dataDir })
    server = await startServer(local)
    const userId = await pushEverything("etl-local-garmin-user")
    await settled()
    const root = path.join(dataDir, "etl")
    const expected = await expectedRows(userId)
    for (const [resource, rows] of expected.perResource) {
      const [total] = await query(`
        select count(*)::int as n from read_json('${root}/resource=${resource}/*/*.ndjson.gz', format = 'newline_delimited')`)
      expect(total!.n, resource).toBe(rows)
    }
    const manifests = await fs.readdir(path.join(root, "_manifests/resource=activity"), { recursive: true })
    expect(manifests.some((m) => m.endsWith(".json"))).toBe(true)
    // Every resource's schema (and the deletions and deleted_users datasets') is there from the start, data or not.
    expect((await fs.readdir(path.join(root, "_schemas"))).filter((f) => f.endsWith(".json")).length).toBe(Object.keys(Resources).length + 2)
    expect(JSON.parse(await fs.readFile(path.join(root, "_schemas/deletions.json"), "utf8")).$ref).toBe("#/$defs/wearflow.etl.deletions")
    expect(JSON.parse(await fs.readFile(path.join(root, "_schemas/activity.json"), "utf8")).$schema).toContain("json-schema.org")
    expect((await fs.readdir(root, { recursive: true })).some((f) => f.endsWith(".partial"))).toBe(false)
  })
})
