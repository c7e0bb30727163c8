/**
 * What the ingest and scale-out benchmarks share: the bare receiver (the anchor: Bun, one
 * INSERT, answer), the real server spawned on a bench database, Garmin users linked through
 * the API (so their items are stored, not parked), one-daily PUSH bodies, and closed-loop
 * posting and drain counting against the database.
 */
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { startBareReceiver as startBare } from "./bare-receiver.ts"
import { startBenchServer } from "./server.ts"

const root = new URL("..", import.meta.url).pathname
export const CLIENT_ID = "bench"
export const API_KEY = "bench"
const daily = JSON.parse(fs.readFileSync(path.join(root, "providers/garmin/testing/fixtures/dailies.json"), "utf8")).dailies[0] as Record<string, unknown>
/** Records one fixture daily normalizes into (an activity summary and a heart-rate series). */
export const RECORDS_PER_DAILY = 2

export const garminUserId = (i: number) => `bench-garmin-user-${i}`

/** Body `i`: one daily of linked user `i mod users`, its own summary (so each one is created). */
export const dailyBody = (i: number, users: number) =>
  JSON.stringify({ dailies: [{ ...daily, userId: garminUserId(i % users), summaryId: `bench-daily-${i}` }] })

/** The anchor: the minimum a durable webhook receiver does (bench/bare-receiver.ts). */
export const startBareReceiver = (url: string) => startBare(url, CLIENT_ID)

export interface WearflowServer {
  readonly baseUrl: string
  readonly pushUrl: string
  readonly process: ChildProcess
  readonly stop: () => Promise<void>
}

/** Spawns apps/server/main.ts on `databaseUrl` and waits until it serves. */
export const startWearflow = async (options: { readonly databaseUrl: string; readonly dataDir: string; readonly env?: Record<string, string> }): Promise<WearflowServer> => {
  const server = await startBenchServer({
    DATABASE_URL: options.databaseUrl,
    GARMIN_CLIENT_ID: CLIENT_ID,
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: options.dataDir,
    // No backfill workflows for the linked users, and no pull ever leaves the machine.
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    GARMIN_API_URL: "http://127.0.0.1:9",
    ...options.env
  })
  return { baseUrl: server.url, pushUrl: `${server.url}/api/v1/webhooks/garmin/push`, process: server.process, stop: server.stop }
}

/** Creates `count` users and links each to Garmin user `garminUserId(i)`, through the API. */
export const linkGarminUsers = async (baseUrl: string, count: number) => {
  const call = async (route: string, body: unknown) => {
    const response = await fetch(`${baseUrl}${route}`, {
      method: "POST",
      headers: { "x-api-key": API_KEY, "content-type": "application/json" },
      body: JSON.stringify(body)
    })
    if (response.status !== 200) throw new Error(`${route}: ${response.status} ${await response.text()}`)
    return (await response.json()) as { user_id: string }
  }
  for (let i = 0; i < count; i++) {
    const { user_id } = await call("/v2/user", { client_user_id: `bench-user-${i}` })
    await call(`/v2/user/${user_id}/connections/garmin`, { provider_user_id: garminUserId(i) })
  }
}

export const pushHeaders = { "garmin-client-id": CLIENT_ID, "content-type": "application/json" }

/** Posts `body(i)` for i in [from, from + count) to `urls` (round robin) with `concurrency` clients; answers req/s. */
export const postAll = async (urls: ReadonlyArray<string>, from: number, count: number, body: (i: number) => string, concurrency = 32) => {
  let next = from
  let failures = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < from + count; i = next++) {
        const response = await fetch(urls[i % urls.length]!, { method: "POST", headers: pushHeaders, body: body(i) })
        await response.arrayBuffer()
        if (response.status !== 200) failures++
      }
    })
  )
  if (failures > 0) throw new Error(`${failures} posts were not answered 200`)
  return count / ((performance.now() - started) / 1000)
}

/** Posts to `urls` (round robin) with `concurrency` clients for `seconds`; answers req/s. */
export const saturate = async (urls: ReadonlyArray<string>, seconds: number, body: (i: number) => string, concurrency = 32) => {
  let sent = 0
  let failures = 0
  const end = performance.now() + seconds * 1000
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const i = sent++
        const response = await fetch(urls[i % urls.length]!, { method: "POST", headers: pushHeaders, body: body(i) })
        await response.arrayBuffer()
        if (response.status !== 200) failures++
      }
    })
  )
  if (failures > 0) throw new Error(`${failures} posts were not answered 200`)
  return sent / seconds
}

/** The pipeline's progress as the database has it: inbox bodies not yet processed, record events in the outbox. */
export const progress = async (db: pg.Client) => {
  const { rows } = await db.query<{ waiting: number; events: number }>(
    "select (select count(*)::int from inbox where processed_at is null) as waiting, (select count(*)::int from outbox where record_id is not null) as events"
  )
  return rows[0]!
}

/** Waits until every inbox body is processed and `events` record events are in the outbox; answers when (performance.now()). */
export const drained = async (db: pg.Client, events: number, timeoutMs = 300_000) => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const now = performance.now()
    const p = await progress(db)
    if (p.waiting === 0 && p.events >= events) return now
    if (now > deadline) throw new Error(`not drained in time: ${p.waiting} bodies waiting, ${p.events} of ${events} events`)
    await Bun.sleep(50)
  }
}

/**
 * The drain rate while the inbox is full, once it is empty: the last `total` bodies processed
 * per second between the 10th and the 90th percentile of their processing times (start-up and
 * the tail left out).
 */
export const drainRate = async (db: pg.Client, total: number, timeoutMs = 300_000) => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const { waiting } = await progress(db)
    if (waiting === 0) break
    if (performance.now() > deadline) throw new Error(`not drained in time: ${waiting} of ${total} bodies waiting`)
    await Bun.sleep(50)
  }
  // From the database's own processing times, between the 10th and the 90th percentile of the
  // bodies: polling would miss a drain that ends before the first poll (the workers start with
  // the process, before it answers).
  const { rows } = await db.query<{ seconds: number }>(
    `select extract(epoch from percentile_disc(0.9) within group (order by processed_at) - percentile_disc(0.1) within group (order by processed_at))::float8 as seconds
     from (select processed_at from inbox where processed_at is not null and body <> '' order by id desc limit $1) b`,
    [total]
  )
  return (total * 0.8) / Math.max(rows[0]!.seconds, 0.001)
}

export const connect = async (url: string) => {
  const db = new pg.Client({ connectionString: url })
  db.on("error", () => {})
  await db.connect()
  return db
}
