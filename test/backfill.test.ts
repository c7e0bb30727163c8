/**
 * Backfills end to end: the real server and a fake Garmin that answers backfill requests and
 * then delivers the history as PUSH notifications. A connection starts a chain of requests,
 * one window at a time; each resource's `historical.data.*.created` goes out only once its
 * data is stored; Garmin's error answers, the shared rate limit, a kill -9 in the middle and
 * two processes on one database are each checked against the fake's request log.
 */
import { randomBytes } from "node:crypto"
import type pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { backfillFinished, connectedUser, DAY, NOW } from "./support/backfill.ts"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "backfill-consumer-key", consumerSecret: "backfill-consumer-secret" }
const API_KEY = "backfill-api-key"

/** Three types, 40 days: dailies and sleeps one window each, activities two (30 + 10 days). */
const BACKFILL_ENV = {
  WEARFLOW_BACKFILL_ON_CONNECT: "true",
  WEARFLOW_BACKFILL_DAYS: "40",
  WEARFLOW_BACKFILL_TYPES: "dailies,sleeps,activities",
  WEARFLOW_BACKFILL_QUIET_PERIOD: "2 seconds",
  WEARFLOW_BACKFILL_SETTLE: "300 millis",
  WEARFLOW_BACKFILL_BUDGET_DAYS: "10000",
  WEARFLOW_BACKFILL_RETRY_BACKOFF: "200 millis"
}

type Api = ReturnType<typeof wearflowApi>

interface Harness {
  readonly stack: GarminStack
  readonly garmin: FakeGarmin
  readonly db: pg.Client
  readonly api: Api
}

const harness = async (name: string, env: Record<string, string> = {}, replicas = 1): Promise<Harness> => {
  const stack = await startGarminStack({ name, consumer: CONSUMER, apiKey: API_KEY, replicas, env: { ...BACKFILL_ENV, ...env } })
  stack.garmin.state.backfill.deliverTo = `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`
  stack.garmin.state.backfill.deliveryDelayMs = 150
  return { stack, garmin: stack.garmin, db: stack.db, api: wearflowApi(() => stack.server.baseUrl, API_KEY) }
}

const connected = (h: Harness, name: string, options: Parameters<typeof connectedUser>[3] & { api?: Api } = {}) =>
  connectedUser(h.garmin, options.api ?? h.api, name, options)


const requestsOf = (garmin: FakeGarmin, garminId: string) => garmin.state.backfillRequests.filter((r) => r.userId === garminId)

const eventsOf = async (db: pg.Client, userId: string, pattern: string) =>
  (await db.query("select position::bigint as position, event_type, payload from outbox where user_id = $1 and event_type like $2 order by position", [userId, pattern])).rows as Array<{
    position: string
    event_type: string
    payload: any
  }>

/** No (type, range) was ever requested twice for the Garmin user. */
const expectNoRepeats = (garmin: FakeGarmin, garminId: string) => {
  const keys = requestsOf(garmin, garminId).filter((r) => r.status !== 429 && r.status < 500).map((r) => `${r.type}:${r.start}:${r.end}`)
  expect(new Set(keys).size).toBe(keys.length)
}

describe("a backfill chain on one server", () => {
  let h: Harness
  beforeAll(async () => {
    h = await harness("backfill")
  })
  afterAll(async () => {
    await h?.stack.close()
  })

  it("requests each window in turn once its data arrived, then announces each resource with its real range", async () => {
    const { userId, garminId, seeded } = await connected(h, "chain")
    // A live notification during the backfill is processed normally and does not count as history.
    const live = { ...seeded.dailies!.at(-1)!, summaryId: `live-${garminId}`, startTimeInSeconds: NOW - 600, calendarDate: new Date((NOW - 600) * 1000).toISOString().slice(0, 10), userId: garminId }
    await eventually(async () => (requestsOf(h.garmin, garminId).length > 0 ? true : undefined), 20_000)
    expect((await sendGarminNotification(h.stack.server.baseUrl, CONSUMER.consumerKey, "push", { dailies: [live] })).status).toBe(200)

    const view = await backfillFinished(h.api, userId)
    expect(view.status).toBe("done")
    const pulls = view.historical_pulls
    expect(Object.keys(pulls).sort()).toEqual(["activity", "sleep", "workouts"])
    for (const pull of Object.values(pulls)) {
      expect(pull.status).toBe("success")
      expect(pull.error_details).toBeNull()
      expect(pull.timeline.started_at).not.toBeNull()
      expect(pull.timeline.ended_at).not.toBeNull()
      expect(Date.parse(pull.range_end) - Date.parse(pull.range_start)).toBe(40 * DAY * 1000)
    }
    // The live day is stored too (it is the last seeded day when the test runs just after midnight UTC).
    expect(pulls.activity.days_with_data).toBe(new Set([...seeded.dailies!.map((d) => d.calendarDate), live.calendarDate]).size)
    expect(pulls.sleep.days_with_data).toBe(seeded.sleeps!.length)
    expect(pulls.workouts.windows).toEqual({ total: 2, done: 2 })

    // One request per window, in the planned order, each after the previous window's data.
    const requests = requestsOf(h.garmin, garminId)
    expect(requests.map((r) => [r.type, r.status])).toEqual([["dailies", 202], ["sleeps", 202], ["activities", 202], ["activities", 202]])
    expect(requests.map((r) => (r.end! - r.start!) / DAY)).toEqual([40, 40, 30, 10])
    // A window's deliveries are told apart by the range they answer, so this holds for two
    // windows of one type (the activities) as for windows of different types.
    const deliveries = h.garmin.state.deliveries.filter((d) => d.userId === garminId)
    for (let i = 1; i < requests.length; i++) {
      const previous = requests[i - 1]!
      const itsData = deliveries.filter((d) => d.type === previous.type && d.start === previous.start && d.end === previous.end)
      expect(itsData.length, `window ${i - 1} (${previous.type}) delivered`).toBeGreaterThan(0)
      for (const d of itsData) expect(d.at, `window ${i} requested after window ${i - 1}'s data`).toBeLessThanOrEqual(requests[i]!.at)
    }

    // Each historical event comes after every record of its resource, with the real range.
    for (const resource of ["activity", "sleep", "workouts"]) {
      const [notice, ...more] = await eventsOf(h.db, userId, `historical.data.${resource}.created`)
      expect(more).toEqual([])
      expect(notice!.payload.data).toMatchObject({ user_id: userId, is_final: true, provider: "garmin", start_date: pulls[resource].range_start, end_date: pulls[resource].range_end })
      const data = await eventsOf(h.db, userId, `daily.data.${resource}.%`)
      expect(data.length).toBeGreaterThan(0)
      expect(BigInt(notice!.position)).toBeGreaterThan(BigInt(data.at(-1)!.position))
    }

    // The history's data events are marked, so a sink can opt out of them (push_historical_data).
    const marks = (await h.db.query<{ historical: boolean; n: number }>(
      "select historical, count(*)::int as n from outbox where user_id = $1 and event_type like 'daily.data.%' group by historical", [userId]
    )).rows
    expect(marks.find((m) => m.historical)?.n).toBeGreaterThanOrEqual(seeded.dailies!.length + seeded.sleeps!.length)
    const notices = await h.db.query("select 1 from outbox where user_id = $1 and event_type like 'historical.%' and historical", [userId])
    expect(notices.rowCount).toBe(0)
  })

  it("a connection made through the OAuth flow starts its backfill too", async () => {
    const garminId = `garmin-oauth-${randomBytes(3).toString("hex")}`
    h.garmin.addUser(garminId)
    const seeded = h.garmin.seedHistory(garminId, { from: NOW - 40 * DAY, to: NOW - DAY, types: ["dailies"] })
    h.garmin.state.nextOAuth2User = garminId
    const created = await h.api("POST", "/v2/user", { client_user_id: "oauth-flow" })
    const userId = created.body.user_id as string
    const link = await h.api("POST", "/v2/link/token", { user_id: userId, provider: "garmin" })
    const visit = (url: string) => fetch(url, { redirect: "manual" }).then((r) => r.headers.get("location")!)
    const consent = await visit(link.body.link_web_url)
    const callback = new URL(await visit(consent))
    expect((await fetch(`${h.stack.server.baseUrl}${callback.pathname}${callback.search}`, { redirect: "manual" })).status).toBe(200)
    const view = await backfillFinished(h.api, userId)
    expect(view.origin).toBe("connection")
    expect(view.historical_pulls.activity.status).toBe("success")
    expect(view.historical_pulls.activity.days_with_data).toBe(seeded.dailies!.length)
    expect(requestsOf(h.garmin, garminId).map((r) => r.type)).toEqual(["dailies", "sleeps", "activities", "activities"])
  })

  it("explains a re-run over ranges already requested instead of sending them again", async () => {
    const { userId, garminId } = await connected(h, "rerun")
    await backfillFinished(h.api, userId)
    const before = requestsOf(h.garmin, garminId).length
    // All 40 days were asked for minutes ago (the minutes since arrived live): nothing to send.
    const same = await h.api("POST", `/v2/user/${userId}/backfill/garmin`, { types: ["dailies"], days: 40 })
    expect(same.status).toBe(409)
    expect(same.body.message).toMatch(/already asked for all of this history.*reconnect/)
    expect(same.body.already_requested).toEqual([expect.objectContaining({ type: "dailies", resource: "activity" })])
    // Deeper: only the 10 older days go; the 40 already asked for are explained.
    const deeper = await h.api("POST", `/v2/user/${userId}/backfill/garmin`, { types: ["dailies"], days: 50 })
    expect(deeper.status).toBe(202)
    expect(deeper.body.planned).toHaveLength(1)
    expect(Date.parse(deeper.body.planned[0].range_end) - Date.parse(deeper.body.planned[0].range_start)).toBeLessThan(10 * DAY * 1000 + 600_000)
    expect(deeper.body.already_requested).toEqual([expect.objectContaining({ type: "dailies" })])
    expect(deeper.body.message).toMatch(/already requested/)
    await backfillFinished(h.api, userId)
    const sent = requestsOf(h.garmin, garminId).slice(before)
    expect(sent.map((r) => r.type)).toEqual(["dailies"])
    expect(sent[0]!.end).toBeLessThanOrEqual(NOW - 39 * DAY)
    // Running one while another runs is refused, and explained. Garmin holds the running one's
    // request until it is cancelled, so it is still running however slow the machine.
    let release!: () => void
    h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/sleeps", hold: new Promise<void>((resolve) => (release = resolve)) })
    try {
      const seen = h.garmin.requests.length
      const third = await h.api("POST", `/v2/user/${userId}/backfill/garmin`, { types: ["sleeps"], days: 60 })
      expect(third.status).toBe(202)
      await eventually(async () => (h.garmin.requests.slice(seen).some((r) => r.path === "/wellness-api/rest/backfill/sleeps") ? true : undefined))
      const fourth = await h.api("POST", `/v2/user/${userId}/backfill/garmin`, { types: ["sleeps"], days: 70 })
      expect(fourth.status).toBe(409)
      expect(fourth.body.message).toMatch(/already running/)
      const cancelled = await h.api("DELETE", `/v2/user/${userId}/backfill/garmin`)
      expect(cancelled.status).toBe(200)
      expect(cancelled.body.status).toBe("cancelled")
    } finally {
      release()
    }
    expect((await h.api("DELETE", `/v2/user/${userId}/backfill/garmin`)).status).toBe(404)
    expect((await h.api("POST", `/v2/user/${userId}/backfill/garmin`, { types: ["nope"] })).status).toBe(404)
  })

  it("409 from Garmin: that window is done with no new data and is never retried", async () => {
    h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/sleeps", status: 409, body: JSON.stringify({ errorMessage: "Duplicate backfill request" }) })
    const { userId, garminId } = await connected(h, "dup")
    const view = await backfillFinished(h.api, userId)
    expect(view.historical_pulls.sleep.status).toBe("success")
    expect(requestsOf(h.garmin, garminId).filter((r) => r.type === "sleeps")).toHaveLength(0) // the injected answer never reached the handler
    const windows = (await h.db.query("select w.type, w.status, w.attempts from backfill_windows w join backfills b on b.id = w.backfill_id where b.user_id = $1 and w.type = 'sleeps'", [userId])).rows
    expect(windows).toEqual([{ type: "sleeps", status: "already_requested", attempts: 1 }])
    expect(await eventsOf(h.db, userId, "historical.data.sleep.created")).toHaveLength(1)
  })

  it("an answer lost on the way (Garmin took the request, Wearflow saw a 502): the retry's 409 waits for the data", async () => {
    h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/sleeps", status: 502, handled: true })
    const { userId, garminId, seeded } = await connected(h, "lost-answer")
    const view = await backfillFinished(h.api, userId)
    expect(Object.values(view.historical_pulls).map((p) => p.status)).toEqual(["success", "success", "success"])
    // Garmin's log: it took the first sleeps request (Wearflow saw 502), and the retry overlaps it.
    expect(requestsOf(h.garmin, garminId).filter((r) => r.type === "sleeps").map((r) => r.status)).toEqual([202, 409])
    const [window] = (await h.db.query("select w.status, w.completion, w.items from backfill_windows w where w.user_id = $1 and w.type = 'sleeps'", [userId])).rows
    expect(window).toMatchObject({ status: "complete", completion: "data" })
    expect(window.items).toBe(seeded.sleeps!.length)
    expect(view.historical_pulls.sleep.days_with_data).toBe(seeded.sleeps!.length)
    // The resource's notice comes after its data, not when the 409 came.
    const [notice] = await eventsOf(h.db, userId, "historical.data.sleep.created")
    const data = await eventsOf(h.db, userId, "daily.data.sleep.%")
    expect(data).toHaveLength(seeded.sleeps!.length)
    expect(BigInt(notice!.position)).toBeGreaterThan(BigInt(data.at(-1)!.position))
  })

  it("403 (no HISTORICAL_DATA_EXPORT): stops the chain, marks every resource failed and tells the team", async () => {
    const { userId, garminId } = await connected(h, "forbidden", { permissions: ["ACTIVITY_EXPORT", "HEALTH_EXPORT"] })
    const view = await backfillFinished(h.api, userId)
    expect(requestsOf(h.garmin, garminId).map((r) => r.status)).toEqual([403])
    for (const pull of Object.values(view.historical_pulls)) {
      expect(pull.status).toBe("failure")
      expect(pull.error_details).toMatch(/403/)
    }
    const [error] = await eventsOf(h.db, userId, "provider.connection.error")
    expect(error!.payload.data).toMatchObject({ error_type: "required_scopes_not_granted", provider: { slug: "garmin" } })
    expect(await eventsOf(h.db, userId, "historical.data.%")).toEqual([])
  })

  it("429 and 5xx: waits and retries the same window, then goes on", async () => {
    h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/dailies", status: 429, headers: { "retry-after": "1" } })
    h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/sleeps", status: 503 })
    h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/sleeps", status: 502 })
    const { userId, garminId } = await connected(h, "flaky")
    const view = await backfillFinished(h.api, userId)
    expect(Object.values(view.historical_pulls).map((p) => p.status)).toEqual(["success", "success", "success"])
    const attempts = (await h.db.query("select w.type, w.attempts from backfill_windows w join backfills b on b.id = w.backfill_id where b.user_id = $1 order by w.seq", [userId])).rows
    expect(attempts).toEqual([{ type: "dailies", attempts: 2 }, { type: "sleeps", attempts: 3 }, { type: "activities", attempts: 1 }, { type: "activities", attempts: 1 }])
    expect(requestsOf(h.garmin, garminId).map((r) => r.type)).toEqual(["dailies", "sleeps", "activities", "activities"])
  })

  // Garmin's wording of this 400 is unverified: the same outcome whichever way it names the limit.
  const minStartWordings: ReadonlyArray<[string, string, (min: number) => string]> = [
    ["ISO 8601", "minstart-iso", (min) => `summaryStartTimeInSeconds is before the min start time of ${new Date(min * 1000).toISOString()}`],
    ["epoch seconds, other words", "minstart-epoch", (min) => `Invalid summaryStartTimeInSeconds: must be >= ${min}`]
  ]
  for (const [wording, name, message] of minStartWordings) {
    it(`400 min start (${wording}): narrows the window to what Garmin allows, retries once, and remembers it`, async () => {
      await h.db.query("delete from backfill_earliest")
      h.garmin.state.backfill.minStartMessage = message
      const allowedFrom = NOW - 20 * DAY
      // The limit is Garmin's before the connection is made, so the very first request meets it.
      const { userId, garminId } = await connected(h, name, { backfillMinStartTimeInSeconds: allowedFrom })
      const view = await backfillFinished(h.api, userId)
      expect(view.status).toBe("done")
      const requests = requestsOf(h.garmin, garminId)
      expect(requests.map((r) => [r.type, r.status])).toEqual([
        ["dailies", 400], ["dailies", 202],
        ["sleeps", 400], ["sleeps", 202],
        ["activities", 400], ["activities", 202] // the older activities window lies wholly before the limit: skipped
      ])
      expect(requests[1]!.start).toBe(allowedFrom)
      for (const pull of Object.values(view.historical_pulls)) {
        expect(pull.status).toBe("success")
        expect(pull.range_start).toBe(new Date(allowedFrom * 1000).toISOString())
      }
      const learned = (await h.db.query("select type, max_days from backfill_earliest order by type")).rows
      // Garmin allowed 20 days back: later connections plan no further.
      expect(learned).toEqual([{ type: "activities", max_days: 20 }, { type: "dailies", max_days: 20 }, { type: "sleeps", max_days: 20 }])
    })
  }

  it("400 min start naming no instant: falls back to 30 days before the connection", async () => {
    await h.db.query("delete from backfill_earliest")
    h.garmin.state.backfill.minStartMessage = () => "Requested data is too far in the past"
    const { userId, garminId } = await connected(h, "minstart-vague", { backfillMinStartTimeInSeconds: NOW - 35 * DAY })
    const view = await backfillFinished(h.api, userId)
    expect(view.status).toBe("done")
    const linkedAt = (await h.db.query<{ linked_at: Date }>("select linked_at from provider_connections where user_id = $1", [userId])).rows[0]!.linked_at
    const fallback = Math.ceil((linkedAt.getTime() - 30 * DAY * 1000) / 1000)
    const requests = requestsOf(h.garmin, garminId)
    expect(requests.map((r) => [r.type, r.status])).toEqual([
      ["dailies", 400], ["dailies", 202],
      ["sleeps", 400], ["sleeps", 202],
      ["activities", 202], // the newest 30 days lie after the fallback
      ["activities", 400] // the older 10 days lie before it: skipped, not narrowed to nothing
    ])
    expect(requests[1]!.start).toBe(fallback)
    expect(requests[3]!.start).toBe(fallback)
    for (const pull of Object.values(view.historical_pulls)) expect(pull.status).toBe("success")
    expect(view.historical_pulls.activity.range_start).toBe(new Date(fallback * 1000).toISOString())
    const windows = (await h.db.query("select w.type, w.status, w.completion from backfill_windows w where w.user_id = $1 order by w.seq", [userId])).rows
    expect(windows.at(-1)).toEqual({ type: "activities", status: "skipped", completion: "before_earliest" })
    await h.db.query("delete from backfill_earliest")
  })
})

describe("the shared rate limit", () => {
  let h: Harness
  beforeAll(async () => {
    // 10 days of data per 2 s; each connection asks for 2 windows of 4 days.
    h = await harness("backfill-rate", {
      WEARFLOW_BACKFILL_DAYS: "4",
      WEARFLOW_BACKFILL_TYPES: "dailies,sleeps",
      WEARFLOW_BACKFILL_BUDGET_DAYS: "10",
      WEARFLOW_BACKFILL_BUDGET_WINDOW: "2 seconds",
      WEARFLOW_BACKFILL_QUIET_PERIOD: "300 millis"
    })
  })
  afterAll(async () => {
    await h?.stack.close()
  })

  it("keeps every connection's requests together under one budget of days per window", async () => {
    const users = await Promise.all(["r1", "r2", "r3"].map((name) => connected(h, name, { history: false })))
    await Promise.all(users.map((u) => backfillFinished(h.api, u.userId)))
    const requests = h.garmin.state.backfillRequests.filter((r) => users.some((u) => u.garminId === r.userId))
    expect(requests).toHaveLength(6)
    // The budget holds over every stretch: by any request, no more days were asked for than
    // the windows elapsed allow (a request may straddle two windows: one request's days of slack).
    const start = requests[0]!.at
    let asked = 0
    for (const r of requests) {
      asked += (r.end! - r.start!) / DAY
      expect(asked).toBeLessThanOrEqual(10 * ((r.at - start) / 2_000 + 1) + 4)
    }
    // The three chains shared it: their requests interleave.
    expect(new Set(requests.slice(0, 3).map((r) => r.userId)).size).toBeGreaterThan(1)
  })
})

describe("durability", () => {
  it("kill -9 while a backfill request is in flight: Garmin took it; the restart's resend meets a 409, waits for the data, and the chain goes on", async () => {
    const h = await harness("backfill-crash", { WEARFLOW_RUNNER_ADDRESS: "crash-test:1", WEARFLOW_BACKFILL_QUIET_PERIOD: "3 seconds" })
    let restarted: RunningServer | undefined
    try {
      // Garmin holds the sleeps request (the second window) open until the server is dead.
      let release!: () => void
      h.garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/sleeps", hold: new Promise<void>((resolve) => (release = resolve)) })
      const { userId, garminId, seeded } = await connected(h, "crash")
      await eventually(async () => (h.garmin.requests.some((r) => r.path === "/wellness-api/rest/backfill/sleeps") ? true : undefined), 30_000)
      const inFlight = (await h.db.query("select type, status from backfill_windows where user_id = $1 and status = 'sending'", [userId])).rows
      expect(inFlight).toEqual([{ type: "sleeps", status: "sending" }])
      expect(await h.stack.server.stop("SIGKILL")).toBeNull()

      // Garmin handles the request anyway: accepted, its data waiting for a receiver.
      h.garmin.state.backfill.paused = true
      release()
      await eventually(async () => (requestsOf(h.garmin, garminId).some((r) => r.type === "sleeps" && r.status === 202) ? true : undefined))
      // A backfill recorded but never started (as if the process died right after a link),
      // for a provider this server does not load: the restart starts it, and it ends failed.
      await h.db.query(
        `insert into backfills (id, team_id, user_id, provider, linked_at, origin, range_end)
         select gen_random_uuid(), team_id, id, 'unloaded', now(), 'connection', now() from users where id = $1`,
        [userId]
      )
      restarted = await startServer(h.stack.env)
      h.garmin.state.backfill.deliverTo = `${restarted.baseUrl}/api/v1/webhooks/garmin/push`
      h.garmin.state.backfill.paused = false
      const api = wearflowApi(() => restarted!.baseUrl, API_KEY)
      const view = await backfillFinished(api, userId, 60_000)
      expect(view.status).toBe("done")
      expect(Object.values(view.historical_pulls).map((p) => p.status)).toEqual(["success", "success", "success"])
      // Every window asked once, but the one in flight at the kill: sent again, and Garmin's 409 to the resend.
      const requests = requestsOf(h.garmin, garminId)
      expect(requests.map((r) => [r.type, r.status])).toEqual([["dailies", 202], ["sleeps", 202], ["sleeps", 409], ["activities", 202], ["activities", 202]])
      expect(requests[2]!.start).toBe(requests[1]!.start)
      // The window counted its data rather than finishing empty at the 409.
      const sleeps = (await h.db.query("select status, completion, items from backfill_windows where user_id = $1 and type = 'sleeps'", [userId])).rows
      expect(sleeps).toEqual([{ status: "complete", completion: "data", items: seeded.sleeps!.length }])
      expect(view.historical_pulls.sleep.days_with_data).toBe(seeded.sleeps!.length)
      expect(view.historical_pulls.activity.days_with_data).toBe(seeded.dailies!.length)
      for (const resource of ["activity", "sleep", "workouts"]) expect(await eventsOf(h.db, userId, `historical.data.${resource}.created`)).toHaveLength(1)
      const broken = await eventually(async () => {
        const row = (await h.db.query("select status, error from backfills where provider = 'unloaded'")).rows[0]
        return row?.status === "done" ? row : undefined
      }, 20_000)
      expect(broken.error).toBe("stopped by an internal error")
    } finally {
      await restarted?.stop()
      await h.stack.close()
    }
  })

  // Usually 11-17 s; once in nine runs it took over 60 s (cause not yet found): 150 s bounds a hang, it is not a time it should take.
  it("two server processes on one database: each step runs once", async () => {
    const h = await harness("backfill-two", { WEARFLOW_ENCRYPTION_KEY: randomBytes(32).toString("base64") }, 2)
    try {
      const second = wearflowApi(() => h.stack.servers[1]!.baseUrl, API_KEY)
      const users = await Promise.all(["two-a", "two-b", "two-c", "two-d"].map((name, i) => connected(h, name, { api: i % 2 === 0 ? h.api : second })))
      const views = await Promise.all(users.map((u) => backfillFinished(h.api, u.userId, 120_000)))
      for (const view of views) expect(Object.values(view.historical_pulls).map((p) => p.status)).toEqual(["success", "success", "success"])
      for (const user of users) {
        expect(requestsOf(h.garmin, user.garminId).map((r) => r.type)).toEqual(["dailies", "sleeps", "activities", "activities"])
        expectNoRepeats(h.garmin, user.garminId)
        for (const resource of ["activity", "sleep", "workouts"]) expect(await eventsOf(h.db, user.userId, `historical.data.${resource}.created`)).toHaveLength(1)
      }
    } finally {
      await h.stack.close()
    }
  }, 150_000)
})
