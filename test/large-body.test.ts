/**
 * One large notification must not stall ingestion. Against the real server with a short
 * queue lock expiration (2 s): a large body is stored as bounded parts, each processed once,
 * while other users' notifications go between them; a job that runs for several lock
 * expirations (a slow PING pull) is run by one worker only; what a body's answer and log
 * line list is capped; /health says when the ingest backlog stops moving.
 */
import { readFileSync } from "node:fs"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { eventually, type RunningServer } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { inboxOutcomes, sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "large-consumer-key", consumerSecret: "large-consumer-secret" }
const API_KEY = "large-api-key"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const NOW = Math.floor(Date.now() / 1000)
const PART_ITEMS = 5

let stack: GarminStack
let garmin: FakeGarmin
let server: RunningServer
let db: pg.Client

const api = wearflowApi(() => server.baseUrl, API_KEY)
const outcomeOf = inboxOutcomes(() => db, 60_000)
const push = (body: unknown) => sendGarminNotification(server.baseUrl, CONSUMER.consumerKey, "push", body)
const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)

const newUser = async (clientUserId: string, garminUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: clientUserId })
  expect((await api("POST", `/v2/user/${created.body.user_id}/connections/garmin`, { provider_user_id: garminUserId })).status).toBe(200)
  return created.body.user_id as string
}

/** Dailies for `garminUserId`, each with 300 heart-rate samples. */
const dailies = (garminUserId: string, prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    ...daily,
    userId: garminUserId,
    summaryId: `${prefix}-${i}`,
    calendarDate: new Date((1452470400 + i * 86_400) * 1000).toISOString().slice(0, 10),
    startTimeInSeconds: 1452470400 + i * 86_400,
    timeOffsetHeartRateSamples: Object.fromEntries(Array.from({ length: 300 }, (_, s) => [String(s * 15), 50 + ((i + s) % 70)]))
  }))

beforeAll(async () => {
  stack = await startGarminStack({
    name: "large-body",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: {
      WEARFLOW_QUEUE_LOCK_EXPIRATION: "2 seconds",
      WEARFLOW_INGEST_PART_ITEMS: String(PART_ITEMS),
      WEARFLOW_INGEST_STALL_AFTER: "2 seconds",
      WEARFLOW_PULL_BACKOFF: "50 millis"
    }
  })
  ;({ garmin, server, db } = stack)
})

afterAll(async () => {
  await stack?.close()
})

describe("one large notification", () => {
  it("is stored as bounded parts, each processed exactly once, while other users' notifications go between them", async () => {
    const big = await newUser("large-big", "garmin-big")
    const small = await newUser("large-small", "garmin-small")
    const items = 400
    const response = await push({ dailies: dailies("garmin-big", "big", items) })
    expect(response.status).toBe(200)
    const { inbox_id: bodyId } = (await response.json()) as { inbox_id: number }
    // Another user's notification, sent once the large one was acknowledged.
    const smallResponse = await push({ dailies: dailies("garmin-small", "small", 2) })
    const { inbox_id: smallId } = (await smallResponse.json()) as { inbox_id: number }

    const whole = await eventually(async () => {
      const row = (await db.query("select outcome, processed_at, received_at from inbox where id = $1 and processed_at is not null", [bodyId])).rows[0]
      return row as { outcome: Record<string, number>; processed_at: Date; received_at: Date } | undefined
    }, 180_000)
    expect(await outcomeOf(smallId)).toMatchObject({ created: 4, errors: [] })

    // Bounded parts, together holding every item once.
    const parts = (await db.query("select id, item_count, outcome, processed_at from inbox where part_of = $1 order by part_index", [bodyId])).rows as Array<{
      id: string
      item_count: number
      outcome: { items: number; created: number; updated: number; unchanged: number; errors: Array<unknown> }
      processed_at: Date
    }>
    expect(parts.length).toBe(items / PART_ITEMS)
    expect(parts.every((p) => p.item_count === PART_ITEMS)).toBe(true)
    // Each part: its records created once (an activity and a heart-rate batch per daily), never seen again.
    for (const part of parts) expect(part.outcome).toMatchObject({ items: PART_ITEMS, created: 2 * PART_ITEMS, updated: 0, unchanged: 0, errors: [] })
    const jobs = (await db.query("select attempts, completed from ingest_queue where id = any($1)", [parts.map((p) => `inbox-${p.id}`)])).rows
    expect(jobs.length).toBe(parts.length)
    expect(jobs.every((j) => j.completed && j.attempts === 1)).toBe(true)
    expect(whole.outcome).toMatchObject({ parts: parts.length, items, created: 2 * items, updated: 0, unchanged: 0 })

    // The store holds each record and sample once, with one event per record.
    expect(await count("select count(*) as n from records where user_id = $1", [big])).toBe(2 * items)
    expect(await count("select count(*) as n from samples where user_id = $1", [big])).toBe(300 * items)
    expect(await count("select count(*) as n from outbox where user_id = $1 and record_id is not null", [big])).toBe(2 * items)
    expect(await count("select count(distinct record_id) as n from outbox where user_id = $1", [big])).toBe(2 * items)
    expect(await count("select count(*) as n from records where user_id = $1", [small])).toBe(4)

    // The large body outlasted the lock expiration; the other notification did not wait for all of it.
    expect(whole.processed_at.getTime() - whole.received_at.getTime()).toBeGreaterThan(2000)
    const smallDone = (await db.query("select processed_at from inbox where id = $1", [smallId])).rows[0].processed_at as Date
    expect(smallDone.getTime()).toBeLessThan(Math.max(...parts.map((p) => p.processed_at.getTime())))
  })

  it("a job that runs for several lock expirations (a slow PING pull) is run by one worker, once", async () => {
    const user = garmin.addUser("garmin-slow", {
      oauth2: { accessToken: "access-slow", accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: "refresh-slow", refreshTokenExpiresAt: Date.now() + 90 * 86_400_000 }
    })
    user.data.dailies = [{ ...daily, userId: "garmin-slow", summaryId: "slow-1", calendarDate: "2024-04-01" }]
    const created = await api("POST", "/v2/user", { client_user_id: "large-slow" })
    await api("POST", `/v2/user/${created.body.user_id}/connections/garmin`, {
      provider_user_id: "garmin-slow",
      oauth2: { access_token: "access-slow", refresh_token: "refresh-slow" }
    })
    // Garmin takes three lock expirations to answer the pull.
    garmin.inject({ path: "/wellness-api/rest/dailies", delayMs: 6000 })
    const pullsBefore = garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").length
    const response = await sendGarminNotification(server.baseUrl, CONSUMER.consumerKey, "ping", {
      dailies: [{ userId: "garmin-slow", callbackURL: garmin.pingUrl("dailies", { userId: "garmin-slow" }, NOW - 3600, NOW) }]
    })
    const { inbox_id: inboxId } = (await response.json()) as { inbox_id: number }
    expect(await outcomeOf(inboxId)).toMatchObject({ pulled: 1, errors: [] })
    expect(garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").length - pullsBefore).toBe(1)
    // The job is marked done just after its outcome is written.
    const job = await eventually(async () => {
      const [row] = (await db.query("select attempts, completed from ingest_queue where id = $1", [`inbox-${inboxId}`])).rows
      return row?.completed ? row : undefined
    })
    expect(job).toEqual({ attempts: 1, completed: true })
    expect(server.logs()).not.toContain("its lease was lost")
  })
})

describe("slow pulls", () => {
  it("hold up only the jobs taken with them: notifications after them are processed meanwhile", async () => {
    const slowUsers = ["garmin-held-1", "garmin-held-2"]
    for (const id of slowUsers) {
      const user = garmin.addUser(id, {
        oauth2: { accessToken: `access-${id}`, accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: `refresh-${id}`, refreshTokenExpiresAt: Date.now() + 90 * 86_400_000 }
      })
      user.data.dailies = [{ ...daily, userId: id, summaryId: `${id}-1`, calendarDate: "2024-05-01" }]
      const created = await api("POST", "/v2/user", { client_user_id: `large-${id}` })
      await api("POST", `/v2/user/${created.body.user_id}/connections/garmin`, {
        provider_user_id: id,
        oauth2: { access_token: `access-${id}`, refresh_token: `refresh-${id}` }
      })
    }
    const liveUser = await newUser("large-held-live", "garmin-held-live")
    // Garmin holds both pulls until the end of the test.
    let answer = () => {}
    const hold = new Promise<void>((resolve) => (answer = resolve))
    garmin.inject({ path: "/wellness-api/rest/dailies", hold, times: 2 })
    const pulls = () => garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").length
    const held: Array<number> = []
    try {
      // One at a time, each taken once the last one's pull is under way: each is a batch of its own.
      for (const id of slowUsers) {
        const before = pulls()
        const response = await sendGarminNotification(server.baseUrl, CONSUMER.consumerKey, "ping", {
          dailies: [{ userId: id, callbackURL: garmin.pingUrl("dailies", { userId: id }, NOW - 3600, NOW) }]
        })
        held.push(((await response.json()) as { inbox_id: number }).inbox_id)
        await eventually(async () => (pulls() > before ? true : undefined))
      }
      const response = await push({ dailies: dailies("garmin-held-live", "held-live", 1) })
      const { inbox_id: liveId } = (await response.json()) as { inbox_id: number }
      expect(await outcomeOf(liveId)).toMatchObject({ created: 2, errors: [] })
      // Both pulls are still held: the notification went past them.
      const waiting = await db.query("select count(*)::int as n from inbox where id = any($1) and processed_at is null", [held])
      expect(waiting.rows[0].n).toBe(2)
      expect(await count("select count(*)::int as n from records where user_id = $1", [liveUser])).toBe(2)
    } finally {
      answer()
    }
    for (const id of held) expect(await outcomeOf(id)).toMatchObject({ pulled: 1, errors: [] })
  })
})

describe("what a notification's answer lists", () => {
  it("lists at most 100 unknown keys, and counts the rest, in the answer and the log; invalid items are counted on the stored body", async () => {
    const body: Record<string, unknown> = {}
    for (let i = 0; i < 5000; i++) body[`unknownKey${i}`] = i
    body[`k${"x".repeat(5000)}`] = 1
    body.dailies = Array.from({ length: 300 }, () => "not-an-object")
    const response = await push(body)
    expect(response.status).toBe(200)
    const answer = (await response.json()) as { inbox_id: number; ignored_keys: Array<string>; ignored_keys_omitted: number; errors: Array<unknown>; errors_omitted: number }
    expect(answer.ignored_keys.length).toBe(100)
    expect(answer.ignored_keys_omitted).toBe(4901)
    // Items are checked by the ingest worker: each of the 300 is a problem of its part.
    expect([answer.errors, answer.errors_omitted]).toEqual([[], 0])
    expect(await outcomeOf(answer.inbox_id)).toMatchObject({ parts: 300 / PART_ITEMS, items: 300, errors: 300 })
    expect(server.logs()).not.toContain("unknownKey4999")
    const line = server.logs().split("\n").find((l) => l.includes("unknownKey99"))!
    expect(line.length).toBeLessThan(10_000)
  })
})

describe("/health", () => {
  it("reports the ingest backlog, and fails while it does not move", async () => {
    const healthy = await eventually(async () => {
      const response = await fetch(`${server.baseUrl}/health`)
      const body = (await response.json()) as { ingest: { status: string; pending_jobs: number } }
      return response.status === 200 ? body : undefined
    }, 30_000)
    expect(healthy.ingest.status).toBe("ok")
    // A job no worker can take (held by a live process elsewhere, as it were), waiting for a while.
    await db.query(`insert into ingest_queue (id, queue_name, element, completed, attempts, acquired_at, acquired_by, created_at, updated_at)
                    values ('stuck-job', 'ingest', '{"inboxId":0}', false, 0, now() + interval '1 hour', gen_random_uuid(), now() - interval '1 hour', now())`)
    const stalled = await eventually(async () => {
      const response = await fetch(`${server.baseUrl}/health`)
      const body = (await response.json()) as { status: string; ingest: { status: string; pending_jobs: number; oldest_job_age_seconds: number } }
      return response.status === 503 ? body : undefined
    }, 30_000)
    expect(stalled.ingest.status).toBe("stalled")
    expect(stalled.ingest.oldest_job_age_seconds).toBeGreaterThanOrEqual(3600)
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text()
    expect(metrics).toMatch(/wearflow_ingest_oldest_job_age_seconds \d{4,}/)

    await db.query("delete from ingest_queue where id = 'stuck-job'")
    await eventually(async () => ((await fetch(`${server.baseUrl}/health`)).status === 200 ? true : undefined), 30_000)
  })
})
