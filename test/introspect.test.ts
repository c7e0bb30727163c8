/**
 * Introspection and paging against the real server and Postgres: `/v2/introspect/resources`
 * (per user, provider and resource), and cursor pages on the data API and the historical-pull
 * list. Pages cover the whole set exactly once, in order; each team sees only its own users; a
 * cursor the API did not give out is refused with 400, never repeated back.
 */
import { createHash, randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "introspect-consumer-key", consumerSecret: "introspect-consumer-secret" }
const API_KEY = "introspect-api-key"
const OTHER_TEAM_KEY = "introspect-other-team-key"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const DAYS = ["2023-05-01", "2023-05-02", "2023-05-03", "2023-05-04", "2023-05-05"]

let stack: GarminStack
const api = wearflowApi(() => stack.server.baseUrl, API_KEY)
const otherTeam = wearflowApi(() => stack.server.baseUrl, OTHER_TEAM_KEY)
const push = garminWebhook(() => stack.server.baseUrl, CONSUMER.consumerKey, "push")
const outcomeOf = inboxOutcomes(() => stack.db, 30_000)

/** Users of a team, each linked to Garmin with `days` of dailies stored. */
const usersWithData = async (call: typeof api, prefix: string, count: number, days: ReadonlyArray<string>) => {
  const ids: Array<string> = []
  for (let i = 0; i < count; i++) {
    const created = await call("POST", "/v2/user", { client_user_id: `${prefix}-${i}` })
    expect(created.status).toBe(200)
    const garminId = `garmin-${prefix}-${i}`
    expect((await call("POST", `/v2/user/${created.body.user_id}/connections/garmin`, { provider_user_id: garminId })).status).toBe(200)
    const body = { dailies: days.map((day) => ({ ...daily, userId: garminId, summaryId: `${garminId}-${day}`, calendarDate: day })) }
    const outcome = await outcomeOf(await push(body))
    expect(outcome.errors).toEqual([])
    ids.push(created.body.user_id)
  }
  return ids
}

/** Follows next_cursor from the first page; every page's items, in order. */
const allPages = async <A>(call: typeof api, route: string, itemsOf: (body: any) => Array<A>) => {
  const pages: Array<Array<A>> = []
  let cursor: string | null = null
  do {
    const reply = await call("GET", `${route}${route.includes("?") ? "&" : "?"}${cursor === null ? "" : `cursor=${cursor}&`}`.replace(/[?&]$/, ""))
    expect(reply.status, JSON.stringify(reply.body)).toBe(200)
    pages.push(itemsOf(reply.body))
    cursor = reply.body.next_cursor
    expect(pages.length).toBeLessThan(1000)
  } while (cursor !== null)
  return pages
}

let teamA: Array<string>
let teamB: Array<string>

beforeAll(async () => {
  stack = await startGarminStack({
    name: "introspect",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: { WEARFLOW_WEBHOOK_ALLOW_HTTP: "true", WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true" }
  })
  const team = (await stack.db.query("insert into teams (id, name) values (gen_random_uuid(), 'other') returning id")).rows[0].id
  await stack.db.query("insert into api_keys (key_hash, team_id, label) values ($1, $2, 'test')", [createHash("sha256").update(OTHER_TEAM_KEY).digest(), team])
  teamA = await usersWithData(api, "team-a", 5, DAYS)
  teamB = await usersWithData(otherTeam, "team-b", 1, DAYS.slice(0, 2))
}, 120_000)

afterAll(async () => {
  await stack?.close()
})

describe("GET /v2/introspect/resources", () => {
  it("pages through the team's users exactly once, with per-resource statistics", async () => {
    const pages = await allPages(api, "/v2/introspect/resources?limit=2", (body) => body.data as Array<any>)
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
    const seen = pages.flat().map((u) => u.user_id)
    expect(seen).toEqual([...teamA].sort())
    const one = pages.flat().find((u) => u.user_id === teamA[0])
    expect(one.client_user_id).toBe("team-a-0")
    const activity = one.provider.garmin.activity
    expect(activity.sent_count).toBe(DAYS.length)
    expect(activity.oldest_data.slice(0, 10)).toBe(DAYS[0])
    expect(activity.newest_data.slice(0, 10)).toBe(DAYS[DAYS.length - 1])
    expect(activity.last_attempt.status).toBe("success")
    expect(Date.parse(activity.last_attempt.timestamp)).toBeGreaterThan(Date.now() - 3_600_000)
    // Timeseries count their samples.
    const samples = Number((await stack.db.query("select count(*) as n from samples where user_id = $1 and resource = 'heartrate'", [teamA[0]])).rows[0].n)
    expect(samples).toBeGreaterThan(0)
    expect(one.provider.garmin.heartrate.sent_count).toBe(samples)
  })

  it("is team-scoped, with user and provider filters", async () => {
    const b = await otherTeam("GET", "/v2/introspect/resources")
    expect(b.body.data.map((u: any) => u.user_id)).toEqual(teamB)
    expect(b.body.next_cursor).toBeNull()
    // Another team's user, by id: nothing.
    expect((await otherTeam("GET", `/v2/introspect/resources?user_id=${teamA[0]}`)).body.data).toEqual([])
    const own = await api("GET", `/v2/introspect/resources?user_id=${teamA[1]}&provider=garmin`)
    expect(own.body.data.map((u: any) => u.user_id)).toEqual([teamA[1]])
    expect((await api("GET", "/v2/introspect/resources?provider=oura")).body.data).toEqual([])
    expect((await api("GET", "/v2/introspect/resources?user_id=not-a-user")).body.data).toEqual([])
  })

  it("refuses a cursor it did not give out, without repeating it", async () => {
    const forged = Buffer.from(JSON.stringify(["' or 1=1 --"])).toString("base64url")
    for (const cursor of ["not a cursor!", "e30", forged, Buffer.from(JSON.stringify([randomUUID(), "x"])).toString("base64url")]) {
      const reply = await api("GET", `/v2/introspect/resources?cursor=${encodeURIComponent(cursor)}`)
      expect(reply.status).toBe(400)
      expect(JSON.stringify(reply.body)).not.toContain(cursor)
      expect(JSON.stringify(reply.body)).not.toContain("or 1=1")
    }
    expect((await api("GET", "/v2/introspect/resources?limit=0")).status).toBe(400)
  })
})

describe("paging the data API", () => {
  it("pages summaries: the whole range exactly once, in order; unpaged answers stay as they were", async () => {
    const route = `/v2/summary/activity/${teamA[2]}?start_date=${DAYS[0]}&end_date=${DAYS[DAYS.length - 1]}`
    const whole = await api("GET", route)
    expect(whole.status).toBe(200)
    expect(Object.keys(whole.body)).toEqual(["activity"])
    expect(whole.body.activity.length).toBe(DAYS.length)
    const pages = await allPages(api, `${route}&limit=2`, (body) => body.activity as Array<any>)
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
    expect(pages.flat()).toEqual(whole.body.activity)
  })

  it("pages timeseries samples: the whole range exactly once, in order", async () => {
    // Every day's record carries the fixture's samples at the same instants: ties order by record.
    const route = `/v2/timeseries/${teamA[3]}/heartrate?start_date=2000-01-01&end_date=2100-01-01`
    const whole = await api("GET", route)
    expect(whole.status).toBe(200)
    expect(Array.isArray(whole.body)).toBe(true)
    expect(whole.body.length).toBeGreaterThan(10)
    const size = Math.ceil(whole.body.length / 4)
    const pages = await allPages(api, `${route}&limit=${size}`, (body) => body.data as Array<any>)
    expect(pages.length).toBeGreaterThanOrEqual(4)
    expect(pages.flat()).toEqual(whole.body)
  })

  it("refuses foreign and forged cursors without repeating them, and other teams' users", async () => {
    const summaries = `/v2/summary/activity/${teamA[2]}?start_date=${DAYS[0]}`
    const first = await api("GET", `${summaries}&limit=1`)
    const summaryCursor = first.body.next_cursor as string
    expect(typeof summaryCursor).toBe("string")
    const series = `/v2/timeseries/${teamA[3]}/heartrate?start_date=2000-01-01`
    const forged = Buffer.from(JSON.stringify(["9999-99-99 99:99:99+00", randomUUID()])).toString("base64url")
    for (const cursor of [summaryCursor, forged, "%%%", "W10"]) {
      const reply = await api("GET", `${series}&cursor=${encodeURIComponent(cursor)}`)
      expect(reply.status).toBe(400)
      expect(JSON.stringify(reply.body)).not.toContain(cursor)
    }
    expect((await otherTeam("GET", `${summaries}&limit=1`)).status).toBe(404)
    expect((await otherTeam("GET", `${summaries}&cursor=${summaryCursor}`)).status).toBe(404)
  })
})

describe("unpaged data requests", () => {
  it("refuse a range too large for one answer, and page it", async () => {
    const created = await api("POST", "/v2/user", { client_user_id: "many-days" })
    const userId = created.body.user_id as string
    await stack.db.query(
      `insert into records (id, user_id, provider, resource, source_id, calendar_date, data, content_hash, inbox_id)
       select gen_random_uuid(), $1, 'garmin', 'activity', 'many-' || n, date '2000-01-01' + n,
              (select data from records where resource = 'activity' limit 1), '\\x00', 0 from generate_series(0, 10000) n`,
      [userId]
    )
    const reply = await api("GET", `/v2/summary/activity/${userId}?start_date=2000-01-01&end_date=2030-01-01`)
    expect(reply.status).toBe(400)
    expect(reply.body.message).toMatch(/page it with limit and cursor/)
    const page = await api("GET", `/v2/summary/activity/${userId}?start_date=2000-01-01&end_date=2030-01-01&limit=1000`)
    expect(page.status).toBe(200)
    expect(page.body.activity.length).toBe(1000)
    expect(typeof page.body.next_cursor).toBe("string")
  })
})

describe("paging GET /v2/webhooks", () => {
  it("pages the team's endpoints exactly once", async () => {
    const create = async (call: typeof api) => {
      const reply = await call("POST", "/v2/webhooks", { url: "http://127.0.0.1:9/hooks", filter_types: ["nothing.matches"] })
      expect(reply.status, JSON.stringify(reply.body)).toBe(201)
      return reply.body.id as string
    }
    const ours = [await create(api), await create(api), await create(api)]
    const theirs = await create(otherTeam)
    const pages = await allPages(api, "/v2/webhooks?limit=2", (body) => body.data.map((e: any) => e.id) as Array<string>)
    expect(pages.map((p) => p.length)).toEqual([2, 1])
    expect(pages.flat()).toEqual(ours)
    expect((await otherTeam("GET", "/v2/webhooks")).body.data.map((e: any) => e.id)).toEqual([theirs])
    const bad = await api("GET", "/v2/webhooks?cursor=WyJ4Il0")
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).not.toContain("WyJ4Il0")
    // The message log's cursors are opaque too: a bare sequence number is not one.
    for (const route of [`/v2/webhooks/${ours[0]}/messages?cursor=12345`, `/v2/webhooks/${ours[0]}/messages?cursor=WyJ4Il0`]) {
      const reply = await api("GET", route)
      expect(reply.status).toBe(400)
      expect(JSON.stringify(reply.body)).not.toMatch(/12345|WyJ4Il0/)
    }
  })
})

describe("paging GET /v2/introspect/historical_pull", () => {
  it("pages the team's backfills exactly once", async () => {
    for (const userId of teamA) {
      await stack.db.query(
        `insert into backfills (id, team_id, user_id, provider, linked_at, origin, status, range_end, ended_at)
         select gen_random_uuid(), team_id, id, 'garmin', now(), 'api', 'done', now(), now() from users where id = $1`,
        [userId]
      )
    }
    const pages = await allPages(api, "/v2/introspect/historical_pull?limit=2", (body) => body.data as Array<any>)
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
    expect(pages.flat().map((b) => b.user_id)).toEqual([...teamA].sort())
    expect((await otherTeam("GET", "/v2/introspect/historical_pull")).body).toEqual({ data: [], next_cursor: null })
    const bad = await api("GET", "/v2/introspect/historical_pull?cursor=bm90LWEtY3Vyc29y")
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).not.toContain("bm90LWEtY3Vyc29y")
  })
})
