/**
 * Benchmark of the webhooks sink: events committed to the outbox → SinkRunner fan-out →
 * lanes → signed POSTs to a loopback receiver, with 1 and 10 endpoints (100 on request), and
 * a paced run at a steady rate for append→receipt latency. A throughput run's events are
 * written in one transaction before its clock starts and committed when it starts, so the
 * rate is the sink's, from the outbox to the receiver. The baseline, measured in the same run
 * against the same receiver, is a bare undici `Pool` POST loop with the same bodies and the
 * same concurrency as one endpoint's lane. Figures only, never assertions.
 *
 * The receiver is a separate Bun process (this file with `--receiver`), so the sender and the
 * receiver do not share an event loop; it counts deliveries by unique `svix-id` and computes
 * latency from the `appended_at` stamped into each event's payload.
 *
 *   npm run bench:webhooks
 *     env: WEBHOOK_BENCH_DELIVERIES=20000      deliveries per throughput scenario (and the baseline)
 *          WEBHOOK_BENCH_CONCURRENCY=32        WEARFLOW_WEBHOOK_ENDPOINT_CONCURRENCY, and the baseline's connections
 *          WEBHOOK_BENCH_PACED_RATE=1000       events/s of the paced run (1 endpoint)
 *          WEBHOOK_BENCH_PACED_SECONDS=10      length of the paced run
 *          WEBHOOK_BENCH_BUDGET_SECONDS=30     a throughput run still sending after this is cut short
 *                                              (its rate is then over the budget; the rest is dropped)
 *          WEBHOOK_BENCH_ENDPOINTS=1,10        endpoint counts of the throughput runs (e.g. 1,10,100)
 *          WEBHOOK_BENCH_TODAY_P99=210         the paced p99 (ms) before issue 16, which the paced row is judged against
 *          WEBHOOK_BENCH_TRACE=1               prints the pipeline's progress every 100 ms
 *          WEBHOOK_BENCH_PG_STATS=1            loads pg_stat_statements and prints each run's costliest statements
 */
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Metric, Option, Redacted, ConfigProvider } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import pg from "pg"
// The file path, not the bare name: Bun answers a bare "undici" import with its own stand-in.
import { Pool } from "undici/index.js"
import { layerTokenCipher } from "../core/crypto.ts"
import * as Engine from "../core/engine.ts"
import * as Host from "../core/host.ts"
import * as OutboundHttp from "../core/http-client.ts"
import * as SinkRunner from "../core/pipeline/sink-runner.ts"
import * as Database from "../core/storage/database.ts"
import { startBenchPostgres } from "./postgres.ts"
import * as WebhooksSink from "../sinks/webhooks/mod.ts"
import { attemptsMade, messagesDelivered } from "../sinks/webhooks/deliveries.ts"
import { ms, rate, report, rssOf } from "./report.ts"

// ---- the receiver (child process) ---------------------------------------------------------

interface ReceiverStats {
  readonly unique: number
  readonly duplicates: number
  readonly unidentified: number
  /** Receipt time (ms since epoch) of the first and last unique delivery. */
  readonly first: number
  readonly last: number
  readonly paths: number
  readonly minPerPath: number
  readonly maxPerPath: number
  /** append→receipt (or send→receipt for the baseline), ms. */
  readonly p50: number
  readonly p99: number
  readonly max: number
}

const percentile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

const runReceiver = () => {
  let ids = new Set<string>()
  let latencies: Array<number> = []
  let paths = new Map<string, number>()
  let duplicates = 0
  let unidentified = 0
  let first = 0
  let last = 0
  const stats = (): ReceiverStats => {
    const sorted = latencies.slice().sort((a, b) => a - b)
    const perPath = [...paths.values()]
    return {
      unique: ids.size, duplicates, unidentified, first, last, paths: paths.size,
      minPerPath: perPath.length ? Math.min(...perPath) : 0, maxPerPath: perPath.length ? Math.max(...perPath) : 0,
      p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? NaN
    }
  }
  const server = http.createServer((request, response) => {
    const url = request.url ?? "/"
    if (url.startsWith("/_stats")) {
      const body = url.includes("light") ? { unique: ids.size, last } : stats()
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body))
      return void request.resume()
    }
    if (url === "/_reset") {
      ids = new Set()
      latencies = []
      paths = new Map()
      duplicates = unidentified = first = last = 0
      response.writeHead(204).end()
      return void request.resume()
    }
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      const now = Date.now()
      const id = request.headers["svix-id"]
      if (typeof id !== "string") unidentified++
      else if (ids.has(id)) duplicates++
      else {
        ids.add(id)
        const appended = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { data?: { appended_at?: unknown } }).data?.appended_at
        if (typeof appended === "number") latencies.push(now - appended)
        if (first === 0) first = now
        last = now
        paths.set(url, (paths.get(url) ?? 0) + 1)
      }
      response.writeHead(204).end()
    })
  })
  // Longer than any pause in the run: no keep-alive race with the senders' pools.
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 130_000
  server.listen(0, "127.0.0.1", () => console.log(`listening ${(server.address() as AddressInfo).port}`))
  process.on("SIGTERM", () => server.close(() => process.exit(0)))
}

// ---- the benchmark ------------------------------------------------------------------------

/** CPU time per 1,000 deliveries, ms: this process (the sink, or the bare loop), Postgres, the receiver. */
interface CpuPer1000 {
  readonly sender: number
  readonly postgres: number
  readonly receiver: number
}

interface Run {
  readonly name: string
  readonly deliveries: number
  readonly received: number
  /** From the first append (or request) to the last receipt, ms. */
  readonly wallMs: number
  readonly perSecond: number
  readonly stats: ReceiverStats
  readonly note: string
  /** Cut short at the time budget. */
  readonly partial: boolean
  readonly cpu: CpuPer1000
}

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? value : fallback
}

/** Releases what the run started, last first, even when it fails half-way. */
const cleanups: Array<() => Promise<unknown>> = []

/** CPU ms (user + system) of the processes `pick` chooses by (pid, parent pid), from Linux /proc; 0 elsewhere. */
const cpuOfProcesses = (pick: (pid: number, ppid: number) => boolean): number => {
  let ticks = 0
  let entries: Array<string> = []
  try {
    entries = readdirSync("/proc")
  } catch {
    return 0
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // Fields after the command name (in parentheses): state, ppid, …, utime (14th field), stime (15th).
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (pick(Number(entry), Number(fields[1]))) ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // gone meanwhile
    }
  }
  return ticks * 10 // USER_HZ is 100 on Linux
}

/**
 * The paced run's p99 before issue 16's changes on a quiet 2-core machine (issue 16: p50 89 ms,
 * p99 210 ms); the target is half of it. On the shared, loaded machine the work was done on,
 * this benchmark measured the old code at 802 ms (median of 3) and the new at 520 ms: judge
 * a loaded machine's run with WEBHOOK_BENCH_TODAY_P99=802.
 */
const TODAY_P99_MS = 210

const runBench = async () => {
  const startedAt = performance.now()
  const deliveries = Math.floor(env("WEBHOOK_BENCH_DELIVERIES", 20_000))
  const concurrency = Math.floor(env("WEBHOOK_BENCH_CONCURRENCY", 32))
  const pacedRate = env("WEBHOOK_BENCH_PACED_RATE", 1000)
  const pacedSeconds = env("WEBHOOK_BENCH_PACED_SECONDS", 10)
  const budgetMs = env("WEBHOOK_BENCH_BUDGET_SECONDS", 30) * 1000
  const trace = process.env.WEBHOOK_BENCH_TRACE === "1"
  const endpointCounts = (process.env.WEBHOOK_BENCH_ENDPOINTS ?? "1,10").split(",").map(Number).filter((n) => n > 0)
  const todayP99 = env("WEBHOOK_BENCH_TODAY_P99", TODAY_P99_MS)
  // This process runs the sink as the server would: its memory during the Wearflow runs is the
  // sink's (sampled from a collected heap, without the baseline's garbage). Once a second:
  // reading /proc is not free, and this process's CPU is part of what is measured. This process
  // alone: the receiver is its child, and counting it with the sink (as sampleRss counts a
  // server's workers) put its ~150 MB of ids and latencies on the sink's figure.
  const sinkRss = () => {
    Bun.gc(true)
    let peak = rssOf(process.pid) ?? 0
    const timer = setInterval(() => (peak = Math.max(peak, rssOf(process.pid) ?? 0)), 1000)
    return { stop: () => (clearInterval(timer), Math.max(peak, rssOf(process.pid) ?? 0)) }
  }
  const STALL_MS = 30_000
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

  // Postgres, with a pool of our own for appends and progress queries.
  const pgStats = process.env.WEBHOOK_BENCH_PG_STATS === "1"
  const postgres = await startBenchPostgres("wearflow-bench-webhooks-", pgStats ? { shared_preload_libraries: "pg_stat_statements" } : {})
  cleanups.push(postgres.stop)
  const { dir } = postgres
  const db = new pg.Pool({ connectionString: postgres.url, max: 4, idleTimeoutMillis: 0 })
  if (pgStats) await db.query("create extension if not exists pg_stat_statements")
  /** The statements that took the most time in Postgres since the last call, with their share. */
  const printStatements = async (name: string) => {
    if (!pgStats) return
    const top = (await db.query(
      `select calls::float8 as calls, total_exec_time::float8 as ms, rows::float8 as rows,
              sum(total_exec_time) over ()::float8 as all_ms, regexp_replace(query, '\\s+', ' ', 'g') as query
       from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time desc limit 10`
    )).rows as Array<{ calls: number; ms: number; rows: number; all_ms: number; query: string }>
    console.log(`  Postgres, ${name}: ${(top[0]?.all_ms ?? 0).toFixed(0)} ms executing statements`)
    for (const s of top) {
      console.log(`    ${((100 * s.ms) / s.all_ms).toFixed(0).padStart(3)}% ${s.ms.toFixed(0).padStart(6)} ms ${String(s.calls).padStart(6)} calls ${String(s.rows).padStart(7)} rows  ${s.query.slice(0, 160)}`)
    }
    await db.query("select pg_stat_statements_reset()")
  }
  // Postgres stops at the end of the run; idle connections it terminates are expected then.
  db.on("error", () => {})
  cleanups.push(() => db.end())

  // The receiver, in its own process.
  const receiverProcess: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), "--receiver"], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  cleanups.push(async () => {
    if (receiverProcess.exitCode !== null) return
    const exited = new Promise((resolve) => receiverProcess.once("exit", resolve))
    receiverProcess.kill("SIGTERM")
    await exited
  })
  const receiverPort = await new Promise<number>((resolve, reject) => {
    let out = ""
    receiverProcess.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8")
      const match = /listening (\d+)/.exec(out)
      if (match) resolve(Number(match[1]))
    })
    receiverProcess.once("exit", (code) => reject(new Error(`receiver exited (${code})`)))
  })
  const origin = `http://127.0.0.1:${receiverPort}`
  const resetReceiver = () => fetch(`${origin}/_reset`, { method: "POST" }).then((r) => r.arrayBuffer())
  const receiverStats = () => fetch(`${origin}/_stats`).then((r) => r.json() as Promise<ReceiverStats>)
  // CPU used per run by this process, Postgres (the postmaster and its children) and the receiver.
  const postmaster = Number((await fs.readFile(path.join(dir, "pg", "postmaster.pid"), "utf8")).split("\n")[0])
  const postgresCpu = () => cpuOfProcesses((pid, ppid) => pid === postmaster || ppid === postmaster)
  const receiverCpu = () => cpuOfProcesses((pid) => pid === receiverProcess.pid)
  const cpuMeter = () => {
    // This process's own time is read inside the /proc scans, so they do not count in it.
    const pg = postgresCpu()
    const receiver = receiverCpu()
    const self = process.cpuUsage()
    return (deliveries: number): CpuPer1000 => {
      const used = process.cpuUsage(self)
      const per = 1000 / Math.max(1, deliveries)
      // A Postgres backend that exits takes its CPU time with it: then the figure is unknown.
      const postgres = postgresCpu() - pg
      return { sender: ((used.user + used.system) / 1000) * per, postgres: postgres >= 0 ? postgres * per : NaN, receiver: (receiverCpu() - receiver) * per }
    }
  }
  const receiverCount = () => fetch(`${origin}/_stats?light`).then((r) => r.json() as Promise<{ unique: number; last: number }>)

  /**
   * Waits until the receiver has `expected` unique deliveries; false when nothing new came for
   * STALL_MS or the deadline passed.
   */
  const waitForReceipts = async (expected: number, deadline = Infinity) => {
    let seen = -1
    let progressAt = Date.now()
    for (;;) {
      const { unique } = await receiverCount()
      if (unique >= expected) return true
      if (Date.now() >= deadline) return false
      if (unique !== seen) {
        seen = unique
        progressAt = Date.now()
      } else if (Date.now() - progressAt > STALL_MS) return false
      // The count comes from the receiver's own clock (`last`), so polling less often loses nothing.
      await sleep(50)
    }
  }

  /** Waits until this process is idle (< 15% of a core for 750 ms; at most 30 s): the previous run's work is over. */
  const quiesce = async () => {
    const end = Date.now() + 30_000
    let quiet = 0
    let last = process.cpuUsage()
    while (Date.now() < end && quiet < 750) {
      await sleep(250)
      const used = process.cpuUsage(last)
      last = process.cpuUsage()
      quiet = (used.user + used.system) / 1000 / 250 < 0.15 ? quiet + 250 : 0
    }
  }

  // The event every run sends: Wearflow's envelope around a daily summary, ~820 bytes as
  // Postgres renders it. `appended_at` is stamped per append batch; the receiver reads it.
  const data = {
    id: "5b0c4f5e-8a7d-4c39-9f4e-2d1b7a6c3e10", provider: "garmin", resource: "daily", calendar_date: "2025-01-15",
    time_start: "2025-01-15T00:00:00.000Z", time_end: "2025-01-16T00:00:00.000Z", timezone_offset: 3600,
    steps: 8421, distance_meters: 6523.4, floors_climbed: 7, active_calories: 512, total_calories: 2310,
    resting_heart_rate: 58, average_heart_rate: 71, max_heart_rate: 142, average_stress: 31,
    moderate_intensity_minutes: 24, vigorous_intensity_minutes: 12,
    source: { provider: "garmin", type: "device", device: "Forerunner 965" }
  }
  const EVENT_TYPE = "daily.data.activity.created"
  // $1 team, $2 data, $3 appended_at (ms), s: the sequence number.
  const envelopeSql = `jsonb_build_object(
      'event_type', '${EVENT_TYPE}',
      'data', $2::jsonb || jsonb_build_object('appended_at', $3::bigint, 'seq', s),
      'user_id', ('00000000-0000-4000-8000-' || lpad((s % 100)::text, 12, '0'))::uuid,
      'client_user_id', 'bench-user-' || (s % 100),
      'team_id', $1::uuid)`
  const appendSql = `
    insert into outbox (event_id, event_type, team_id, user_id, payload)
    select gen_random_uuid(), '${EVENT_TYPE}', $1::uuid, ('00000000-0000-4000-8000-' || lpad((s % 100)::text, 12, '0'))::uuid, ${envelopeSql}
    from generate_series($4::int, $5::int) s`
  const append = (teamId: string, from: number, to: number) =>
    db.query(appendSql, [teamId, JSON.stringify(data), Date.now(), from, to])

  // The baseline's body: the same text Postgres sends, with markers for the stamp and the sequence.
  const STAMP = "1700000000000"
  const SEQ = "9999999"
  const template: string = (
    await db.query(`select ${envelopeSql}::text as body from (select ${SEQ}::int as s) g`, ["00000000-0000-4000-8000-0000000000aa", JSON.stringify(data), STAMP])
  ).rows[0].body
  const bodyBytes = Buffer.byteLength(template)

  console.log(
    `Webhook delivery to a loopback receiver (separate process): ${deliveries} deliveries per throughput run, body ~${bodyBytes} bytes, ` +
      `endpoint concurrency ${concurrency}, sink runner batch 1000 / idle 20 ms (as the server), Bun ${Bun.version}, ${os.cpus().length} cores`
  )

  // ---- baseline: a bare undici loop ----------------------------------------------------------
  const baseline = async (n: number): Promise<Run> => {
    const pool = new Pool(origin, { connections: concurrency, keepAliveTimeout: 30_000 })
    await resetReceiver()
    let next = 0
    let failures = 0
    const meter = cpuMeter()
    const start = Date.now()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          const seq = next++
          const now = Date.now()
          const body = template.replace(STAMP, String(now)).replace(SEQ, String(seq))
          const response = await pool.request({
            method: "POST",
            path: "/baseline",
            headers: {
              "content-type": "application/json",
              "user-agent": "Wearflow-Webhooks/1",
              "svix-id": `msg_${seq.toString(16).padStart(32, "0")}`,
              "svix-timestamp": String(Math.floor(now / 1000)),
              "svix-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            },
            body
          })
          await response.body.dump()
          if (response.statusCode !== 204) failures++
        }
      })
    )
    await waitForReceipts(n)
    const cpu = meter(n)
    const stats = await receiverStats()
    await pool.close()
    const wallMs = stats.last - start
    return {
      name: `baseline: bare undici Pool loop (${concurrency} connections)`,
      deliveries: n, received: stats.unique, wallMs, perSecond: stats.unique / (wallMs / 1000), stats,
      note: failures > 0 ? `${failures} non-204` : "", partial: false, cpu
    }
  }

  const logBaseline = (run: Run) =>
    console.log(`${run.name.padEnd(38)} ${run.perSecond.toFixed(0).padStart(7)} deliveries/s   p50 ${run.stats.p50} ms   p99 ${run.stats.p99} ms`)
  await baseline(Math.min(2000, deliveries)) // warm-up
  const baseBefore = await baseline(deliveries)
  logBaseline(baseBefore)

  // ---- Wearflow: the sink as the server composes it ---------------------------------------------
  const config = ConfigProvider.fromMap(new Map([
    ["WEARFLOW_WEBHOOK_ALLOW_HTTP", "true"],
    ["WEARFLOW_WEBHOOK_ALLOW_PRIVATE", "true"],
    ["WEARFLOW_WEBHOOK_ENDPOINT_CONCURRENCY", String(concurrency)]
  ]))
  const Storage = layerTokenCipher(Redacted.make([randomBytes(32)])).pipe(
    Layer.provideMerge(Database.layer({ url: Option.some(postgres.redactedUrl), dataDir: dir }))
  )
  const App = SinkRunner.layer(WebhooksSink.WebhooksSink, { idle: "20 millis", batchSize: 1000 }).pipe(
    // The sink alone: the endpoints API (and its API-key check) is not what is measured.
    Layer.provideMerge(Host.load({ manifest: WebhooksSink.manifest, layer: WebhooksSink.layer }, config)),
    Layer.provide(OutboundHttp.layer()),
    Layer.provideMerge(Engine.layer({ runnerAddress: { host: "127.0.0.1", port: 20_000 + Math.floor(Math.random() * 20_000) } })),
    Layer.provideMerge(Storage),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )
  const runtime = ManagedRuntime.make(App)
  cleanups.push(() => runtime.dispose())
  await runtime.runtime()
  const teamId: string = (await db.query("insert into teams (id, name) values (gen_random_uuid(), 'bench') returning id")).rows[0].id

  const endpoints = (count: number) =>
    runtime.runPromise(
      Effect.gen(function* () {
        const service = yield* WebhooksSink.WebhookEndpoints
        for (const endpoint of yield* service.list(teamId)) yield* service.remove(teamId, endpoint.id)
        yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => service.create(teamId, { url: `${origin}/hooks/${i}` }), {
          concurrency: 8,
          discard: true
        })
      })
    )

  /**
   * Pipeline progress, from the sink's own counters in this process (a count of the messages
   * table was a scan of it on the same 2 cores as what is measured): messages fanned out (events
   * taken times the endpoints, all of which take every event), recorded delivered, and failed
   * attempts. With WEBHOOK_BENCH_TRACE, the leased messages too, from the table.
   */
  const counters = () =>
    runtime.runPromise(Effect.all({
      events: Metric.value(Metric.tagged(SinkRunner.eventsDelivered, "sink", WebhooksSink.manifest.id)),
      delivered: Metric.value(messagesDelivered),
      failed: Metric.value(Metric.tagged(attemptsMade, "outcome", "failure"))
    }))
  const leased = async () =>
    ((await db.query(`select count(*)::int as leased from webhook_messages where status = 'sending'`)).rows[0] as { leased: number }).leased

  /** Watches the stages of one run from the counters read before it (`start`); times are ms since `t0`. */
  const watch = (expected: number, endpointCount: number, t0: number, start: Awaited<ReturnType<typeof counters>>) => {
    const stages = { fannedOut: NaN, recorded: NaN, failing: 0 }
    let running = true
    const loop = (async () => {
      while (running) {
        const now = await counters()
        const p = {
          messages: (now.events.count - start.events.count) * endpointCount,
          delivered: now.delivered.count - start.delivered.count,
          failing: now.failed.count - start.failed.count
        }
        const at = Date.now() - t0
        if (Number.isNaN(stages.fannedOut) && p.messages >= expected) stages.fannedOut = at
        if (Number.isNaN(stages.recorded) && p.delivered >= expected) stages.recorded = at
        stages.failing = Math.max(stages.failing, p.failing)
        if (trace) {
          const { unique } = await receiverCount()
          console.log(`  t=${String(at).padStart(6)} ms  fanned out ${p.messages}  leased ${await leased()}  received ${unique}  recorded ${p.delivered}  failed attempts ${p.failing}`)
        }
        if (!Number.isNaN(stages.recorded)) break
        await sleep(100)
      }
    })()
    return {
      stages,
      /** Waits (up to STALL_MS) for the recorder to catch up, then stops. */
      stop: async () => {
        const deadline = Date.now() + STALL_MS
        while (Number.isNaN(stages.recorded) && Date.now() < deadline) await sleep(50)
        running = false
        await loop
        return stages
      },
      /** Stops at once. */
      abandon: () => {
        running = false
        return stages
      }
    }
  }

  let seqBase = 0
  const throughput = async (name: string, endpointCount: number, events: number): Promise<Run> => {
    await endpoints(endpointCount)
    await resetReceiver()
    const expected = events * endpointCount
    const from = seqBase
    seqBase += events
    // The events are written in one transaction that commits when the clock starts: what is
    // measured is the sink, from the outbox to the receiver, not the writing of the outbox.
    const writer = await db.connect()
    const appendStarted = Date.now()
    await writer.query("begin")
    for (let i = 0; i < events; i += 1000) await writer.query(appendSql, [teamId, JSON.stringify(data), Date.now(), from + i, from + Math.min(events, i + 1000) - 1])
    const appended = Date.now() - appendStarted
    if (pgStats) await db.query("select pg_stat_statements_reset()")
    const before = await counters()
    const meter = cpuMeter()
    const t0 = Date.now()
    await writer.query("commit")
    writer.release()
    const watcher = watch(expected, endpointCount, t0, before)
    const complete = await waitForReceipts(expected, t0 + budgetMs)
    const cutAt = Date.now()
    const cpu = meter(expected)
    const stats = await receiverStats()
    const stages = complete ? await watcher.stop() : watcher.abandon()
    await printStatements(name)
    // Cut short: the rate is what arrived within the budget; the rest is dropped with the endpoints.
    const wallMs = complete ? stats.last - t0 : cutAt - t0
    const at = (x: number) => (Number.isNaN(x) ? "n/a" : `${x} ms`)
    console.log(
      `${name.padEnd(38)} ${(stats.unique / (wallMs / 1000)).toFixed(0).padStart(7)} deliveries/s   stages: (appended in ${appended} ms before the clock) ` +
        `fanned out ${at(stages.fannedOut)}, ${complete ? `last receipt ${wallMs} ms, recorded ${at(stages.recorded)}` : `cut short at ${wallMs} ms with ${stats.unique}/${expected} received`}` +
        `${complete && stats.paths !== endpointCount ? `   (only ${stats.paths} endpoints reached)` : ""}`
    )
    if (!complete) {
      await endpoints(0)
      await quiesce()
    }
    const notes = [
      complete ? "" : `cut short at ${(budgetMs / 1000).toFixed(0)} s`,
      stats.duplicates > 0 ? `${stats.duplicates} duplicates` : "",
      stages.failing > 0 ? `${stages.failing} failed attempts` : "",
      `per endpoint ${stats.minPerPath}–${stats.maxPerPath}`
    ]
    return {
      name, deliveries: expected, received: stats.unique, wallMs, perSecond: stats.unique / (wallMs / 1000), stats,
      note: notes.filter(Boolean).join("; "), partial: !complete, cpu
    }
  }

  const paced = async (rate: number, seconds: number): Promise<Run> => {
    await endpoints(1)
    await resetReceiver()
    const tickMs = 20
    const perTick = Math.max(1, Math.round((rate * tickMs) / 1000))
    const ticks = Math.round((seconds * 1000) / tickMs)
    const expected = perTick * ticks
    const before = await counters()
    const meter = cpuMeter()
    const t0 = Date.now()
    const watcher = watch(expected, 1, t0, before)
    const pending: Array<Promise<unknown>> = []
    const appendMs: Array<number> = []
    let behind = 0
    for (let k = 0; k < ticks; k++) {
      const wait = t0 + k * tickMs - Date.now()
      if (wait > 0) await sleep(wait)
      else if (wait < -tickMs) behind++
      const from = seqBase
      seqBase += perTick
      const a0 = Date.now()
      pending.push(append(teamId, from, from + perTick - 1).then(() => appendMs.push(Date.now() - a0)))
    }
    await Promise.all(pending)
    // An append's own commit is part of append→receipt (the stamp is taken before it): its tail is the floor of the run's.
    appendMs.sort((a, b) => a - b)
    const appendedMs = Date.now() - t0
    const complete = await waitForReceipts(expected)
    const cpu = meter(expected)
    const stages = await watcher.stop()
    const stats = await receiverStats()
    const wallMs = stats.last - t0
    const name = `Wearflow paced ${rate}/s, 1 endpoint, ${seconds} s`
    console.log(
      `${name.padEnd(38)} ${(stats.unique / (wallMs / 1000)).toFixed(0).padStart(7)} deliveries/s   appended ${expected} in ${appendedMs} ms` +
        `${behind > 0 ? ` (${behind} ticks late)` : ""}   p50 ${stats.p50} ms   p99 ${stats.p99} ms   max ${stats.max} ms` +
        `   (the appends' own commits: p50 ${percentile(appendMs, 0.5)} ms, p99 ${percentile(appendMs, 0.99)} ms)`
    )
    const notes = [
      complete ? "" : `incomplete: ${stats.unique}/${expected}`,
      stats.duplicates > 0 ? `${stats.duplicates} duplicates` : "",
      stages.failing > 0 ? `${stages.failing} failed attempts` : "",
      `appends at ${(expected / (appendedMs / 1000)).toFixed(0)}/s; max ${stats.max} ms`
    ]
    return {
      name, deliveries: expected, received: stats.unique, wallMs, perSecond: stats.unique / (wallMs / 1000), stats,
      note: notes.filter(Boolean).join("; "), partial: !complete, cpu
    }
  }

  const rssOfRuns = sinkRss()
  await throughput("warm-up, 1 endpoint", 1, Math.min(500, deliveries))
  await quiesce()
  const runs: Array<Run> = []
  for (const count of endpointCounts) {
    runs.push(await throughput(`Wearflow, ${count} endpoint${count > 1 ? "s" : ""}`, count, Math.ceil(deliveries / count)))
    await quiesce()
  }
  const runsPeak = rssOfRuns.stop()
  // The anchor again after the Wearflow runs: the machine's load drifts, so the ratio is to the mean.
  const baseAfter = { ...(await baseline(deliveries)), name: "baseline again, after them" }
  logBaseline(baseAfter)
  const anchor = (baseBefore.perSecond + baseAfter.perSecond) / 2
  const rssOfPaced = sinkRss()
  const pacedRun = await paced(pacedRate, pacedSeconds)
  const peakRss = Math.max(runsPeak, rssOfPaced.stop())
  console.log(`sink process RSS, peak: ${peakRss.toFixed(0)} MB (the receiver's own process, not counted: ${(rssOf(receiverProcess.pid!) ?? NaN).toFixed(0)} MB at the end)`)

  // ---- the table --------------------------------------------------------------------------------
  const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a")
  const bases = [baseBefore, baseAfter]
  const rows = [baseBefore, ...runs, baseAfter, pacedRun].map((r) => [
    r.name,
    `${fmt(r.received)}/${fmt(r.deliveries)}${r.partial ? "*" : ""}`,
    fmt(r.wallMs / 1000, 2),
    fmt(r.perSecond),
    bases.includes(r) ? "—" : r === pacedRun ? "—" : `${(r.perSecond / anchor).toFixed(2)}×`,
    fmt(r.stats.p50),
    fmt(r.stats.p99),
    `${fmt(r.cpu.sender)} · ${fmt(r.cpu.postgres)} · ${fmt(r.cpu.receiver)}`,
    r.note
  ])
  const header = ["Run", "Delivered", "Wall s", "Deliveries/s", "vs baseline", "p50 ms", "p99 ms", "CPU ms/1k: sender · pg · receiver", "Notes"]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => (i >= 1 && i <= 6 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`
  console.log("")
  console.log("Latency: append→receipt for Wearflow (throughput runs commit everything at once, so it includes queueing); send→receipt for the baseline.")
  console.log(line(header))
  console.log(`|${widths.map((w, i) => (i >= 1 && i <= 6 ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|")}|`)
  for (const row of rows) console.log(line(row))
  if (runs.some((r) => r.partial)) console.log(`* cut short at the ${(budgetMs / 1000).toFixed(0)} s budget (WEBHOOK_BENCH_BUDGET_SECONDS): the rate is over the budget, latencies are of what arrived.`)
  console.log(`vs baseline: to the mean of the two baseline runs, ${fmt(anchor)} deliveries/s. CPU: this process (the sink, or the bare loop), Postgres, the receiver, per 1,000 deliveries.`)
  console.log(`Total run time ${((performance.now() - startedAt) / 1000).toFixed(1)} s`)

  const anchorText = `bare undici loop: ${rate(anchor, "deliveries/s")}`
  report([
    ...runs.filter((r, i) => endpointCounts[i] === 1 || endpointCounts[i] === 10).map((r) => ({
      path: `webhooks, ${r.name.replace("Wearflow, ", "")}`,
      wearflow: `${rate(r.perSecond, "deliveries/s")}${r.partial ? " (cut short)" : ""}`,
      anchor: anchorText,
      ratio: r.perSecond / anchor,
      target: "≥ 0.6×",
      met: !r.partial && r.perSecond / anchor >= 0.6
    })),
    {
      path: `webhooks paced ${fmt(pacedRate)}/s, p99 append→receipt`,
      wearflow: ms(pacedRun.stats.p99),
      anchor: `before issue 16: ${ms(todayP99)}`,
      ratio: pacedRun.stats.p99 / todayP99,
      target: "≤ 0.5×",
      met: !pacedRun.partial && pacedRun.stats.p99 <= todayP99 / 2
    },
    {
      path: "sink process RSS, peak, webhooks",
      wearflow: `${fmt(peakRss)} MB`,
      anchor: "—",
      target: "≤ 256 MB",
      met: peakRss <= 256
    }
  ])
}

if (process.argv.includes("--receiver")) runReceiver()
else {
  try {
    await runBench()
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => console.error("clean-up failed:", error))
  }
}
