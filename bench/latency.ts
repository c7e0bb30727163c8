/**
 * PUSH → webhook latency through the real server: Garmin PUSH bodies of one daily each posted
 * at a fixed rate (open loop), each daily's `daily.data.activity.created` webhook received by a
 * loopback endpoint; latency from the POST's scheduled send time to the webhook's arrival. The
 * anchor, in the same run: the bare receiver's ack latency at the same rate (bench/bare-receiver.ts),
 * whose p99 shows the machine's commit stalls. Also the server's peak RSS, and the p50 of each
 * stage from the database's clocks (track_commit_timestamp on).
 *
 * The server is first offered the same rate for BENCH_WARMUP_SECONDS on days of its own, and the
 * measured run starts once those have all arrived: the target is the latency of a server in
 * service, not of one whose code is still being compiled and whose first plans are being made.
 * That first run is reported too, as the cold start.
 *
 *   bun bench/latency.ts        (env: BENCH_LATENCY_RATE=200 BENCH_SECONDS=10 BENCH_WARMUP_SECONDS=10 BENCH_USERS=20)
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { API_KEY, garminUserId, linkGarminUsers, pushHeaders, startBareReceiver, startWearflow } from "./garmin-load.ts"
import { openLoop } from "./open-loop.ts"
import { startBenchPostgres } from "./postgres.ts"
import { memoryRow, ms, processCpuMs, rate as perSecond, report, sampleRss } from "./report.ts"

const rate = Number(process.env.BENCH_LATENCY_RATE ?? 200)
const seconds = Number(process.env.BENCH_SECONDS ?? 10)
const users = Number(process.env.BENCH_USERS ?? 20)
const warmupSeconds = Number(process.env.BENCH_WARMUP_SECONDS ?? 10)

const fixture = JSON.parse(await fs.readFile(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")) as {
  dailies: Array<Record<string, unknown>>
}
const DAY = 86_400
const FIRST_DAY = Date.UTC(2000, 0, 1) / 1000
/** The `index`th notification: one daily of its own day, for one of the linked users; the warm-up's come first. */
const bodyOf = (index: number) => {
  const start = FIRST_DAY + index * DAY
  return JSON.stringify({
    dailies: [{
      ...fixture.dailies[0],
      userId: garminUserId(index % users),
      summaryId: `latency-${index}`,
      calendarDate: new Date(start * 1000).toISOString().slice(0, 10),
      startTimeInSeconds: start,
      startTimeOffsetInSeconds: 0
    }]
  })
}
const indexOfDay = (day: string) => Math.round((Date.parse(`${day}T00:00:00Z`) / 1000 - FIRST_DAY) / DAY)

// Commit times, for the stages below.
const { dir, url: databaseUrl, stop: stopPostgres } = await startBenchPostgres("wearflow-bench-latency-", { track_commit_timestamp: "on" })
const server = await startWearflow({
  databaseUrl,
  dataDir: path.join(dir, "data"),
  env: { WEARFLOW_WEBHOOK_ALLOW_HTTP: "true", WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true" }
})
const bare = await startBareReceiver(databaseUrl)

const api = async (method: string, route: string, body?: unknown) => {
  const response = await fetch(`${server.baseUrl}${route}`, {
    method,
    headers: { "x-api-key": API_KEY, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status}`)
  return (await response.json()) as any
}

// The customer's endpoint: the first arrival of each day's activity event.
const arrivals = new Map<number, number>()
const endpoint = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(request) {
    const event = (await request.json()) as { data?: { calendar_date?: string } }
    const day = event.data?.calendar_date
    if (day !== undefined) {
      const index = indexOfDay(day)
      if (!arrivals.has(index)) arrivals.set(index, performance.now())
    }
    return new Response(null, { status: 204 })
  }
})
await api("POST", "/v2/webhooks", { url: `http://127.0.0.1:${endpoint.port}/hooks`, filter_types: ["daily.data.activity.created"] })
await linkGarminUsers(server.baseUrl, users)

const post = (target: string, body: string) =>
  fetch(target, { method: "POST", headers: pushHeaders, body }).then(async (response) => (await response.arrayBuffer(), response.status === 200))

console.log(`PUSH → webhook at ${rate}/s for ${seconds} s after ${warmupSeconds} s of warm-up, one daily per body, ${users} linked users, Bun ${Bun.version}`)
// Warm-up off the measured days (negative indexes are never looked up).
await openLoop({ rate: 50, seconds: 1, send: (i) => post(bare.url, bodyOf(-1 - i)) })
const anchor = await openLoop({ rate, seconds, send: (i) => post(bare.url, bodyOf(i)) })

/** Offers `rate` for `duration` s, the ith body being `index(i)`; waits for the stragglers; answers the latencies, sorted. */
const offer = async (duration: number, index: (i: number) => number) => {
  const scheduled: Array<number> = []
  const acks = await openLoop({
    rate,
    seconds: duration,
    send: (i, at) => {
      scheduled[i] = at
      return post(server.pushUrl, bodyOf(index(i)))
    }
  })
  const arrived = () => scheduled.reduce((n, _, i) => n + (arrivals.has(index(i)) ? 1 : 0), 0)
  // Wait for the stragglers: until every day arrived, or nothing new came for 30 s.
  let seen = -1
  let quietSince = performance.now()
  for (let count = arrived(); count < scheduled.length && performance.now() - quietSince < 30_000; count = arrived()) {
    if (count !== seen) {
      seen = count
      quietSince = performance.now()
    }
    await Bun.sleep(50)
  }
  const latencies = scheduled.flatMap((at, i) => (arrivals.has(index(i)) ? [arrivals.get(index(i))! - at] : [])).sort((a, b) => a - b)
  return { acks, latencies, offered: scheduled.length }
}
const quantile = (sorted: ReadonlyArray<number>, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN

const memory = sampleRss(server.process.pid!)
const cold = warmupSeconds > 0 ? await offer(warmupSeconds, (i) => i) : undefined
/** The first day of the measured run, after the warm-up's. */
const firstMeasured = Math.round(rate * warmupSeconds)
if (cold !== undefined) {
  console.log(`cold start (the warm-up, ${warmupSeconds} s): PUSH → webhook p50 ${ms(quantile(cold.latencies, 0.5))}  p99 ${ms(quantile(cold.latencies, 0.99))}; ${cold.latencies.length} of ${cold.offered} arrived`)
}
const cpuBefore = { server: processCpuMs(server.process.pid!), at: performance.now() }
const { acks, latencies, offered } = await offer(seconds, (i) => firstMeasured + i)
const peak = memory.stop()
const serverBusy = (processCpuMs(server.process.pid!) - cpuBefore.server) / (performance.now() - cpuBefore.at)

// Where the time went, per stage, from the database's clocks: a transaction's start (now())
// and, for the outbox rows (never updated), their commit (pg_xact_commit_timestamp).
{
  const { SQL } = await import("bun")
  const db = new SQL(databaseUrl)
  const rows = (await db.unsafe(`
    select extract(epoch from r.created_at - i.received_at) * 1000 as to_worker,
           extract(epoch from pg_xact_commit_timestamp(o.xmin) - r.created_at) * 1000 as store_commit,
           extract(epoch from m.created_at - pg_xact_commit_timestamp(o.xmin)) * 1000 as to_fan_out,
           extract(epoch from m.first_attempted_at - m.created_at) * 1000 as to_attempt
      from outbox o
      join records r on r.id = o.record_id
      join inbox i on i.id = r.inbox_id
      join webhook_messages m on m.event_id = o.event_id
     where o.event_type = 'daily.data.activity.created' and r.calendar_date >= date '2000-01-01' + ${firstMeasured}`)) as Array<Record<string, number>>
  await db.close()
  // p50, and p90 in brackets: a stage's tail shows waits its median hides.
  const p50 = (key: string) => {
    const values = rows.map((row) => Number(row[key])).filter(Number.isFinite).sort((a, b) => a - b)
    const at = (q: number) => ms(values[Math.floor(q * values.length)] ?? Number.NaN)
    return `${at(0.5)} (${at(0.9)})`
  }
  console.log(
    `stages, p50 (p90) of ${rows.length} events: body stored → the worker's store transaction starts ${p50("to_worker")}, ` +
      `→ it commits ${p50("store_commit")}, → the webhooks fan-out starts ${p50("to_fan_out")}, → the first attempt ${p50("to_attempt")}`
  )
}
const at = (q: number) => quantile(latencies, q)
const p50 = at(0.5)
const p99 = at(0.99)
const missing = offered - latencies.length
console.log(
  `bare ack   p50 ${ms(anchor.p50)}  p99 ${ms(anchor.p99)}\n` +
    `wearflow   ack p50 ${ms(acks.p50)} p99 ${ms(acks.p99)}; PUSH → webhook p50 ${ms(p50)}  p90 ${ms(at(0.9))}  p99 ${ms(p99)}  max ${ms(latencies.at(-1) ?? Number.NaN)}; ` +
    `${latencies.length} of ${offered} arrived, non-200 acks: ${acks.failures}; the server's CPU: ${(serverBusy * 100).toFixed(0)}% of a core`
)
// p99 may be 1.5× the bare receiver's when the machine's commit stalls exceed 250 ms.
const p99Limit = Math.max(250, 1.5 * anchor.p99)
report([
  {
    path: `PUSH → webhook at ${rate}/s, p50 (after ${warmupSeconds} s of warm-up)`,
    wearflow: ms(p50),
    anchor: `bare ack p50 ${ms(anchor.p50)}`,
    ratio: p50 / anchor.p50,
    target: "≤ 50 ms",
    met: missing === 0 && p50 <= 50
  },
  {
    path: `PUSH → webhook at ${rate}/s, p99`,
    wearflow: missing === 0 ? ms(p99) : `${ms(p99)}, ${missing} never arrived`,
    anchor: `bare ack p99 ${ms(anchor.p99)}`,
    ratio: p99 / anchor.p99,
    target: "≤ 250 ms (or ≤ 1.5× bare p99)",
    met: missing === 0 && p99 <= p99Limit
  },
  {
    path: `PUSH → webhook at ${rate}/s, delivered`,
    wearflow: `${latencies.length} of ${offered} webhooks`,
    anchor: `offered ${perSecond(rate, "notifications/s")} for ${seconds} s`,
    ratio: latencies.length / offered,
    target: "all",
    met: missing === 0
  },
  ...(cold === undefined ? [] : [{
    path: `PUSH → webhook at ${rate}/s, cold start (the first ${warmupSeconds} s of a new server), p50 / p99`,
    wearflow: `${ms(quantile(cold.latencies, 0.5))} / ${ms(quantile(cold.latencies, 0.99))}`,
    anchor: `bare ack p99 ${ms(anchor.p99)}`,
    ratio: quantile(cold.latencies, 0.5) / anchor.p50,
    target: cold.latencies.length === cold.offered ? "reported" : `reported; ${cold.offered - cold.latencies.length} never arrived`
  }]),
  memoryRow("PUSH → webhook", peak, memory.processes)
])

await server.stop()
endpoint.stop(true)
await bare.stop()
await stopPostgres()
