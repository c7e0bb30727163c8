/**
 * End to end: the real Bun server on a real Postgres (its own embedded server, so the test
 * can stop it), Garmin fixtures posted over loopback HTTP, read back through the query API
 * and from the Postgres sink's typed tables.
 */
import * as EmbeddedPostgres from "@wearflow/core/storage/embedded-postgres"
import { Effect, Redacted } from "effect"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { healthProbe, leakedProbeValues, probeValues } from "./support/health-probe.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { inboxOutcomes, sendGarminNotification } from "./support/wearflow-client.ts"

const fixture = (name: string) => readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8")
const CLIENT_ID = "e2e-garmin-client"
const API_KEY = "e2e-api-key"
const SPEC_USER = "4aacafe82427c251df9c9592d0c06768"
const OAUTH2_USER = "7c3af2e0-f55b-4526-b128-e91bbf749049"

let dir: string
let database: EmbeddedPostgres.EmbeddedPostgres
let server: RunningServer
let db: pg.Client

const api = (method: string, route: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.baseUrl}${route}`, {
    method,
    headers: { "x-api-key": API_KEY, "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })

const push = (body: string, clientId: string | null = CLIENT_ID) =>
  fetch(`${server.baseUrl}/api/v1/webhooks/garmin/push`, {
    method: "POST",
    headers: {
      "content-type": "application/json;charset=UTF-8",
      "user-agent": "Garmin Health API",
      ...(clientId === null ? {} : { "garmin-client-id": clientId })
    },
    body
  })

/** The test's own connection; while Postgres is stopped on purpose its errors are expected. */
const connect = async () => {
  const client = new pg.Client({ connectionString: Redacted.value(database.url) })
  client.on("error", () => undefined)
  await client.connect()
  return client
}

const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)
const outcomeOf = inboxOutcomes(() => db, 60_000)

/** Waits until the ingest worker has processed every stored PUSH body. */
const drained = () =>
  eventually(async () => ((await count("select count(*) as n from inbox where kind = 'push' and processed_at is null")) === 0 ? true : undefined))

const createUser = async (clientUserId: string) => {
  const response = await api("POST", "/v2/user", { client_user_id: clientUserId })
  expect(response.status).toBe(200)
  return ((await response.json()) as { user_id: string }).user_id
}

const link = async (userId: string, garminUserId: string) => {
  const response = await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })
  expect(response.status).toBe(200)
  return (await response.json()) as { replayed_notifications: number }
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-e2e-"))
  await fs.chmod(dir, 0o755)
  database = await Effect.runPromise(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "wearflow" }))
  server = await startServer({
    DATABASE_URL: Redacted.value(database.url),
    GARMIN_CLIENT_ID: CLIENT_ID,
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: path.join(dir, "data"),
    // The most a log carries: health values must stay out of it even then.
    LOG_LEVEL: "Debug",
    // The PING fixtures point at apis.garmin.com: with Garmin's API elsewhere, those pulls are
    // refused as foreign hosts instead of leaving this machine (test/ping.test.ts covers pulls).
    GARMIN_API_URL: "http://127.0.0.1:9"
  })
  db = await connect()
})

afterAll(async () => {
  await db?.end()
  const code = await server?.stop("SIGTERM")
  expect(code).toBe(0)
  await Effect.runPromise(database.stop)
  await fs.rm(dir, { recursive: true, force: true })
})

describe("Garmin PUSH → store → query API and typed tables", () => {
  let alice: string
  let bob: string

  it("walks through the README: create a user, link Garmin, push dailies, read the steps back", async () => {
    alice = await createUser("alice")
    await link(alice, SPEC_USER)

    const response = await push(fixture("dailies"))
    expect(response.status).toBe(200)
    const accepted = (await response.json()) as { inbox_id: number; accepted: Record<string, number>; errors: Array<unknown> }
    expect(accepted.accepted).toEqual({ dailies: 2 })
    expect(accepted.errors).toEqual([])

    const activity = await eventually(async () => {
      const body = (await (await api("GET", `/v2/summary/activity/${alice}?start_date=2016-01-01&end_date=2016-01-31`)).json()) as {
        activity: Array<{ steps: number; calendar_date: string; timezone_offset: number; source: { provider: string } }>
      }
      return body.activity.length === 2 ? body.activity : undefined
    })
    expect(activity.map((a) => a.steps)).toEqual([4210, 3305])
    expect(activity[0]).toMatchObject({ calendar_date: "2016-01-11", timezone_offset: 3600, source: { provider: "garmin" } })

    const heartrate = (await (await api("GET", `/v2/timeseries/${alice}/heartrate?start_date=2016-01-11T00:00:00Z&end_date=2016-01-11`)).json()) as Array<{
      timestamp: string
      value: number
      unit: string
    }>
    expect(heartrate.length).toBe(8)
    expect(heartrate[0]).toMatchObject({ timestamp: "2016-01-11T00:00:15.000Z", value: 75, unit: "bpm" })
  })

  it("takes sleeps, activities and a real OAuth2-era push, for several users", async () => {
    bob = await createUser("bob")
    await link(bob, OAUTH2_USER)
    for (const name of ["sleeps", "activities", "dailies-real-oauth2-push"]) {
      expect((await push(fixture(name))).status).toBe(200)
    }
    await drained()
    const sleep = (await (await api("GET", `/v2/summary/sleep/${alice}?start_date=2016-01-01&end_date=2021-12-31`)).json()) as {
      sleep: Array<{ deep: number; rem: number; score: number | null }>
    }
    expect(sleep.sleep.map((s) => [s.deep, s.rem, s.score])).toEqual([[9446, 2142, 87], [0, 0, null]])
    const workouts = (await (await api("GET", `/v2/summary/workouts/${alice}?start_date=2016-01-01`)).json()) as {
      workouts: Array<{ distance: number; sport: { slug: string } }>
    }
    expect(workouts.workouts.map((w) => [w.sport.slug, w.distance])).toEqual([["running", 519818.125], ["cycling", 4322.357]])
    const bobs = (await (await api("GET", `/v2/summary/activity/${bob}?start_date=2025-10-07&end_date=2025-10-07`)).json()) as {
      activity: Array<{ steps: number; timezone_offset: number }>
    }
    expect(bobs.activity).toMatchObject([{ steps: 2146, timezone_offset: 28800 }])
  })

  it("serves every resource the Garmin normalizers produce: body summaries, blood pressure pairs, HRV samples", async () => {
    for (const name of ["bodyComps", "bloodPressures", "hrv", "userMetrics"]) expect((await push(fixture(name))).status).toBe(200)
    await drained()
    const body = (await (await api("GET", `/v2/summary/body/${alice}?start_date=2015-08-16&end_date=2015-08-17`)).json()) as {
      body: Array<{ weight: number; fat: number }>
    }
    expect(body.body[0]).toMatchObject({ weight: 75.45, fat: 17.1 })
    const pressure = (await (await api("GET", `/v2/timeseries/${alice}/blood_pressure?start_date=2022-09-21`)).json()) as Array<Record<string, unknown>>
    expect(pressure).toEqual([expect.objectContaining({ systolic: 120, diastolic: 110, unit: "mmHg", timestamp: "2022-09-21T16:00:00.000Z" })])
    expect(pressure[0]).not.toHaveProperty("value")
    const hrv = (await (await api("GET", `/v2/timeseries/${alice}/hrv?start_date=2022-05-31&end_date=2022-06-01`)).json()) as Array<{ unit: string }>
    expect(hrv.length).toBeGreaterThan(0)
    expect(hrv[0]!.unit).toBe("ms")
  })

  it("delivers every resource into the Postgres sink's typed tables", async () => {
    const steps = await eventually(async () => {
      const rows = (await db.query("select steps from wearflow_data.activity where user_id = $1 order by calendar_date", [alice])).rows
      return rows.length === 2 ? rows.map((r) => Number(r.steps)) : undefined
    })
    expect(steps).toEqual([4210, 3305])
    // 2 × 8 daily samples, and the pulse taken with the blood pressure.
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.heartrate where user_id = $1", [alice])) === 17 ? true : undefined))
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.blood_pressure where user_id = $1 and systolic = 120", [alice])) === 1 ? true : undefined))
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.body where user_id = $1", [alice])) === 2 ? true : undefined))
    // Two nights and the first night's nap.
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.sleep where user_id = $1", [alice])) === 3 ? true : undefined))
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.workouts where user_id = $1", [alice])) === 2 ? true : undefined))
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.activity where user_id = $1", [bob])) === 1 ? true : undefined))
    // A resource name with a digit in it.
    await eventually(async () => ((await count("select count(*) as n from wearflow_data.vo2_max where user_id = $1 and value = 48", [alice])) === 1 ? true : undefined))
  })

  /** Everything that a duplicate would show up in. */
  const totals = async () => ({
    events: await count("select count(*) as n from outbox"),
    records: await count("select count(*) as n from records"),
    samples: await count("select count(*) as n from samples"),
    activity: await count("select count(*) as n from wearflow_data.activity"),
    heartrate: await count("select count(*) as n from wearflow_data.heartrate"),
    sleep: await count("select count(*) as n from wearflow_data.sleep"),
    workouts: await count("select count(*) as n from wearflow_data.workouts")
  })

  /** Waits until the Postgres sink has taken every event. */
  const sinkCaughtUp = () =>
    eventually(async () => {
      const behind = await count(
        "select count(*) as n from outbox o, sink_cursors c where c.sink_id = 'postgres' and (o.tx, o.position) > (c.tx, c.position)"
      )
      return behind === 0 ? true : undefined
    })

  it("finds no duplicates and no new events when everything is posted again", async () => {
    await drained()
    await sinkCaughtUp()
    const before = await totals()
    expect(before.samples).toBeGreaterThan(0)
    for (const name of ["dailies", "sleeps", "activities", "dailies-real-oauth2-push"]) {
      expect((await push(fixture(name))).status).toBe(200)
    }
    await drained()
    await sinkCaughtUp()
    expect(await totals()).toEqual(before)
  })

  it("a revised daily replaces the stored one and emits one .updated event", async () => {
    const revised = JSON.parse(fixture("dailies"))
    revised.dailies[0].steps = 6543
    const events = await count("select count(*) as n from outbox where event_type = 'daily.data.activity.updated'")
    expect((await push(JSON.stringify(revised))).status).toBe(200)
    await drained()
    expect(await count("select count(*) as n from outbox where event_type = 'daily.data.activity.updated'")).toBe(events + 1)
    const steps = await eventually(async () => {
      const rows = (await db.query("select steps from wearflow_data.activity where user_id = $1 and calendar_date = '2016-01-11'", [alice])).rows
      return Number(rows[0]?.steps) === 6543 ? 6543 : undefined
    })
    expect(steps).toBe(6543)
  })

  it("keeps notifications for Garmin users nobody linked, and processes them once the user is linked", async () => {
    const body = fixture("activities").replaceAll(SPEC_USER, "garmin-user-linked-later")
    const response = await push(body)
    expect(response.status).toBe(200)
    await drained()
    expect(await count("select count(*) as n from unlinked_notifications where provider_user_id = 'garmin-user-linked-later'")).toBe(1)

    const carol = await createUser("carol")
    expect((await link(carol, "garmin-user-linked-later")).replayed_notifications).toBe(1)
    const workouts = await eventually(async () => {
      const body = (await (await api("GET", `/v2/summary/workouts/${carol}?start_date=2016-01-01`)).json()) as { workouts: Array<unknown> }
      return body.workouts.length === 2 ? body.workouts : undefined
    })
    expect(workouts.length).toBe(2)
  })
})

describe("PING notifications", () => {
  it("stores PING bodies (pulled later, off the request path) and checks their callback URLs", async () => {
    const response = await sendGarminNotification(server.baseUrl, CLIENT_ID, "ping", fixture("ping-oauth2-health"))
    expect(response.status).toBe(200)
    const accepted = (await response.json()) as { inbox_id: number; accepted: Record<string, number>; errors: Array<unknown> }
    expect(accepted.errors).toEqual([])
    const stored = await db.query("select kind, body from inbox where id = $1", [accepted.inbox_id])
    expect(stored.rows[0].kind).toBe("ping")
    expect(stored.rows[0].body).toBe(fixture("ping-oauth2-health"))

    // Items are checked off the request path: the problem is recorded on the stored body.
    const missingUrl = await sendGarminNotification(server.baseUrl, CLIENT_ID, "ping", { dailies: [{ userId: SPEC_USER }] })
    const missing = (await missingUrl.json()) as { inbox_id: number; errors: Array<unknown> }
    expect([missingUrl.status, missing.errors]).toEqual([200, []])
    expect((await outcomeOf(missing.inbox_id)).errors).toEqual([{ key: "dailies", index: 0, message: "callbackURL is missing" }])
  })
})

describe("bad input gets a clear error and harms nothing", () => {
  it("answers malformed JSON with 400 and never echoes the payload", async () => {
    const response = await push('{"dailies": [{"userId": "secret-user-77", "steps": 918273645, oops')
    expect(response.status).toBe(400)
    const text = await response.text()
    expect(text).toContain("not valid JSON")
    expect(text).not.toContain("918273645")
    expect(text).not.toContain("secret-user-77")
  })

  it("answers a body that is not an object of summary lists with 400", async () => {
    const response = await push('[{"steps": 918273645}]')
    expect(response.status).toBe(400)
    expect(await response.text()).not.toContain("918273645")
  })

  it("refuses a missing or wrong garmin-client-id with 401 and stores nothing", async () => {
    const stored = await count("select count(*) as n from inbox")
    expect((await push(fixture("dailies"), null)).status).toBe(401)
    expect((await push(fixture("dailies"), "someone-else")).status).toBe(401)
    expect((await push(fixture("dailies"), CLIENT_ID.slice(0, -1))).status).toBe(401)
    expect(await count("select count(*) as n from inbox")).toBe(stored)
  })

  it("ignores unknown keys and records invalid items on the stored body without failing the delivery", async () => {
    const body = JSON.stringify({
      someFutureKey: [{ userId: SPEC_USER, value: 1 }],
      dailies: [{ userId: SPEC_USER, steps: 918273645 }, "not-an-object"],
      sleeps: { userId: SPEC_USER }
    })
    const response = await push(body)
    expect(response.status).toBe(200)
    const accepted = (await response.json()) as { inbox_id: number; accepted: Record<string, number>; ignored_keys: Array<string>; errors: Array<unknown>; errors_omitted: number }
    expect(accepted.ignored_keys).toEqual(["someFutureKey"])
    expect(accepted.accepted).toEqual({ dailies: 2 })
    // Items are checked by the ingest worker, off the request path: Garmin never reads them.
    expect([accepted.errors, accepted.errors_omitted]).toEqual([[], 0])
    expect(JSON.stringify(accepted)).not.toContain("918273645")
    const outcome = await outcomeOf(accepted.inbox_id)
    expect(outcome.errors).toEqual([
      { key: "dailies", index: 0, message: "summaryId is missing" },
      { key: "dailies", index: 1, message: "item is not an object" },
      { key: "sleeps", index: -1, message: "sleeps must be a list" }
    ])
    expect(JSON.stringify(outcome)).not.toContain("918273645")
  })

  it("accepts a 12 MB body", async () => {
    const daily = JSON.parse(fixture("dailies")).dailies[0]
    const dailies = Array.from({ length: 6000 }, (_, i) => ({ ...daily, userId: "bulk-user", summaryId: `bulk-${i}`, filler: "x".repeat(1100) }))
    const body = JSON.stringify({ dailies })
    expect(body.length).toBeGreaterThan(12 * 1024 * 1024)
    const response = await push(body)
    expect(response.status).toBe(200)
    expect(((await response.json()) as { accepted: Record<string, number> }).accepted).toEqual({ dailies: 6000 })
  })

  it("keeps health values out of the server's logs", async () => {
    const probe = await createUser("log-probe")
    await link(probe, "log-probe-garmin-user")
    // Rejected values: an item that fails normalization, and the malformed bodies above.
    const rejected = JSON.stringify({ dailies: [{ userId: "log-probe-garmin-user", summaryId: "log-probe", startTimeInSeconds: 1452470400, steps: "7777766666" }] })
    expect((await push(rejected)).status).toBe(200)
    // Accepted values of every kind, each checked stored before the logs are read.
    expect((await push(healthProbe("log-probe-garmin-user", "e2e"))).status).toBe(200)
    await drained()
    const get = async (route: string) => (await api("GET", route)).json() as Promise<any>
    expect((await get(`/v2/summary/activity/${probe}?start_date=2016-01-11&end_date=2016-01-11`)).activity.map((a: any) => a.steps)).toEqual([probeValues.steps])
    const heartrate = await get(`/v2/timeseries/${probe}/heartrate?start_date=2016-01-11T00:00:00Z&end_date=2016-01-11`)
    expect(heartrate.map((s: any) => s.value)).toEqual([...probeValues.heartRate])
    const [sleep] = (await get(`/v2/summary/sleep/${probe}?start_date=2016-01-01&end_date=2016-01-31`)).sleep
    expect([sleep.deep, sleep.light, sleep.rem]).toEqual([probeValues.deepSleep, probeValues.lightSleep, probeValues.remSleep])
    expect((await get(`/v2/timeseries/${probe}/blood_oxygen?start_date=2016-01-10&end_date=2016-01-11`)).map((s: any) => s.value)).toEqual([probeValues.bloodOxygen])
    expect((await get(`/v2/timeseries/${probe}/respiratory_rate?start_date=2016-01-10&end_date=2016-01-11`)).map((s: any) => s.value)).toEqual([probeValues.respiration])
    const [body] = (await get(`/v2/summary/body/${probe}?start_date=2015-08-16&end_date=2015-08-17`)).body
    expect([body.weight, body.fat]).toEqual([probeValues.weightInGrams / 1000, probeValues.bodyFat])

    const logs = server.logs()
    expect(logs).toContain("notification items failed")
    expect(leakedProbeValues(logs)).toEqual([])
    for (const rejectedValue of ["7777766666", "918273645", "secret-user-77"]) expect(logs).not.toContain(rejectedValue)
  })

  it("requires an API key, and keeps teams apart", async () => {
    expect((await api("POST", "/v2/user", { client_user_id: "x" }, { "x-api-key": "wrong" })).status).toBe(401)
    const other = "other-team-key"
    const teamId = crypto.randomUUID()
    await db.query("insert into teams (id, name) values ($1, 'other')", [teamId])
    await db.query("insert into api_keys (key_hash, team_id, label) values ($1, $2, 'test')", [createHash("sha256").update(other).digest(), teamId])
    const alice = (await (await api("POST", "/v2/user", { client_user_id: "alice" })).json()) as { user_id: string }
    expect((await api("GET", `/v2/user/${alice.user_id}`, undefined, { "x-api-key": other })).status).toBe(404)
    expect((await api("GET", `/v2/summary/activity/${alice.user_id}?start_date=2016-01-01`, undefined, { "x-api-key": other })).status).toBe(404)
    expect((await api("GET", `/v2/user/${alice.user_id}`)).status).toBe(200)

    // A Garmin account linked in one team cannot be linked from another.
    const intruder = (await (await api("POST", "/v2/user", { client_user_id: "intruder" }, { "x-api-key": other })).json()) as { user_id: string }
    const stolen = await api("POST", `/v2/user/${intruder.user_id}/connections/garmin`, { provider_user_id: SPEC_USER }, { "x-api-key": other })
    expect(stolen.status).toBe(409)
  })

  it("reports items with unusable ids instead of failing on them later", async () => {
    const body = JSON.stringify({
      dailies: [
        { userId: "bad\u0000id", summaryId: "s1", startTimeInSeconds: 1452470400 },
        { userId: SPEC_USER, summaryId: "lone-\ud800", startTimeInSeconds: 1452470400 }
      ]
    })
    const response = await push(body)
    expect(response.status).toBe(200)
    const { inbox_id: inboxId } = (await response.json()) as { inbox_id: number }
    expect((await outcomeOf(inboxId)).errors.map((e) => e.message)).toEqual([
      "userId is not a valid id",
      "summaryId is not a valid id"
    ])
    await drained()
  })

  it("answers invalid API requests with 400s that name fields but not values", async () => {
    const wrongType = await api("POST", "/v2/user", { client_user_id: 918273645 })
    expect(wrongType.status).toBe(400)
    const text = await wrongType.text()
    expect(text).toContain("client_user_id")
    expect(text).not.toContain("918273645")
    const badJson = await api("POST", "/v2/user", '{"client_user_id": "918273645')
    expect(badJson.status).toBe(400)
    expect(await badJson.text()).not.toContain("918273645")
    const user = (await (await api("POST", "/v2/user", { client_user_id: "dates" })).json()) as { user_id: string }
    const badDate = await api("GET", `/v2/summary/activity/${user.user_id}?start_date=918273645`)
    expect(badDate.status).toBe(400)
    expect(await badDate.text()).not.toContain("918273645")
    expect((await api("GET", `/v2/summary/activity/${user.user_id}`)).status).toBe(400)
    expect((await api("GET", `/v2/summary/activity/${user.user_id}?start_date=2016-02-30`)).status).toBe(400)
    const badExpiry = await api("POST", `/v2/user/${user.user_id}/connections/garmin`, {
      provider_user_id: "expiry-user",
      oauth2: { access_token: "918273645-token", expires_at: "garbage" }
    })
    expect(badExpiry.status).toBe(400)
    expect(await badExpiry.text()).not.toContain("918273645")
    const nul = await api("POST", "/v2/user", { client_user_id: "nul\u0000" })
    expect(nul.status).toBe(400)
  })
})

describe("the database going away", () => {
  it("answers 503 while Postgres is down, and 200 again once it is back", async () => {
    await Effect.runPromise(database.stop)
    try {
      const down = await push(fixture("dailies"))
      expect(down.status).toBe(503)
      expect(((await down.json()) as { retryable: boolean }).retryable).toBe(true)
      expect((await fetch(`${server.baseUrl}/api/v1/webhooks/garmin/health`)).status).toBe(503)
    } finally {
      await Effect.runPromise(database.start)
    }
    const back = await eventually(async () => {
      const response = await push(fixture("dailies"))
      return response.status === 200 ? response : undefined
    })
    expect(back.status).toBe(200)
    await db.end().catch(() => undefined)
    db = await connect()
    await drained()
  })
})

describe("API description", () => {
  it("serves OpenAPI 3.1 with the Garmin routes, and a docs page", async () => {
    const spec = (await (await fetch(`${server.baseUrl}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> }
    expect(spec.openapi).toBe("3.1.0")
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        "/api/v1/webhooks/garmin/push",
        "/api/v1/webhooks/garmin/ping",
        "/api/v1/webhooks/garmin/health",
        "/v2/user",
        "/v2/summary/activity/{user_id}",
        "/v2/timeseries/{user_id}/heartrate"
      ])
    )
    // Built at the first request (docs-route.ts): the same page, the API's spec in it, each time.
    const pages = []
    for (let i = 0; i < 2; i++) {
      const docs = await fetch(`${server.baseUrl}/docs`)
      expect(docs.status).toBe(200)
      expect(docs.headers.get("content-type")).toContain("text/html")
      pages.push(await docs.text())
    }
    expect(pages[0]).toContain('id="api-reference"')
    expect(pages[0]).toContain("/api/v1/webhooks/garmin/push")
    expect(pages[1]).toBe(pages[0])
  })
})
