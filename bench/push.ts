/**
 * Benchmark of the provider-facing fast path: Garmin PUSH bodies posted to the real server,
 * against a baseline measured in the same run on the same Postgres — a bare Bun handler doing
 * only the irreducible work (check the header, parse JSON, one INSERT, answer).
 *
 * Then, with BENCH_RATES set (e.g. `250,1000`), each rate open loop (bench/open-loop.ts):
 * requests at a fixed rate, latency from each one's scheduled send time, both receivers.
 *
 *   npm run bench            (env: BENCH_SECONDS=5 BENCH_CONCURRENCY=32 BENCH_RATES=250,1000;
 *                             BENCH_SERVER_FLAGS="--cpu-prof-md --cpu-prof-dir=/tmp" profiles the server)
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import pg from "pg"
import { openLoop } from "./open-loop.ts"
import { startBenchPostgres } from "./postgres.ts"

const seconds = Number(process.env.BENCH_SECONDS ?? 5)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32)
const rates = (process.env.BENCH_RATES ?? "").split(",").map(Number).filter((rate) => rate > 0)
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

const measure = async (name: string, url: string, headers: Record<string, string>) => {
  await load(url, headers, 1000) // warm-up
  const figures = await load(url, headers, seconds * 1000)
  console.log(
    `${name.padEnd(10)} ${figures.perSecond.toFixed(0).padStart(7)} req/s   p50 ${figures.p50.toFixed(2)} ms   p99 ${figures.p99.toFixed(2)} ms   non-200: ${figures.failures}`
  )
  return figures
}

const { dir, url, stop: stopPostgres } = await startBenchPostgres("wearflow-bench-")
const admin = new pg.Client({ connectionString: url })
admin.on("error", () => {})
await admin.connect()
await admin.query("create table baseline_inbox (id bigint generated always as identity primary key, body text not null, received_at timestamptz not null default now())")
await admin.query("create database bench_wearflow")

// Baseline: the minimum a durable webhook receiver must do.
const pool = new pg.Pool({ connectionString: url, max: 20 })
// Postgres stops at the end of the run; idle connections it terminates are expected then.
pool.on("error", () => {})
const baseline = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(request) {
    if (request.headers.get("garmin-client-id") !== "bench") return new Response(null, { status: 401 })
    const text = await request.text()
    JSON.parse(text)
    const result = await pool.query("insert into baseline_inbox (body) values ($1) returning id", [text])
    return Response.json({ inbox_id: Number(result.rows[0].id) })
  }
})

const port = 20_000 + Math.floor(Math.random() * 20_000)
const serverFlags = (process.env.BENCH_SERVER_FLAGS ?? "").split(" ").filter(Boolean)
const server = spawn(process.execPath, [...serverFlags, "apps/server/main.ts"], {
  cwd: new URL("..", import.meta.url).pathname,
  env: {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: url.replace(/\/bench$/, "/bench_wearflow"),
    GARMIN_CLIENT_ID: "bench",
    WEARFLOW_API_KEY: "bench",
    WEARFLOW_DATA_DIR: path.join(dir, "data"),
    LOG_LEVEL: "Warn"
  },
  stdio: ["ignore", "inherit", "inherit"]
})
for (;;) {
  const ok = await fetch(`http://127.0.0.1:${port}/api/v1/webhooks/garmin/health`).then((r) => r.ok, () => false)
  if (ok) break
  await Bun.sleep(100)
}

console.log(`Garmin PUSH (dailies.json, ${body.length} bytes), ${concurrency} concurrent clients, ${seconds} s each, Bun ${Bun.version}`)
const headers = { "garmin-client-id": "bench", "content-type": "application/json" }
const base = await measure("baseline", `http://127.0.0.1:${baseline.port}/`, headers)
const wearflow = await measure("wearflow", `http://127.0.0.1:${port}/api/v1/webhooks/garmin/push`, headers)
console.log(
  `ratio wearflow/baseline: throughput ${(wearflow.perSecond / base.perSecond).toFixed(2)}×, p50 ${(wearflow.p50 / base.p50).toFixed(2)}×, p99 ${(wearflow.p99 / base.p99).toFixed(2)}×`
)

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
  const bare = await paced("baseline", `http://127.0.0.1:${baseline.port}/`)
  const ours = await paced("wearflow", `http://127.0.0.1:${port}/api/v1/webhooks/garmin/push`)
  console.log(`ratio wearflow/baseline at ${rate}/s: p50 ${(ours.p50 / bare.p50).toFixed(2)}×, p99 ${(ours.p99 / bare.p99).toFixed(2)}×`)
}

server.kill("SIGTERM")
await new Promise((resolve) => server.once("exit", resolve))
baseline.stop(true)
await pool.end()
await admin.end()
await stopPostgres()
