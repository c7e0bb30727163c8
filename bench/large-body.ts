/**
 * Benchmark of one large Garmin PUSH: a generated body of realistic dailies (each with a day
 * of heart-rate samples) posted to the real server, its resident memory sampled until every
 * part of the body is committed to the store. Prints the server's peak RSS against the body's
 * size (the baseline: the same server's RSS just before the post, in the same run), the time
 * to the 200, and the time until the data is committed.
 *
 *   npm run bench:large-body      (env: BENCH_BODY_MB=100; BENCH_SERVER_FLAGS passes more flags to bun;
 *                                  BENCH_ANSWER_ONLY=1 stops at the 200, measuring the request path alone;
 *                                  BENCH_STOP_AFTER_PARTS=200 stops once that many parts are committed: a quick
 *                                  look (storing all 1,645 parts takes minutes), though the whole run's peak may
 *                                  come later, the heap swinging with each part's garbage)
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import pg from "pg"
import { startBenchPostgres } from "./postgres.ts"
import { benchServerFlags } from "./server.ts"
import { report, rssOfTree } from "./report.ts"

const bodyMb = Number(process.env.BENCH_BODY_MB ?? 100)
const fixture = JSON.parse(await fs.readFile(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")) as {
  dailies: Array<Record<string, unknown>>
}

/** `{"dailies": [...]}` of about `bytes`: one daily per user-day, 300 heart-rate samples each. */
const generateBody = (bytes: number) => {
  const template = fixture.dailies[0]!
  const texts: Array<string> = []
  let size = 0
  for (let i = 0; size < bytes; i++) {
    const samples: Record<string, number> = {}
    for (let s = 0; s < 300; s++) samples[String(s * 15)] = 55 + ((i + s) % 60)
    const day = 1452470400 + i * 86_400
    const text = JSON.stringify({
      ...template,
      userId: "bench-garmin-user",
      summaryId: `bench-${i}`,
      calendarDate: new Date(day * 1000).toISOString().slice(0, 10),
      startTimeInSeconds: day,
      steps: 1000 + (i % 9000),
      timeOffsetHeartRateSamples: samples
    })
    texts.push(text)
    size += text.length + 1
  }
  return { body: `{"dailies":[${texts.join(",")}]}`, dailies: texts.length }
}

/** Bytes resident in the process and the processes it started (the server's worker). */
const rssOf = async (pid: number) => rssOfTree(pid).mb * 1024 * 1024

/** Stops the run after the 200 (BENCH_ANSWER_ONLY). */
class AnswerOnly extends Error {}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`

console.log("starting Postgres and the server")
const { dir, url, stop: stopPostgres } = await startBenchPostgres("wearflow-bench-large-")
const db = new pg.Client({ connectionString: url })
db.on("error", () => {})
await db.connect()

const port = 20_000 + Math.floor(Math.random() * 20_000)
const baseUrl = `http://127.0.0.1:${port}`
let logs = ""
const server = spawn(process.execPath, [...benchServerFlags, "apps/server/main.ts"], {
  cwd: new URL("..", import.meta.url).pathname,
  env: {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: url,
    GARMIN_CLIENT_ID: "bench",
    WEARFLOW_API_KEY: "bench-key",
    WEARFLOW_DATA_DIR: path.join(dir, "data"),
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    LOG_LEVEL: "Error"
  },
  stdio: ["ignore", "pipe", "pipe"]
})
server.stdout!.on("data", (chunk) => (logs += chunk))
server.stderr!.on("data", (chunk) => (logs += chunk))

/**
 * The baseline: a bare Bun server that only receives the body as text (and, `parse`, runs
 * JSON.parse on it as the request path used to); its RSS above its idle RSS, for the same body.
 */
const bareReceive = async (body: string, parse: boolean) => {
  const code = `const s = Bun.serve({ port: 0, hostname: "127.0.0.1", maxRequestBodySize: 256 * 1024 * 1024,
    async fetch(r) { const t = await r.text(); ${parse ? "JSON.parse(t);" : ""} return new Response(String(t.length)) } }); console.log(s.port)`
  const bare = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] })
  try {
    const port = await new Promise<string>((resolve) => bare.stdout!.once("data", (d) => resolve(String(d).trim())))
    Bun.gc(true)
    await Bun.sleep(200)
    const idle = await rssOf(bare.pid!)
    let top = idle
    let on = true
    const watch = (async () => {
      while (on) {
        top = Math.max(top, await rssOf(bare.pid!))
        await Bun.sleep(20)
      }
    })()
    await (await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body })).text()
    await Bun.sleep(200)
    on = false
    await watch
    return top - idle
  } finally {
    bare.kill("SIGKILL")
  }
}

let sampling = false
try {
  for (let ready = false; !ready;) {
    if (server.exitCode !== null) throw new Error(`server exited:\n${logs}`)
    ready = await fetch(`${baseUrl}/api/v1/webhooks/garmin/health`).then((r) => r.ok, () => false)
    if (!ready) await Bun.sleep(100)
  }
  const api = (method: string, route: string, body?: unknown) =>
    fetch(`${baseUrl}${route}`, { method, headers: { "x-api-key": "bench-key", "content-type": "application/json" }, body: JSON.stringify(body) })
      .then((r) => r.json() as Promise<any>)
  const user = await api("POST", "/v2/user", { client_user_id: "bench" })
  await api("POST", `/v2/user/${user.user_id}/connections/garmin`, { provider_user_id: "bench-garmin-user" })

  const { body, dailies } = generateBody(bodyMb * 1024 * 1024)
  // Warm the server's code paths with a small body of the same shape first.
  const warm = JSON.stringify({ dailies: JSON.parse(generateBody(64 * 1024).body).dailies.map((d: any) => ({ ...d, summaryId: `warm-${d.summaryId}` })) })
  await fetch(`${baseUrl}/api/v1/webhooks/garmin/push`, { method: "POST", headers: { "garmin-client-id": "bench" }, body: warm })
  for (;;) {
    const pending = Number((await db.query("select count(*) as n from inbox where processed_at is null")).rows[0].n)
    if (pending === 0) break
    await Bun.sleep(100)
  }
  Bun.gc(true)
  const baseline = await rssOf(server.pid!)
  console.log(`body: ${mb(body.length)} (${dailies} dailies × 300 heart-rate samples); server RSS before: ${mb(baseline)}`)

  let peak = baseline
  // The peak while the parts are processed, after the 200: the request path's peak apart.
  let processingPeak = baseline
  let answeredYet = false
  sampling = true
  const sampler = (async () => {
    while (sampling) {
      const rss = await rssOf(server.pid!)
      peak = Math.max(peak, rss)
      if (answeredYet) processingPeak = Math.max(processingPeak, rss)
      await Bun.sleep(50)
    }
  })()

  const start = performance.now()
  const response = await fetch(`${baseUrl}/api/v1/webhooks/garmin/push`, { method: "POST", headers: { "garmin-client-id": "bench" }, body })
  const answer = (await response.json()) as { inbox_id: number }
  const answered = performance.now() - start
  if (response.status !== 200) throw new Error(`answered ${response.status}: ${JSON.stringify(answer)}`)
  const peakAtAnswer = peak
  answeredYet = true
  const [bareText, bareParse] = [await bareReceive(body, false), await bareReceive(body, true)]
  console.log(`baseline, a bare Bun server receiving the same body: +${mb(bareText)} (${(bareText / body.length).toFixed(2)}× the body) as text, +${mb(bareParse)} (${(bareParse / body.length).toFixed(2)}×) with JSON.parse`)
  console.log(`answered 200 in ${(answered / 1000).toFixed(2)} s; peak RSS by then ${mb(peakAtAnswer)} = ${(peakAtAnswer / body.length).toFixed(2)}× the body, ${((peakAtAnswer - baseline) / body.length).toFixed(2)}× above the baseline`)
  if (process.env.BENCH_ANSWER_ONLY) throw new AnswerOnly()

  const stopAfterParts = Number(process.env.BENCH_STOP_AFTER_PARTS ?? Infinity)
  let cutAfter: number | undefined
  let lastReport = performance.now()
  for (;;) {
    const [row] = (await db.query("select processed_at is not null as done, outcome from inbox where id = $1", [answer.inbox_id])).rows
    if (row.done) break
    if (Number.isFinite(stopAfterParts)) {
      const done = Number((await db.query("select count(*) as n from inbox where part_of = $1 and processed_at is not null", [answer.inbox_id])).rows[0].n)
      if (done >= stopAfterParts) {
        cutAfter = done
        break
      }
    }
    if (performance.now() - lastReport > 15_000) {
      const parts = (await db.query("select count(*) filter (where processed_at is not null) as done, count(*) as total from inbox where part_of = $1", [answer.inbox_id])).rows[0]
      console.log(`  … ${parts.done}/${parts.total} parts committed, RSS ${mb(await rssOf(server.pid!))}, peak ${mb(peak)}`)
      lastReport = performance.now()
    }
    await Bun.sleep(200)
  }
  const committed = performance.now() - start
  sampling = false
  await sampler
  const { outcome } = (await db.query("select outcome from inbox where id = $1", [answer.inbox_id])).rows[0]
  const samples = Number((await db.query("select count(*) as n from samples")).rows[0].n)

  if (cutAfter !== undefined) console.log(`stopped after ${(committed / 1000).toFixed(1)} s with ${cutAfter} parts committed (BENCH_STOP_AFTER_PARTS), ${samples} samples stored`)
  else console.log(`all data committed after ${(committed / 1000).toFixed(1)} s: ${outcome.parts} parts, ${outcome.created} records created, ${samples} samples stored`)
  console.log(`peak RSS while processing, after the 200: ${mb(processingPeak)}, above the baseline ${mb(processingPeak - baseline)} = ${((processingPeak - baseline) / body.length).toFixed(2)}× the body`)
  console.log(`peak RSS ${mb(peak)} = ${(peak / body.length).toFixed(2)}× the body; above the baseline: ${mb(peak - baseline)} = ${((peak - baseline) / body.length).toFixed(2)}× the body`)
  const above = (peak - baseline) / body.length
  report([
    {
      path: `${mb(body.length)} body, memory above idle`,
      wearflow: `+${mb(peak - baseline)} (peak ${mb(peak)})`,
      anchor: `bare Bun, text + JSON.parse: +${mb(bareParse)}`,
      ratio: above,
      target: "≤ 3× the body",
      met: above <= 3
    },
    {
      path: `${mb(body.length)} body, ack and committed`,
      wearflow: `200 in ${(answered / 1000).toFixed(1)} s, ${cutAfter !== undefined ? `${cutAfter} parts stored in` : "stored in"} ${(committed / 1000).toFixed(1)} s`,
      anchor: "—",
      target: "—"
    }
  ])
} catch (e) {
  if (!(e instanceof AnswerOnly)) throw e
} finally {
  sampling = false
  server.kill("SIGTERM")
  await new Promise((r) => server.once("exit", r))
  await db.end()
  await stopPostgres()
}
