/**
 * Benchmark of the provider-facing fast path: Garmin PUSH bodies posted to the real server,
 * against a baseline measured in the same run on the same Postgres — a bare Bun handler doing
 * only the irreducible work (check the header, parse JSON, one INSERT, answer).
 *
 * The server runs as it ships: ingest workers on, INFO logs (written to a pipe this drains).
 * First saturation (closed loop, BENCH_CONCURRENCY clients), then each of BENCH_RATES open
 * loop (bench/open-loop.ts): requests at a fixed rate, latency from each one's scheduled send
 * time, both receivers. Also the server's CPU time per request at saturation (a figure the
 * noise of a shared machine moves less than the rate) and its peak RSS.
 *
 *   npm run bench            (env: BENCH_SECONDS=3 BENCH_CONCURRENCY=32 BENCH_RATES=1000;
 *                             BENCH_SERVER_FLAGS="--cpu-prof-md --cpu-prof-dir=/tmp" profiles the server;
 *                             WEARFLOW_* variables reach the server, e.g. WEARFLOW_INGEST_CONCURRENCY=0;
 *                             BENCH_REPEAT=3 saturates the server 3 times, reporting the last; BENCH_LOG_LEVEL)
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import pg from "pg"
import { startBareReceiver } from "./bare-receiver.ts"
import { openLoop, type OpenLoopFigures } from "./open-loop.ts"
import { startBenchPostgres } from "./postgres.ts"
import { benchServerFlags } from "./server.ts"
import { type BenchRow, memoryRow, ms, rate as perSecond, report, sampleRss } from "./report.ts"

const seconds = Number(process.env.BENCH_SECONDS ?? 3)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32)
const rates = (process.env.BENCH_RATES ?? "1000").split(",").map(Number).filter((rate) => rate > 0)
const body = await fs.readFile(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")

interface Figures {
  readonly requests: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly failures: number
}

/** Posts `body` with `concurrency` clients for `duration` ms; latencies in ms. */
const load = async (url: string, headers: Record<string, string>, duration: number): Promise<Figures> => {
  const latencies: Array<number> = []
  let failures = 0
  const end = performance.now() + duration
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const start = performance.now()
        const response = await fetch(url, { method: "POST", headers, body })
        await response.arrayBuffer()
        if (response.status !== 200) failures++
        latencies.push(performance.now() - start)
      }
    })
  )
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!
  return { requests: latencies.length, perSecond: latencies.length / (duration / 1000), p50: at(0.5), p99: at(0.99), failures }
}

/** User plus system CPU time a process has used, in ms (Linux /proc; undefined elsewhere). */
const cpuMsOf = (pid: number): number | undefined => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 // clock ticks of 10 ms
  } catch {
    return undefined
  }
}

/** Transactions committed in `database` so far (each statement outside a transaction is one). */
const commitsIn = async (database: string) =>
  Number((await admin.query("select xact_commit from pg_stat_database where datname = $1", [database])).rows[0].xact_commit)

/** The server's CPU time per second while idle (its background loops), measured over `ms`. */
const idleCpuOf = async (pid: number, ms: number) => {
  const before = cpuMsOf(pid)
  await Bun.sleep(ms)
  const after = cpuMsOf(pid)
  return before === undefined || after === undefined ? undefined : ((after - before) * 1000) / ms
}

const measure = async (name: string, url: string, headers: Record<string, string>, database: string, pid?: number) => {
  await load(url, headers, 1000) // warm-up
  const idle = pid === undefined ? undefined : await idleCpuOf(pid, 2000)
  const cpuBefore = pid === undefined ? undefined : cpuMsOf(pid)
  const commitsBefore = await commitsIn(database)
  const figures = await load(url, headers, seconds * 1000)
  // The statistics collector reports a backend's counts when it goes idle, at most a second late.
  await Bun.sleep(1100)
  const commits = (await commitsIn(database)) - commitsBefore
  const cpuAfter = pid === undefined ? undefined : cpuMsOf(pid)
  const cpu = `   commits ${(commits / figures.requests).toFixed(2)}/request` +
    (cpuBefore !== undefined && cpuAfter !== undefined && idle !== undefined
      ? `   server CPU ${((cpuAfter - cpuBefore - (idle * (seconds + 1.1))) / figures.requests).toFixed(2)} ms/request (idle: ${idle.toFixed(0)} ms/s)`
      : "")
  console.log(
    `${name.padEnd(10)} ${figures.perSecond.toFixed(0).padStart(7)} req/s   p50 ${figures.p50.toFixed(2)} ms   p99 ${figures.p99.toFixed(2)} ms   non-200: ${figures.failures}${cpu}`
  )
  return figures
}

const { dir, url, stop: stopPostgres } = await startBenchPostgres("wearflow-bench-")
const admin = new pg.Client({ connectionString: url })
admin.on("error", () => {})
await admin.connect()
await admin.query("create database bench_wearflow")

const baseline = await startBareReceiver(url, "bench")

const port = 20_000 + Math.floor(Math.random() * 20_000)
const server = spawn(process.execPath, [...benchServerFlags, "apps/server/main.ts"], {
  cwd: new URL("..", import.meta.url).pathname,
  env: {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: url.replace(/\/bench$/, "/bench_wearflow"),
    GARMIN_CLIENT_ID: "bench",
    WEARFLOW_API_KEY: "bench",
    WEARFLOW_DATA_DIR: path.join(dir, "data"),
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "Info"
  },
  // Its INFO lines go to a pipe, as under a supervisor; warnings and errors are shown.
  stdio: ["ignore", "pipe", "inherit"]
})
let logLines = 0
let logTail = ""
server.stdout!.on("data", (chunk: Buffer) => {
  const text = logTail + chunk.toString("utf8")
  const lines = text.split("\n")
  logTail = lines.pop()!
  for (const line of lines) {
    logLines++
    if (!line.includes('"INFO"') && !line.includes('"DEBUG"')) console.log(line)
  }
})
for (;;) {
  const ok = await fetch(`http://127.0.0.1:${port}/api/v1/webhooks/garmin/health`).then((r) => r.ok, () => false)
  if (ok) break
  await Bun.sleep(100)
}

const rss = sampleRss(server.pid!)
console.log(`Garmin PUSH (dailies.json, ${body.length} bytes), ${concurrency} concurrent clients, ${seconds} s each, Bun ${Bun.version}`)
const headers = { "garmin-client-id": "bench", "content-type": "application/json" }
const base = await measure("baseline", baseline.url, headers, "bench")
for (let r = 1; r < Number(process.env.BENCH_REPEAT ?? 1); r++) await measure("wearflow", `http://127.0.0.1:${port}/api/v1/webhooks/garmin/push`, headers, "bench_wearflow", server.pid)
const wearflow = await measure("wearflow", `http://127.0.0.1:${port}/api/v1/webhooks/garmin/push`, headers, "bench_wearflow", server.pid)
const saturation = wearflow.perSecond / base.perSecond
console.log(`ratio wearflow/baseline: throughput ${saturation.toFixed(2)}×, p50 ${(wearflow.p50 / base.p50).toFixed(2)}×, p99 ${(wearflow.p99 / base.p99).toFixed(2)}×`)
const rows: Array<BenchRow> = [{
  path: `PUSH ack, saturation (${concurrency} clients)`,
  wearflow: perSecond(wearflow.perSecond, "req/s"),
  anchor: `bare Bun + INSERT: ${perSecond(base.perSecond, "req/s")}`,
  ratio: saturation,
  target: "≥ 0.7×",
  met: saturation >= 0.7 && wearflow.failures === 0
}]

for (const rate of rates) {
  const paced = async (name: string, target: string) => {
    const figures = await openLoop({
      rate,
      seconds,
      send: () => fetch(target, { method: "POST", headers, body }).then(async (response) => (await response.arrayBuffer(), response.status === 200))
    })
    console.log(
      `${name.padEnd(10)} at ${rate}/s open loop: ${figures.achieved.toFixed(0).padStart(5)} answered/s   p50 ${figures.p50.toFixed(2)} ms   p90 ${figures.p90.toFixed(2)} ms   p99 ${figures.p99.toFixed(2)} ms   max ${figures.max.toFixed(0)} ms   non-200: ${figures.failures}`
    )
    return figures
  }
  const bare = await paced("baseline", baseline.url)
  const ours = await paced("wearflow", `http://127.0.0.1:${port}/api/v1/webhooks/garmin/push`)
  console.log(`ratio wearflow/baseline at ${rate}/s: p50 ${(ours.p50 / bare.p50).toFixed(2)}×, p99 ${(ours.p99 / bare.p99).toFixed(2)}×`)
  const row = (quantile: "p50" | "p99", bound: number): BenchRow => {
    const ratio = ours[quantile] / bare[quantile]
    const answered = (figures: OpenLoopFigures) => (figures.failures > 0 ? ` (${figures.failures} not 200)` : "")
    return {
      path: `PUSH ack at ${rate.toLocaleString("en-US")}/s, workers on, ${quantile}`,
      wearflow: ms(ours[quantile]) + answered(ours),
      anchor: `bare: ${ms(bare[quantile])}${answered(bare)}`,
      ratio,
      target: `≤ ${bound}×`,
      met: ratio <= bound && ours.failures === 0
    }
  }
  rows.push(row("p50", 3), row("p99", 1.5))
}

rows.push(memoryRow("push", rss.stop(), rss.processes))
report(rows)
console.log(`(the server wrote ${logLines} log lines)`)

server.kill("SIGTERM")
await new Promise((resolve) => server.once("exit", resolve))
await baseline.stop()
await admin.end()
await stopPostgres()
