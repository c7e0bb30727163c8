/**
 * Benchmark of the Postgres sink (sinks/postgres): events already in the outbox, shaped as
 * core/pipeline/store.ts appends them → the real SinkRunner → the real sink's typed tables on
 * the app's own database, until the cursor reaches the last event. A record is one sample or
 * one summary (one row). The issue's targets: ≥ 50,000 records/s on sample-heavy events
 * (1,000 heart-rate samples each), ≥ 10,000/s on summary events.
 *
 * The anchor, in the same run on the same Postgres: the very rows the sink wrote, read back
 * into memory (not timed), upserted with plain `insert … select from unnest($1::type[], …) on
 * conflict … do update` statements of 1,000 rows through a bare `pg` client into a table made
 * `like` the sink's (same columns, keys and indexes), one transaction per 50,000 rows. Rounds
 * alternate the two; the table shows the medians. Figures only, never assertions.
 *
 * Then the runner's latency: single events appended at a steady pace through appendEvent (which
 * wakes this process's runners), from each commit to its delivery to a sink that only records,
 * beside the same events appended by another connection (no wake: the runner's idle poll, as
 * in another process).
 *
 *   bun bench/postgres-sink.ts
 *     env: PG_SINK_BENCH_EVENTS=150        heart-rate events (sample-heavy scenario)
 *          PG_SINK_BENCH_SAMPLES=1000      samples per heart-rate event
 *          PG_SINK_BENCH_SUMMARIES=20000   activity events (summary scenario)
 *          PG_SINK_BENCH_ROUNDS=3          rounds per scenario (the median is reported)
 *          PG_SINK_BENCH_PACED=200         events per latency run, appended every 5 ms (200/s)
 *          PG_SINK_BENCH_SEND=1            the sink as it writes to another database (SINK_POSTGRES_URL): the
 *                                          runner reads the payloads and the sink sends them along
 *          PG_SINK_BENCH_STATEMENTS=1      restarts Postgres with pg_stat_statements and prints the
 *                                          statements of the sink's runs by total time
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, Fiber, Layer, Logger, LogLevel, ManagedRuntime, Option, Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { appendEvent } from "../core/outbox.ts"
import * as SinkRunner from "../core/pipeline/sink-runner.ts"
import type { EventEnvelope } from "../core/schema.ts"
import type { Sink } from "../core/sink.ts"
import * as Database from "../core/storage/database.ts"
import * as EmbeddedPostgres from "../core/storage/embedded-postgres.ts"
import { BENCH_TEAM, benchEvents } from "./outbox-events.ts"
import { cpuMs, postgresCpuMs } from "./postgres.ts"
import * as PostgresSink from "../sinks/postgres/mod.ts"
import { quote, type Table, tables } from "../sinks/postgres/tables.ts"
import { ms, rate, report } from "./report.ts"

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? Math.floor(value) : fallback
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const TEAM = BENCH_TEAM
const USERS = 100
const SCHEMA = "wearflow_data"
const { heartrateSql, activitySql } = benchEvents(USERS)

interface Scenario {
  readonly name: string
  readonly table: Table
  readonly events: number
  readonly fill: (db: pg.Pool) => Promise<void>
  readonly target: number
}

const runBench = async (cleanups: Array<() => Promise<unknown>>) => {
  const heartrateEvents = env("PG_SINK_BENCH_EVENTS", 150)
  const samples = env("PG_SINK_BENCH_SAMPLES", 1000)
  const summaries = env("PG_SINK_BENCH_SUMMARIES", 20_000)
  const rounds = env("PG_SINK_BENCH_ROUNDS", 3)
  const statements = process.env.PG_SINK_BENCH_STATEMENTS === "1"
  const send = process.env.PG_SINK_BENCH_SEND === "1"

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-bench-pg-sink-"))
  await fs.chmod(dir, 0o755)
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }))
  const pgDir = path.join(dir, "pg")
  const database = await Effect.runPromise(EmbeddedPostgres.start({ pgDir, database: "bench" }))
  cleanups.push(() => Effect.runPromise(database.stop))
  if (statements) {
    await fs.appendFile(path.join(pgDir, "postgresql.conf"), "\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
    await Effect.runPromise(database.stop)
    await Effect.runPromise(database.start)
  }
  const db = new pg.Pool({ connectionString: Redacted.value(database.url), max: 2 })
  db.on("error", () => {})
  cleanups.push(() => db.end())
  if (statements) await db.query("create extension if not exists pg_stat_statements")

  const quiet = Logger.minimumLogLevel(LogLevel.Warning)
  const storage = ManagedRuntime.make(Database.layer({ url: Option.some(database.url), dataDir: dir }).pipe(Layer.provide(quiet)))
  cleanups.push(() => storage.dispose())
  // The sink's tables, made once as the server makes them at start.
  const sink = await storage.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql): Effect.Effect<Sink, SqlError.SqlError> => (send ? PostgresSink.makeSending(sql, SCHEMA) : PostgresSink.make(sql, SCHEMA))))

  const tableOf = (name: string) => tables.find((t) => t.name === name)!
  const scenarios: ReadonlyArray<Scenario> = [
    {
      name: `heart-rate events of ${fmt(samples)} samples`,
      table: tableOf("heartrate"),
      events: heartrateEvents,
      target: 50_000,
      fill: async (db) => {
        for (let from = 0; from < heartrateEvents; from += 50) {
          await db.query(heartrateSql, [TEAM, from, Math.min(heartrateEvents, from + 50) - 1, samples])
        }
      }
    },
    {
      name: "activity summary events",
      table: tableOf("activity"),
      events: summaries,
      target: 10_000,
      fill: async (db) => {
        for (let from = 0; from < summaries; from += 10_000) await db.query(activitySql, [TEAM, from, Math.min(summaries, from + 10_000) - 1])
      }
    }
  ]

  console.log(
    `Postgres sink, outbox → typed tables: ${fmt(heartrateEvents)} heart-rate events × ${fmt(samples)} samples; ${fmt(summaries)} activity events; ` +
      `${rounds} rounds each${send ? "; payloads sent along (as to another database)" : ""}; Bun ${Bun.version}, ${os.cpus().length} cores${statements ? "; pg_stat_statements on" : ""}`
  )

  const rows: Array<Parameters<typeof report>[0][number]> = []
  for (const scenario of scenarios) {
    const qualified = `${quote(SCHEMA)}.${quote(scenario.table.name)}`
    const bare = quote(`bare_${scenario.table.name}`)
    await db.query("truncate outbox")
    await scenario.fill(db)
    await db.query("vacuum analyze outbox")
    const last = (await db.query(`select max(position)::text as last from outbox`)).rows[0].last as string
    await db.query(`create table if not exists ${bare} (like ${qualified} including all)`)

    /** Wearflow: the runner feeds the sink from the start of the outbox until its cursor is at `last`. */
    const wearflow = async () => {
      await db.query(`truncate ${qualified}`)
      await db.query(`delete from sink_cursors where sink_id = $1`, [sink.id])
      await db.query("checkpoint")
      if (statements) await db.query("select pg_stat_statements_reset()")
      const [cpu0, pg0] = [cpuMs(), await postgresCpuMs(pgDir)]
      const t0 = performance.now()
      const fiber = storage.runFork(Effect.flatMap(SinkRunner.make(sink), (runner) => runner.run))
      for (;;) {
        const cursor = (await db.query(`select position::text as position from sink_cursors where sink_id = $1`, [sink.id])).rows[0]?.position
        if (cursor === last) break
        await sleep(10)
      }
      const wallMs = performance.now() - t0
      const cpu = { bun: cpuMs() - cpu0, pg: (await postgresCpuMs(pgDir)) - pg0 }
      await storage.runPromise(Fiber.interrupt(fiber))
      const records = Number((await db.query(`select count(*)::int as n from ${qualified}`)).rows[0].n)
      if (statements) {
        const top = (await db.query(
          `select calls, round(total_exec_time)::int as ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as query
           from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time desc limit 6`
        )).rows as Array<{ calls: string; ms: number; rows: string; query: string }>
        console.log(`  statements by total time (wall ${fmt(wallMs)} ms):`)
        for (const s of top) console.log(`    ${String(s.ms).padStart(6)} ms  ${String(s.calls).padStart(5)} calls ${String(s.rows).padStart(8)} rows  ${s.query}`)
      }
      return { records, wallMs, cpu }
    }

    // The anchor's rows: what the sink wrote, as a bare client sends them.
    await wearflow()
    const columns = scenario.table.columns
    const written = (await db.query(`select ${columns.map((c) => quote(c.name)).join(", ")} from ${qualified}`)).rows as Array<Record<string, unknown>>
    const wire = (value: unknown) => value instanceof Date ? value.toISOString() : value !== null && typeof value === "object" ? JSON.stringify(value) : value
    const byColumn = columns.map((c) => written.map((row) => wire(row[c.name])))
    const keys = scenario.table.primaryKey.map(quote).join(", ")
    const upsert = `
      insert into ${bare} (${columns.map((c) => quote(c.name)).join(", ")})
      select * from unnest(${columns.map((c, i) => `$${i + 1}::${c.type}[]`).join(", ")})
      on conflict (${keys}) do update set ${columns.filter((c) => !scenario.table.primaryKey.includes(c.name)).map((c) => `${quote(c.name)} = excluded.${quote(c.name)}`).join(", ")}`

    const anchor = async () => {
      await db.query(`truncate ${bare}`)
      await db.query("checkpoint")
      const client = await db.connect()
      const [cpu0, pg0] = [cpuMs(), await postgresCpuMs(pgDir)]
      const t0 = performance.now()
      try {
        for (let from = 0; from < written.length; from += 50_000) {
          await client.query("begin")
          for (let at = from; at < Math.min(written.length, from + 50_000); at += 1000) {
            await client.query(upsert, byColumn.map((values) => values.slice(at, Math.min(at + 1000, from + 50_000))))
          }
          await client.query("commit")
        }
      } finally {
        client.release()
      }
      return { records: written.length, wallMs: performance.now() - t0, cpu: { bun: cpuMs() - cpu0, pg: (await postgresCpuMs(pgDir)) - pg0 } }
    }

    type Run = Awaited<ReturnType<typeof anchor>>
    const runs: { wearflow: Array<Run>; anchor: Array<Run> } = { wearflow: [], anchor: [] }
    const perSecond = (r: Run) => r.records / (r.wallMs / 1000)
    const line = (name: string, r: Run, round: number) =>
      console.log(
        `  ${`${name} (${round}/${rounds})`.padEnd(22)} ${fmt(perSecond(r)).padStart(9)} records/s  ${fmt(r.records)} records in ${fmt(r.wallMs)} ms  ` +
          `CPU Bun ${fmt(r.cpu.bun)} ms, Postgres ${fmt(r.cpu.pg)} ms (${fmt(r.records / ((r.cpu.bun + r.cpu.pg) / 1000))} records per CPU second)`
      )
    console.log(`\n${scenario.name}: ${fmt(scenario.events)} events, ${fmt(written.length)} rows`)
    for (let round = 1; round <= rounds; round++) {
      const w = await wearflow()
      runs.wearflow.push(w)
      line("Wearflow", w, round)
      const a = await anchor()
      runs.anchor.push(a)
      line("anchor (unnest)", a, round)
    }
    const median = (list: ReadonlyArray<Run>) => list.map(perSecond).sort((a, b) => a - b)[Math.floor((list.length - 1) / 2)]!
    const [w, a] = [median(runs.wearflow), median(runs.anchor)]
    rows.push({
      path: `Postgres sink${send ? " (payloads sent along)" : ""}, ${scenario.name}`,
      wearflow: rate(w, "records/s"),
      anchor: `unnest upsert, bare pg: ${rate(a, "records/s")}`,
      ratio: w / a,
      target: `≥ ${fmt(scenario.target)} records/s`,
      met: w >= scenario.target
    })
  }

  // ---- latency: a paced event at a time, woken or polled ----------------------------------------
  const paced = env("PG_SINK_BENCH_PACED", 200)
  const latency = async (woken: boolean) => {
    const delivered = new Map<string, number>()
    const sink = {
      id: `latency-${woken ? "woken" : "polled"}`,
      health: Effect.void,
      deliver: (batch: ReadonlyArray<{ readonly eventId: string }>) =>
        Effect.sync(() => {
          for (const event of batch) delivered.set(event.eventId, performance.now())
        })
    }
    const fiber = await storage.runPromise(Effect.gen(function* () {
      const runner = yield* SinkRunner.make(sink)
      yield* runner.once
      return yield* Effect.forkDaemon(runner.run)
    }))
    delivered.clear()
    const committed = new Map<string, number>()
    const t0 = performance.now()
    for (let i = 0; i < paced; i++) {
      const wait = t0 + i * 5 - performance.now()
      if (wait > 0) await sleep(wait)
      const envelope = { event_type: "daily.data.activity.created", data: { i }, user_id: TEAM, client_user_id: "c", team_id: TEAM } as unknown as EventEnvelope
      const id = woken
        ? await storage.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.withTransaction(appendEvent(sql, envelope, null).pipe(Effect.zipRight(sql<{ id: string }>`select event_id::text as id from outbox order by position desc limit 1`)))))
          .then((r) => r[0]!.id)
        : (await db.query(
          `insert into outbox (event_id, event_type, team_id, user_id, payload) values (gen_random_uuid(), $1, $2, $2, $3) returning event_id::text as id`,
          [envelope.event_type, TEAM, JSON.stringify(envelope)]
        )).rows[0].id as string
      committed.set(id, performance.now())
    }
    while (delivered.size < paced) await sleep(5)
    await storage.runPromise(Fiber.interrupt(fiber))
    const latencies = [...committed].map(([id, at]) => delivered.get(id)! - at).sort((a, b) => a - b)
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!
    return { p50: at(0.5), p99: at(0.99) }
  }
  await db.query("truncate outbox")
  const polled = await latency(false)
  const woken = await latency(true)
  console.log(`\noutbox → runner, one event every 5 ms (${paced}), commit to delivery: woken p50 ${ms(woken.p50)}, p99 ${ms(woken.p99)}; ` +
    `polled (another process) p50 ${ms(polled.p50)}, p99 ${ms(polled.p99)}`)
  rows.push({
    path: "outbox → sink runner, paced 200/s, commit to delivery",
    wearflow: `p50 ${ms(woken.p50)}, p99 ${ms(woken.p99)}`,
    anchor: `idle poll (no wake): p50 ${ms(polled.p50)}, p99 ${ms(polled.p99)}`,
    ratio: woken.p50 / polled.p50,
    target: "p50 ≤ 50 ms (PUSH → webhook budget)",
    met: woken.p50 <= 50
  })
  report(rows)
}

const cleanups: Array<() => Promise<unknown>> = []
try {
  await runBench(cleanups)
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => console.error("clean-up failed:", error))
}
