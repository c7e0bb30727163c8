/**
 * PUSH → webhook latency through the real server: Garmin PUSH bodies of one daily each posted
 * at a fixed rate (open loop), each daily's `daily.data.activity.created` webhook received by a
 * loopback endpoint; latency from the POST's scheduled send time to the webhook's arrival. The
 * anchor, in the same run: the bare receiver's ack latency at the same rate (bench/bare-receiver.ts),
 * whose p99 shows the machine's commit stalls. Also the server's peak RSS, and the p50 of each
 * stage from the database's clocks (track_commit_timestamp on).
 *
 *   bun bench/latency.ts        (env: BENCH_LATENCY_RATE=200 BENCH_SECONDS=10 BENCH_USERS=20)
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

const fixture = JSON.parse(await fs.readFile(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")) as {
  dailies: Array<Record<string, unknown>>
}
const DAY = 86_400
const FIRST_DAY = Date.UTC(2000, 0, 1) / 1000
/** The `index`th notification: one daily of its own day, for one of the linked users. */
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

console.log(`PUSH → webhook at ${rate}/s for ${seconds} s, one daily per body, ${users} linked users, Bun ${Bun.version}`)
// Warm-up off the measured days (negative indexes are never looked up).
await openLoop({ rate: 50, seconds: 1, send: (i) => post(bare.url, bodyOf(-1 - i)) })
const anchor = await openLoop({ rate, seconds, send: (i) => post(bare.url, bodyOf(i)) })

const memory = sampleRss(server.process.pid!)
const cpuBefore = { server: processCpuMs(server.process.pid!), at: performance.now() }
const scheduled: Array<number> = []
const acks = await openLoop({
  rate,
  seconds,
  send: (i, at) => {
    scheduled[i] = at
    return post(server.pushUrl, bodyOf(i))
  }
})
// Wait for the stragglers: until every day arrived, or nothing new came for 30 s.
let seen = -1
let quietSince = performance.now()
while (arrivals.size < scheduled.length && performance.now() - quietSince < 30_000) {
  if (arrivals.size !== seen) {
    seen = arrivals.size
    quietSince = performance.now()
  }
  await Bun.sleep(50)
}
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
     where o.event_type = 'daily.data.activity.created'`)) as Array<Record<string, number>>
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
const latencies = scheduled.flatMap((at, i) => (arrivals.has(i) ? [arrivals.get(i)! - at] : [])).sort((a, b) => a - b)
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN
const p50 = at(0.5)
const p99 = at(0.99)
const missing = scheduled.length - latencies.length
console.log(
  `bare ack   p50 ${ms(anchor.p50)}  p99 ${ms(anchor.p99)}\n` +
    `wearflow   ack p50 ${ms(acks.p50)} p99 ${ms(acks.p99)}; PUSH → webhook p50 ${ms(p50)}  p90 ${ms(at(0.9))}  p99 ${ms(p99)}  max ${ms(latencies.at(-1) ?? Number.NaN)}; ` +
    `${latencies.length} of ${scheduled.length} arrived, non-200 acks: ${acks.failures}; the server's CPU: ${(serverBusy * 100).toFixed(0)}% of a core`
)
// p99 may be 1.5× the bare receiver's when the machine's commit stalls exceed 250 ms.
const p99Limit = Math.max(250, 1.5 * anchor.p99)
report([
  {
    path: `PUSH → webhook at ${rate}/s, p50`,
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
    wearflow: `${latencies.length} of ${scheduled.length} webhooks`,
    anchor: `offered ${perSecond(rate, "notifications/s")} for ${seconds} s`,
    ratio: latencies.length / scheduled.length,
    target: "all",
    met: missing === 0
  },
  memoryRow("PUSH → webhook", peak, memory.processes)
])

await server.stop()
endpoint.stop(true)
await bare.stop()
await stopPostgres()
