/**
 * Benchmark of ingestion end to end: Garmin PUSH bodies of one daily each, from the POST to
 * the records stored and their events in the outbox, through the real server with its
 * workers, against the bare ack path (Bun + one INSERT) at saturation in the same run.
 *
 * 1. End to end, closed loop: INGEST_BENCH_BODIES bodies posted by 32 clients; the rate is
 *    bodies / (first POST → last record event in the outbox). The sustainable rate.
 * 2. Open loop at each of INGEST_BENCH_RATES for BENCH_SECONDS (bench/open-loop.ts): the
 *    backlog when the offering stops, and how long it takes to drain. Bounded when the
 *    worker is less than a second behind.
 * 3. Drain of a pre-filled inbox: bodies taken by a receive-only server
 *    (WEARFLOW_INGEST_CONCURRENCY=0), then a server with workers drains them.
 *
 * The anchor is measured at the start and again at the end; the ratios use the mean.
 *
 *   bun bench/ingest.ts   (env: INGEST_BENCH_BODIES=2000 INGEST_BENCH_RATES=200,1000 BENCH_SECONDS=5
 *                          INGEST_BENCH_USERS=50; WEARFLOW_INGEST_CONCURRENCY etc. reach the server;
 *                          BENCH_SERVER_FLAGS="--cpu-prof-md --cpu-prof-dir=/tmp/x" profiles it;
 *                          INGEST_BENCH_PG_STATS=1 loads pg_stat_statements and prints the statements
 *                          per body of the drain, the most frequent first)
 */
import * as path from "node:path"
import {
  connect,
  dailyBody,
  drained,
  drainRate,
  linkGarminUsers,
  postAll,
  progress,
  pushHeaders,
  RECORDS_PER_DAILY,
  saturate,
  startBareReceiver,
  startWearflow
} from "./garmin-load.ts"
import { openLoop } from "./open-loop.ts"
import { startBenchPostgres } from "./postgres.ts"
import { type BenchRow, memoryRow, ms, processCpuMs, rate, report, sampleRss } from "./report.ts"

const bodies = Number(process.env.INGEST_BENCH_BODIES ?? 2000)
const users = Number(process.env.INGEST_BENCH_USERS ?? 50)
const seconds = Number(process.env.BENCH_SECONDS ?? 5)
const rates = (process.env.INGEST_BENCH_RATES ?? "200,1000").split(",").map(Number).filter((r) => r > 0)
const body = (i: number) => dailyBody(i, users)

const pgStats = process.env.INGEST_BENCH_PG_STATS === "1"

const postgres = await startBenchPostgres("wearflow-bench-ingest-", pgStats ? { shared_preload_libraries: "pg_stat_statements" } : {})
const admin = await connect(postgres.url)
await admin.query("create database bench_wearflow")
await admin.end()
const databaseUrl = postgres.url.replace(/\/bench$/, "/bench_wearflow")
const dataDir = path.join(postgres.dir, "data")
const rows: Array<BenchRow> = []

// The anchor is measured before and after the rest (other load on the machine comes and goes); rows use the mean.
const bare = await startBareReceiver(postgres.url)
await saturate([bare.url], 1, body) // warm-up
const anchorBefore = await saturate([bare.url], seconds, body)
console.log(`bare ack path (Bun + one INSERT), 32 clients: ${anchorBefore.toFixed(0)} req/s`)
/** Rates judged against the anchor once it is measured again at the end. */
const rated: Array<{ readonly path: string; readonly perSecond: number; readonly target: string }> = []

let server = await startWearflow({ databaseUrl, dataDir })
let memory = sampleRss(server.process.pid!)
let peakMb = 0
await linkGarminUsers(server.baseUrl, users)
const db = await connect(databaseUrl)
let posted = 0

// 1. End to end at saturation.
{
  const started = performance.now()
  const ack = await postAll([server.pushUrl], posted, bodies, body)
  posted += bodies
  const done = await drained(db, posted * RECORDS_PER_DAILY)
  const perSecond = bodies / ((done - started) / 1000)
  console.log(`end to end: ${bodies} bodies in ${((done - started) / 1000).toFixed(2)} s = ${perSecond.toFixed(0)}/s (acks at ${ack.toFixed(0)}/s)`)
  rated.push({ path: `ingest end to end, one daily each (${bodies} bodies, 32 clients)`, perSecond, target: "≥ 0.5× (≥ 1,000/s)" })
}

// 2. A fixed rate: does the backlog stay bounded?
for (const offered of rates) {
  const from = posted
  let sent = 0
  const figures = await openLoop({
    rate: offered,
    seconds,
    send: () =>
      fetch(server.pushUrl, { method: "POST", headers: pushHeaders, body: body(from + sent++) }).then(async (r) => (await r.arrayBuffer(), r.status === 200))
  })
  posted += figures.scheduled
  const stoppedAt = performance.now()
  const { waiting } = await progress(db)
  const done = await drained(db, posted * RECORDS_PER_DAILY, 120_000).catch(() => undefined)
  const lag = waiting / offered
  const tail = done === undefined ? undefined : (done - stoppedAt) / 1000
  console.log(
    `at ${offered}/s for ${seconds} s: ack p50 ${figures.p50.toFixed(2)} ms p99 ${figures.p99.toFixed(1)} ms; ${waiting} bodies waiting when the offering stopped (${lag.toFixed(2)} s behind); ` +
      (tail === undefined ? "not drained within 120 s" : `drained ${tail.toFixed(2)} s later`)
  )
  rows.push({
    path: `ingest at a fixed ${offered}/s, open loop (${seconds} s)`,
    wearflow: `${waiting} waiting at the end (${lag.toFixed(2)} s behind); ${tail === undefined ? "not drained in 120 s" : `drained in ${tail.toFixed(1)} s`}; ack p50 ${ms(figures.p50)}`,
    anchor: `offered ${rate(offered, "/s")}`,
    // The share of the offered rate stored end to end.
    ratio: tail === undefined ? 0 : seconds / (seconds + tail),
    target: "backlog bounded (< 1 s behind)",
    met: tail !== undefined && lag < 1
  })
}
peakMb = Math.max(peakMb, memory.stop())
await server.stop()

// 3. Drain of a pre-filled inbox.
{
  const receiver = await startWearflow({ databaseUrl, dataDir, env: { WEARFLOW_INGEST_CONCURRENCY: "0" } })
  const before = (await progress(db)).events
  await postAll([receiver.pushUrl], posted, bodies, body)
  posted += bodies
  if (pgStats) {
    await db.query("create extension if not exists pg_stat_statements")
    await db.query("select pg_stat_statements_reset()")
  }
  server = await startWearflow({ databaseUrl, dataDir })
  memory = sampleRss(server.process.pid!)
  // CPU per body, the server's and Postgres': a measure other load on the machine barely moves.
  const cpuBefore = { server: processCpuMs(server.process.pid!), postgres: await postgres.cpuMs() }
  const perSecond = await drainRate(db, bodies)
  await drained(db, before + bodies * RECORDS_PER_DAILY)
  const cpu = { server: (processCpuMs(server.process.pid!) - cpuBefore.server) / bodies, postgres: ((await postgres.cpuMs()) - cpuBefore.postgres) / bodies }
  peakMb = Math.max(peakMb, memory.stop())
  console.log(`drain of a pre-filled inbox (${bodies} bodies): ${perSecond.toFixed(0)}/s; CPU per body: server ${cpu.server.toFixed(2)} ms, Postgres ${cpu.postgres.toFixed(2)} ms`)
  if (pgStats) printStatements(await statementsPerBody(bodies))
  rated.push({ path: `ingest drain, pre-filled inbox (${bodies} bodies)`, perSecond, target: "≥ 0.5×" })
  await server.stop()
  await receiver.stop()
}

/**
 * Statements Postgres executed during the drain, per body: every one the server sent (start-up,
 * sink runners and the worker alike), this bench's own progress polls left out.
 */
async function statementsPerBody(count: number) {
  const { rows } = await db.query<{ query: string; calls: string; ms: number }>(
    `select query, calls::text, total_exec_time as ms from pg_stat_statements
     where dbid = (select oid from pg_database where datname = current_database())
       and query not like '%pg_stat_statements%' and query not like '%processed_at is null) as waiting%'`
  )
  return rows.map((r) => ({ perBody: Number(r.calls) / count, msPerBody: r.ms / count, query: r.query.replace(/\s+/g, " ").slice(0, 100) }))
}

type Statement = { readonly perBody: number; readonly msPerBody: number; readonly query: string }

function printStatements(statements: ReadonlyArray<Statement>) {
  const total = statements.reduce((sum, s) => sum + s.perBody, 0)
  const time = statements.reduce((sum, s) => sum + s.msPerBody, 0)
  console.log(`statements per body during the drain: ${total.toFixed(2)}, executing ${time.toFixed(3)} ms (all the server's, sink runners included)`)
  console.log("  the most frequent:")
  for (const s of [...statements].sort((a, b) => b.perBody - a.perBody).slice(0, 12)) console.log(`  ${s.perBody.toFixed(3)}  ${s.msPerBody.toFixed(3)} ms  ${s.query}`)
  console.log("  the most time:")
  for (const s of [...statements].sort((a, b) => b.msPerBody - a.msPerBody).slice(0, 12)) console.log(`  ${s.perBody.toFixed(3)}  ${s.msPerBody.toFixed(3)} ms  ${s.query}`)
}

const anchorAfter = await saturate([bare.url], seconds, body)
await bare.stop()
console.log(`bare ack path again at the end: ${anchorAfter.toFixed(0)} req/s`)
const anchor = (anchorBefore + anchorAfter) / 2
const anchorText = `bare ack: ${rate(anchor, "req/s")} (mean of ${rate(anchorBefore, "req/s")} before, ${rate(anchorAfter, "req/s")} after)`
rows.unshift(...rated.map((r): BenchRow => ({
  path: r.path,
  wearflow: rate(r.perSecond, "notifications/s"),
  anchor: anchorText,
  ratio: r.perSecond / anchor,
  target: r.target,
  met: r.perSecond / anchor >= 0.5
})))
rows.push(memoryRow("ingest", peakMb, memory.processes))
report(rows)
await db.end()
await postgres.stop()
