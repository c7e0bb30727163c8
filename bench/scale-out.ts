/**
 * Scale-out: two server processes on one database against one, measured in the same run.
 *
 * 1. PUSH ack at saturation (32 clients, BENCH_SECONDS): one receiver (WEARFLOW_ROLE=receiver),
 *    then two, the clients spread over both.
 * 2. Ingest drain: SCALE_BENCH_BODIES one-daily bodies taken into the inbox, then drained by
 *    one process doing all the work itself (WEARFLOW_WORKER_PROCESSES=0), then (another as
 *    many) by two.
 * On a machine of few cores the second process mostly adds contention (for the cores, and for
 * Postgres, which runs on them too): the ratio says how much of its work it adds, not what
 * two machines would do.
 *
 *   bun bench/scale-out.ts   (env: BENCH_SECONDS=5 SCALE_BENCH_BODIES=1000 INGEST_BENCH_USERS=50)
 */
import * as path from "node:path"
import { connect, dailyBody, drained, drainRate, linkGarminUsers, postAll, progress, RECORDS_PER_DAILY, saturate, startWearflow, type WearflowServer } from "./garmin-load.ts"
import { startBenchPostgres } from "./postgres.ts"
import { type BenchRow, memoryRow, rate, report, sampleRss } from "./report.ts"

const seconds = Number(process.env.BENCH_SECONDS ?? 5)
const bodies = Number(process.env.SCALE_BENCH_BODIES ?? 1000)
const users = Number(process.env.INGEST_BENCH_USERS ?? 50)
const body = (i: number) => dailyBody(i, users)

const postgres = await startBenchPostgres("wearflow-bench-scale-")
const admin = await connect(postgres.url)
await admin.query("create database bench_wearflow")
await admin.end()
const databaseUrl = postgres.url.replace(/\/bench$/, "/bench_wearflow")
const dataDir = path.join(postgres.dir, "data")
const db = await connect(databaseUrl)
let peakMb = 0
let posted = 0

/** Starts `count` processes (one after the other: the first creates the schema), with their RSS sampled. */
const startProcesses = async (count: number, env: Record<string, string>) => {
  const servers: Array<WearflowServer> = []
  const samplers: Array<ReturnType<typeof sampleRss>> = []
  for (let i = 0; i < count; i++) {
    const server = await startWearflow({ databaseUrl, dataDir, env })
    servers.push(server)
    samplers.push(sampleRss(server.process.pid!))
  }
  return {
    servers,
    stop: async () => {
      for (const sampler of samplers) peakMb = Math.max(peakMb, sampler.stop())
      await Promise.all(servers.map((s) => s.stop()))
    }
  }
}

/** Processes that only receive; and processes that do all the work themselves (no worker process of their own). */
const receiveOnly = { WEARFLOW_ROLE: "receiver" }
const allInOne = { WEARFLOW_WORKER_PROCESSES: "0" }

// 1. PUSH ack at saturation.
const pushFigures: Array<number> = []
for (const count of [1, 2]) {
  const group = await startProcesses(count, receiveOnly)
  if (count === 1) await linkGarminUsers(group.servers[0]!.baseUrl, users)
  const urls = group.servers.map((s) => s.pushUrl)
  await saturate(urls, 1, (i) => body(posted + i)) // warm-up
  const perSecond = await saturate(urls, seconds, (i) => body(posted + 1_000_000 + i))
  console.log(`PUSH ack, ${count} process${count === 1 ? "" : "es"}: ${perSecond.toFixed(0)} req/s`)
  pushFigures.push(perSecond)
  await group.stop()
}
// Those bodies are not part of the drains below: mark them done.
await db.query("update inbox set processed_at = now() where processed_at is null")
await db.query("update ingest_queue set completed = true where not completed")
const eventsBefore = (await progress(db)).events

// 2. Ingest drain of a pre-filled inbox.
const drainFigures: Array<number> = []
for (const count of [1, 2]) {
  const receiver = await startProcesses(1, receiveOnly)
  await postAll([receiver.servers[0]!.pushUrl], posted, bodies, body)
  posted += bodies
  await receiver.stop()
  const group = await startProcesses(count, allInOne)
  const perSecond = await drainRate(db, bodies)
  await drained(db, eventsBefore + posted * RECORDS_PER_DAILY)
  console.log(`ingest drain, ${count} process${count === 1 ? "" : "es"}: ${perSecond.toFixed(0)} notifications/s`)
  drainFigures.push(perSecond)
  await group.stop()
}

const rows: Array<BenchRow> = [
  {
    path: "PUSH ack, saturation (32 clients): 2 processes vs 1",
    wearflow: `2 processes: ${rate(pushFigures[1]!, "req/s")}`,
    anchor: `1 process: ${rate(pushFigures[0]!, "req/s")}`,
    ratio: pushFigures[1]! / pushFigures[0]!,
    target: "reported (2 cores: contention)"
  },
  {
    path: `ingest drain, pre-filled inbox (${bodies} bodies): 2 processes vs 1`,
    wearflow: `2 processes: ${rate(drainFigures[1]!, "notifications/s")}`,
    anchor: `1 process: ${rate(drainFigures[0]!, "notifications/s")}`,
    ratio: drainFigures[1]! / drainFigures[0]!,
    target: "reported (2 cores: contention)"
  },
  memoryRow("scale-out (per process)", peakMb)
]
report(rows)
await db.end()
await postgres.stop()
