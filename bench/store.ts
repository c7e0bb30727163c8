/**
 * Benchmark of the normalized store: RecordStore.write (core/pipeline/store.ts) driven directly,
 * one body after another, on an embedded Postgres migrated with the real migrations. Two
 * shapes, each beside its anchor measured in the same run on the same Postgres:
 *
 * - samples: bodies of one heart-rate batch of SAMPLES samples each (each sample counts as a
 *   record). Anchors: the same sample rows upserted into a bare table (primary key only), one
 *   multi-row `insert … select from unnest(…) on conflict do update` per body; and the same
 *   rows COPYed into a bare table (text format, one COPY per body).
 * - summaries: bodies of SUMMARIES dailies and sleeps each. Anchor: the same records (their
 *   JSON serialized, as any writer must) upserted into a bare table, one multi-row upsert per body.
 *
 * The anchors pass their columns as the store does (array literals, JSON as one JSON array),
 * the fastest form we know on node-postgres, so the ratio is to the floor, not to a slow client.
 *
 * The issue's targets: ≥ 50,000 samples/s and ≥ 10,000 summaries/s into the store. Figures
 * only, never assertions. With STORE_BENCH_PG_STATS=1 Postgres loads pg_stat_statements and
 * the run prints where Postgres spent its time, statement by statement.
 *
 *   bun bench/store.ts
 *     env: STORE_BENCH_BODIES=200           sample bodies
 *          STORE_BENCH_SAMPLES=1000         heart-rate samples per body
 *          STORE_BENCH_SUMMARY_BODIES=50    summary bodies
 *          STORE_BENCH_SUMMARIES=200        summaries per body (half dailies, half sleeps)
 *          STORE_BENCH_USERS=20             users the bodies are spread over
 *          STORE_BENCH_CONCURRENCY=4        bodies written at a time, by the store and by each anchor
 *                                           (4: the server's ingest takers, WEARFLOW_INGEST_CONCURRENCY)
 *          STORE_BENCH_PG_STATS=0           1: print pg_stat_statements' top statements
 *          STORE_BENCH_EXPLAIN=0            1: auto_explain logs every statement's plan (analyze, buffers,
 *                                           triggers), copied to /tmp/wearflow-store-plans.log; use few bodies
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import type { NormalizedRecord } from "../core/normalizer.ts"
import { RecordStore } from "../core/pipeline/store.ts"
import * as Database from "../core/storage/database.ts"
import { arrayLiteral } from "../core/storage/pg-array.ts"
import { startBenchPostgres } from "./postgres.ts"
import { type BenchRow, rate, report } from "./report.ts"

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const BODIES = env("STORE_BENCH_BODIES", 200)
const SAMPLES = env("STORE_BENCH_SAMPLES", 1000)
const SUMMARY_BODIES = env("STORE_BENCH_SUMMARY_BODIES", 50)
const SUMMARIES = env("STORE_BENCH_SUMMARIES", 200)
const USERS = env("STORE_BENCH_USERS", 20)
const CONCURRENCY = env("STORE_BENCH_CONCURRENCY", 4)
const PG_STATS = process.env.STORE_BENCH_PG_STATS === "1"
const EXPLAIN = process.env.STORE_BENCH_EXPLAIN === "1"

// ---- the bodies -----------------------------------------------------------------------------

const source = { provider: "garmin", type: "watch", device_id: "fr965", app_id: null } as const
const DAY = 86_400_000
const epoch = Date.UTC(2026, 0, 1)

/** One heart-rate batch of SAMPLES samples, 15 s apart, on its own day. */
const heartRateBody = (body: number): ReadonlyArray<NormalizedRecord> => {
  const start = epoch + body * DAY
  return [{
    kind: "timeseries",
    resource: "heartrate",
    sourceId: `hr-${body}`,
    data: {
      source,
      data: Array.from({ length: SAMPLES }, (_, i) => ({
        timestamp: new Date(start + i * 15_000).toISOString(),
        timezone_offset: 3600,
        type: "watch",
        unit: "bpm",
        value: 55 + ((body * 7 + i * 13) % 60)
      }))
    }
  }] as ReadonlyArray<NormalizedRecord>
}

/** SUMMARIES records: dailies and sleeps on consecutive days, as a backfill page brings them. */
const summaryBody = (body: number): ReadonlyArray<NormalizedRecord> =>
  Array.from({ length: SUMMARIES }, (_, i): NormalizedRecord => {
    const day = new Date(epoch + (body * SUMMARIES + i) * DAY)
    const calendar_date = day.toISOString().slice(0, 10)
    if (i % 2 === 0) {
      return {
        kind: "summary",
        resource: "activity",
        sourceId: `daily-${body}-${i}`,
        data: {
          date: day.toISOString(),
          calendar_date,
          calories_total: 2400 + i,
          calories_active: 600 + i,
          steps: 9000 + i,
          daily_movement: 7100.5,
          low: 120,
          medium: 35,
          high: 12,
          floors_climbed: 8,
          heart_rate: { avg_bpm: 68, min_bpm: 48, max_bpm: 162, resting_bpm: 52, avg_walking_bpm: 92 },
          wheelchair_use: null,
          wheelchair_push: null,
          timezone_offset: 3600,
          source
        }
      }
    }
    const bedtime = day.getTime() - 2 * 3_600_000
    return {
      kind: "summary",
      resource: "sleep",
      sourceId: `sleep-${body}-${i}`,
      data: {
        date: day.toISOString(),
        calendar_date,
        bedtime_start: new Date(bedtime).toISOString(),
        bedtime_stop: new Date(bedtime + 8 * 3_600_000).toISOString(),
        type: "long_sleep",
        duration: 28_800,
        total: 26_000 + i,
        awake: 2_800,
        light: 14_000,
        rem: 6_000,
        deep: 6_000,
        score: 81,
        hr_lowest: 47,
        hr_average: 56,
        efficiency: 90.2,
        latency: 600,
        temperature_delta: -0.2,
        average_hrv: 61,
        respiratory_rate: 14.5,
        timezone_offset: 3600,
        source
      }
    }
  })

// ---- the database ---------------------------------------------------------------------------

const postgres = await startBenchPostgres("wearflow-bench-store-")
if (PG_STATS) {
  // shared_preload_libraries takes a restart: the bench's own server, restarted in place.
  const admin = new pg.Client({ connectionString: postgres.url })
  await admin.connect()
  await admin.query("alter system set shared_preload_libraries = 'pg_stat_statements'")
  await admin.query("alter system set pg_stat_statements.track_planning = on")
  await admin.end()
  await postgres.restart()
}
if (EXPLAIN) {
  const admin = new pg.Client({ connectionString: postgres.url })
  await admin.connect()
  for (const setting of ["session_preload_libraries = 'auto_explain'", "auto_explain.log_min_duration = 0", "auto_explain.log_analyze = on",
    "auto_explain.log_buffers = on", "auto_explain.log_triggers = on", "auto_explain.log_nested_statements = on"]) {
    await admin.query(`alter system set ${setting}`)
  }
  await admin.query("select pg_reload_conf()")
  await admin.end()
}

const runtime = ManagedRuntime.make(
  RecordStore.Default.pipe(
    Layer.provideMerge(Database.layer({ url: Option.some(Redacted.make(postgres.url)), dataDir: postgres.dir, maxConnections: CONCURRENCY + 2 })),
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Warning))
  )
)
const run = <A, E>(effect: Effect.Effect<A, E, RecordStore | SqlClient.SqlClient>) => runtime.runPromise(effect)
await run(Effect.void) // builds the layers: the real migrations run here

const client = new pg.Client({ connectionString: postgres.url })
await client.connect()
// The anchors' connections, one per body in flight.
const clients = await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  const c = new pg.Client({ connectionString: postgres.url })
  await c.connect()
  return c
}))
if (PG_STATS) await client.query("create extension if not exists pg_stat_statements")

const teamId = randomUUID()
const users = Array.from({ length: USERS }, (_, i) => ({ userId: randomUUID(), teamId, clientUserId: `bench-${i}` }))
await client.query("insert into teams (id, name) values ($1, 'bench')", [teamId])
for (const user of users) await client.query("insert into users (id, team_id, client_user_id) values ($1, $2, $3)", [user.userId, teamId, user.clientUserId])

// The anchors' bare tables: the same columns, a primary key, nothing else.
await client.query(`create table bare_samples (
  record_id uuid not null, ts timestamptz not null, user_id uuid not null, resource text not null, provider text not null,
  source_type text not null, value double precision, unit text not null, timezone_offset integer, fields jsonb,
  primary key (record_id, ts))`)
await client.query(`create table bare_samples_copy (like bare_samples including all)`)
await client.query(`create table bare_records (
  id uuid primary key, user_id uuid not null, provider text not null, resource text not null, source_id text not null,
  data jsonb not null, inbox_id bigint not null)`)

// ---- the runs -------------------------------------------------------------------------------

/** Wall time of `work`, and CPU time of this process and of Postgres; `last` keeps the CPU figures of the latest run. */
const cpu = { bunMs: 0, pgMs: 0 }
const timed = async (work: () => Promise<void>) => {
  // Reading Postgres's CPU walks /proc: kept outside this process's own figure.
  const pg0 = await postgres.cpuMs()
  const [bun0, t0] = [process.cpuUsage(), performance.now()]
  await work()
  const seconds = (performance.now() - t0) / 1000
  const bun = process.cpuUsage(bun0)
  cpu.bunMs = (bun.user + bun.system) / 1000
  cpu.pgMs = (await postgres.cpuMs()) - pg0
  return seconds
}
/** CPU µs per record of the run just timed, this process + Postgres: steadier than rates on a shared machine. */
const cpuPer = (records: number) => `${((cpu.bunMs * 1000) / records).toFixed(1)} + ${((cpu.pgMs * 1000) / records).toFixed(1)} µs`

type Body = ReadonlyArray<NormalizedRecord>

/** Runs `write` for every body, CONCURRENCY at a time, each lane on its own anchor connection. */
const eachBody = (bodies: ReadonlyArray<Body>, write: (records: Body, i: number, client: pg.Client) => Promise<void>) => {
  let next = 0
  return Promise.all(clients.map(async (lane) => {
    while (next < bodies.length) {
      const i = next++
      await write(bodies[i]!, i, lane)
    }
  })).then(() => undefined)
}

/** Writes each body through RecordStore.write; answers records/s. */
const throughStore = async (bodies: ReadonlyArray<Body>, inboxBase: number, count: number) => {
  let created = 0
  const seconds = await timed(() =>
    eachBody(bodies, async (records, i) => {
      const outcome = await run(Effect.flatMap(RecordStore, (store) => store.write(users[i % USERS]!, "garmin", records, inboxBase + i)))
      created += outcome.created
    }))
  if (created !== bodies.reduce((n, b) => n + b.length, 0)) throw new Error(`expected every record created, got ${created}`)
  return count / seconds
}

const sampleRows = (records: ReadonlyArray<NormalizedRecord>, userId: string) =>
  records.flatMap((record) => {
    if (record.kind !== "timeseries") return []
    const recordId = randomUUID()
    return record.data.data.map((s) => ({ recordId, userId, ts: s.timestamp, value: (s as { value: number }).value, unit: s.unit, offset: s.timezone_offset, sourceType: s.type }))
  })

/** Anchor: the same sample rows, one multi-row upsert per body into a bare table. */
const samplesUpsert = async (bodies: ReadonlyArray<Body>) => {
  const seconds = await timed(() =>
    eachBody(bodies, async (records, i, client) => {
      const rows = sampleRows(records, users[i % USERS]!.userId)
      await client.query(
        `insert into bare_samples (record_id, ts, user_id, resource, provider, source_type, value, unit, timezone_offset)
         select r, t, $3, 'heartrate', 'garmin', s, v, u, o
         from unnest($1::uuid[], $2::timestamptz[], $4::text[], $5::float8[], $6::text[], $7::int[]) as x(r, t, s, v, u, o)
         on conflict (record_id, ts) do update set value = excluded.value, unit = excluded.unit,
           timezone_offset = excluded.timezone_offset, fields = excluded.fields, source_type = excluded.source_type`,
        [arrayLiteral(rows.map((r) => r.recordId)), arrayLiteral(rows.map((r) => r.ts)), rows[0]!.userId, arrayLiteral(rows.map((r) => r.sourceType)),
          arrayLiteral(rows.map((r) => r.value)), arrayLiteral(rows.map((r) => r.unit)), arrayLiteral(rows.map((r) => r.offset))]
      )
    }))
  return (bodies.length * SAMPLES) / seconds
}

/**
 * COPY FROM STDIN on node-postgres without a further dependency: a submittable that sends
 * the whole payload once Postgres asks for it.
 */
const copyIn = (client: pg.Client, text: string, payload: string) =>
  new Promise<void>((resolve, reject) => {
    let failure: unknown
    client.query({
      submit: (connection: any) => connection.query(text),
      handleCopyInResponse: (connection: any) => {
        connection.sendCopyFromChunk(Buffer.from(payload))
        connection.endCopyFrom()
      },
      handleCommandComplete: () => undefined,
      handleError: (error: unknown) => {
        failure = error
      },
      handleReadyForQuery: () => (failure ? reject(failure) : resolve())
    } as any)
  })

/** Anchor: the same sample rows COPYed into a bare table, one COPY per body. */
const samplesCopy = async (bodies: ReadonlyArray<Body>) => {
  const seconds = await timed(() =>
    eachBody(bodies, async (records, i, client) => {
      const rows = sampleRows(records, users[i % USERS]!.userId)
      const payload = rows.map((r) => `${r.recordId}\t${r.ts}\t${r.userId}\theartrate\tgarmin\t${r.sourceType}\t${r.value}\t${r.unit}\t${r.offset}\t\\N\n`).join("")
      await copyIn(client, "copy bare_samples_copy from stdin", payload)
    }))
  return (bodies.length * SAMPLES) / seconds
}

/** Anchor: the same summaries, serialized, one multi-row upsert per body into a bare table. */
const summariesUpsert = async (bodies: ReadonlyArray<Body>) => {
  const seconds = await timed(() =>
    eachBody(bodies, async (records, i, client) => {
      const userId = users[i % USERS]!.userId
      await client.query(
        `insert into bare_records (id, user_id, provider, resource, source_id, data, inbox_id)
         select id, $2, 'garmin', r, s, d, $6
         from rows from (unnest($1::uuid[]), unnest($3::text[]), unnest($4::text[]), jsonb_array_elements($5::jsonb)) as x(id, r, s, d)
         on conflict (id) do update set data = excluded.data, inbox_id = excluded.inbox_id`,
        [arrayLiteral(records.map(() => randomUUID())), userId, arrayLiteral(records.map((r) => r.resource)), arrayLiteral(records.map((r) => r.sourceId)),
          JSON.stringify(records.map((r) => r.data)), i]
      )
    }))
  return (bodies.length * SUMMARIES) / seconds
}

const resetStats = () => (PG_STATS ? client.query("select pg_stat_statements_reset()") : Promise.resolve())
const printStats = async (label: string) => {
  if (!PG_STATS) return
  const { rows } = await client.query<{ query: string; calls: string; exec: number; plan: number }>(
    `select regexp_replace(query, '\\s+', ' ', 'g') as query, calls, total_exec_time as exec, total_plan_time as plan
     from pg_stat_statements where query not ilike '%pg_stat_statements%' order by total_exec_time + total_plan_time desc limit 8`
  )
  const all = rows.reduce((n, r) => n + r.exec + r.plan, 0)
  console.log(`\npg_stat_statements, ${label} (execution + planning):`)
  for (const r of rows) {
    console.log(`  ${r.exec.toFixed(0).padStart(6)} + ${r.plan.toFixed(0).padStart(4)} ms ${(((r.exec + r.plan) / all) * 100).toFixed(0).padStart(3)}%  ${String(r.calls).padStart(6)} calls  ${r.query.slice(0, 120)}`)
  }
}

// Warm up both paths (plans, caches, JIT) on bodies of their own.
await throughStore([heartRateBody(10_000), ...summaryBody(10_000).map((r) => [r])].slice(0, 5), 1, 0)
await samplesUpsert([heartRateBody(10_001)])

const sampleBodies = Array.from({ length: BODIES }, (_, i) => heartRateBody(i))
await resetStats()
const samplesStore = await throughStore(sampleBodies, 1_000, BODIES * SAMPLES)
const samplesStoreCpu = cpuPer(BODIES * SAMPLES)
await printStats("samples into the store")
const samplesAnchor = await samplesUpsert(sampleBodies)
const samplesAnchorCpu = cpuPer(BODIES * SAMPLES)
const samplesCopyRate = await samplesCopy(sampleBodies)
const samplesCopyCpu = cpuPer(BODIES * SAMPLES)

const summaryBodies = Array.from({ length: SUMMARY_BODIES }, (_, i) => summaryBody(i))
await resetStats()
const summariesStore = await throughStore(summaryBodies, 100_000, SUMMARY_BODIES * SUMMARIES)
const summariesStoreCpu = cpuPer(SUMMARY_BODIES * SUMMARIES)
await printStats("summaries into the store")
const summariesAnchor = await summariesUpsert(summaryBodies)
const summariesAnchorCpu = cpuPer(SUMMARY_BODIES * SUMMARIES)

console.log(
  `\nstore: ${BODIES} bodies × ${SAMPLES} heart-rate samples; ${SUMMARY_BODIES} bodies × ${SUMMARIES} summaries; ${USERS} users; ${CONCURRENCY} bodies at a time`
)
console.log("CPU per record (this process + Postgres):")
console.log(`  samples:   store ${samplesStoreCpu}; bare upsert ${samplesAnchorCpu}; COPY ${samplesCopyCpu}`)
console.log(`  summaries: store ${summariesStoreCpu}; bare upsert ${summariesAnchorCpu}`)
const rows: Array<BenchRow> = [
  {
    path: `samples into the store (${BODIES} bodies × ${SAMPLES.toLocaleString("en-US")} heart-rate samples, ${CONCURRENCY} at a time)`,
    wearflow: rate(samplesStore, "samples/s"),
    anchor: `multi-row upsert, bare table: ${rate(samplesAnchor, "/s")}; COPY: ${rate(samplesCopyRate, "/s")}`,
    ratio: samplesStore / samplesAnchor,
    target: "≥ 50,000/s",
    met: samplesStore >= 50_000
  },
  {
    path: `summaries into the store (${SUMMARY_BODIES} bodies × ${SUMMARIES} dailies and sleeps, ${CONCURRENCY} at a time)`,
    wearflow: rate(summariesStore, "records/s"),
    anchor: `multi-row upsert, bare table: ${rate(summariesAnchor, "/s")}`,
    ratio: summariesStore / summariesAnchor,
    target: "≥ 10,000/s",
    met: summariesStore >= 10_000
  }
]
report(rows)

await client.end()
await Promise.all(clients.map((c) => c.end()))
await runtime.dispose()
if (EXPLAIN) {
  await Bun.write("/tmp/wearflow-store-plans.log", Bun.file(`${postgres.dir}/pg/server.log`))
  console.log("plans: /tmp/wearflow-store-plans.log")
}
await postgres.stop()
