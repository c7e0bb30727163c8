/**
 * Oura end to end: the real Bun server (plugins oura, postgres, webhooks, s3) on a fresh
 * database, pointed at the fake Oura API. Subscriptions are created at start through the
 * real verification challenge; the fake's signed notifications reach the server, the named
 * documents are fetched with the linked user's token, normalized, and read back through the
 * data API, with their events in the outbox.
 */
import { Redacted } from "effect"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import { metricSum } from "../../test/support/metrics.ts"
import { eventually, type RunningServer, startServer } from "../../test/support/server.ts"
import { type ApiReply, wearflowApi } from "../../test/support/wearflow-client.ts"
import { DEFAULT_DATA_TYPES } from "./config.ts"
import { type FakeOura, type OuraDocument, ouraSignature, startFakeOura } from "./testing/fake-oura.ts"

const API_KEY = "oura-e2e-api-key"
const VERIFICATION_TOKEN = "oura-e2e-verification-token"
const CALLBACK_PATH = "/api/v1/webhooks/oura"
const WAIT_MS = 60_000

const documents = (name: string): Array<OuraDocument> =>
  (JSON.parse(readFileSync(new URL(`./testing/fixtures/${name}.list.200.json`, import.meta.url), "utf8")) as { data: Array<OuraDocument> }).data
const first = (name: string, match: (doc: OuraDocument) => boolean = () => true): OuraDocument => {
  const doc = documents(name).find(match)
  if (doc === undefined) throw new Error(`no ${name} fixture`)
  return structuredClone(doc)
}

let oura: FakeOura
let server: RunningServer
let db: pg.Client
let dataDir: string
const api = wearflowApi(() => server.baseUrl, API_KEY)

const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)
const events = (userId: string, type: string) => count("select count(*) as n from outbox where user_id = $1 and event_type = $2", [userId, type])
const inboxRows = () => count("select count(*) as n from inbox where provider = 'oura'")

/** Waits until every stored Oura body (notifications and the documents fetched for them) is processed. */
const drained = () =>
  eventually(async () => ((await count("select count(*) as n from inbox where provider = 'oura' and processed_at is null")) === 0 ? true : undefined), WAIT_MS)

const ok = (reply: ApiReply) => {
  expect(reply.status, JSON.stringify(reply.body)).toBe(200)
  return reply.body
}

/** A Wearflow user linked to Oura user `ouraUserId` with tokens the fake issued. */
const linkedUser = async (clientUserId: string, ouraUserId: string) => {
  const { user_id: userId } = ok(await api("POST", "/v2/user", { client_user_id: clientUserId })) as { user_id: string }
  const tokens = oura.connect(ouraUserId)
  const linked = ok(
    await api("POST", `/v2/user/${userId}/connections/oura`, {
      provider_user_id: ouraUserId,
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      expires_at: new Date(Date.now() + tokens.expires_in * 1000).toISOString(),
      scopes: tokens.scope.split(" ")
    })
  ) as { replayed_notifications: number }
  return { userId, replayed: linked.replayed_notifications }
}

/** Each notification was answered 200 by the server (Oura's retries would hide a failure). */
const delivered = (outcomes: ReadonlyArray<{ status: number }>) => {
  expect(outcomes.length).toBeGreaterThan(0)
  expect(outcomes.map((o) => o.status)).toEqual(outcomes.map(() => 200))
}

const post = (body: string, headers: Record<string, string>) =>
  fetch(`${server.baseUrl}${CALLBACK_PATH}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body })

beforeAll(async () => {
  oura = await startFakeOura()
  const url = Redacted.value(await freshDatabaseUrl())
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-oura-"))
  server = await startServer((baseUrl) => ({
    WEARFLOW_PLUGINS: "oura,postgres,webhooks,s3",
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    DATABASE_URL: url,
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dataDir,
    WEARFLOW_PUBLIC_URL: baseUrl,
    OURA_API_URL: oura.url,
    OURA_CLIENT_ID: oura.clientId,
    OURA_CLIENT_SECRET: oura.clientSecret,
    OURA_WEBHOOK_VERIFICATION_TOKEN: VERIFICATION_TOKEN
  }))
  db = new pg.Client({ connectionString: url })
  await db.connect()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  await oura?.close()
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true })
})

describe("Oura webhook subscriptions", () => {
  it("are created at start for every configured data type and event, through Oura's verification challenge", async () => {
    const callbackUrl = `${server.baseUrl}${CALLBACK_PATH}`
    const wanted = DEFAULT_DATA_TYPES.length * 3
    const subscriptions = await eventually(async () => {
      const all = [...oura.state.subscriptions.values()]
      return all.length === wanted ? all : undefined
    }, WAIT_MS)
    expect(new Set(subscriptions.map((s) => s.callback_url))).toEqual(new Set([callbackUrl]))
    expect(new Set(subscriptions.map((s) => `${s.event_type}:${s.data_type}`)).size).toBe(wanted)
    expect(new Set(subscriptions.map((s) => s.data_type))).toEqual(new Set(DEFAULT_DATA_TYPES))
    expect(subscriptions.every((s) => s.verification_token === VERIFICATION_TOKEN)).toBe(true)
    // Every subscription Oura made was verified by our route answering its challenge.
    expect(oura.state.verifications.filter((v) => v.passed).length).toBe(wanted)
    // The state operators watch.
    const metrics = await eventually(async () => {
      const text = await (await fetch(`${server.baseUrl}/metrics`)).text()
      return metricSum(text, "wearflow_oura_webhook_subscriptions") === wanted ? text : undefined
    }, WAIT_MS)
    expect(metricSum(metrics, "wearflow_oura_webhook_subscriptions_wanted")).toBe(wanted)
  })

  it("answers the verification challenge only for the right token", async () => {
    const verify = (token: string) =>
      fetch(`${server.baseUrl}${CALLBACK_PATH}?verification_token=${encodeURIComponent(token)}&challenge=abc123`)
    const right = await verify(VERIFICATION_TOKEN)
    expect(right.status).toBe(200)
    expect(await right.json()).toEqual({ challenge: "abc123" })
    const wrong = await verify("not-the-token")
    expect(wrong.status).toBe(401)
    expect(await wrong.text()).not.toContain("not-the-token")
    expect((await fetch(`${server.baseUrl}${CALLBACK_PATH}?challenge=abc123`)).status).toBe(401)
  })
})

describe("Oura notifications → fetch → store", () => {
  const OURA_USER = "oura-user-alice"
  let alice: string

  beforeAll(async () => {
    alice = (await linkedUser("alice", OURA_USER)).userId
  })

  it("fetches and normalizes a created daily_activity, sleep, workout and daily_spo2", async () => {
    const activity = first("daily_activity")
    const sleep = first("sleep", (doc) => doc.type === "long_sleep")
    const workout = first("workout")
    const spo2 = first("daily_spo2", (doc) => (doc.spo2_percentage as { average?: unknown } | null)?.average != null)
    delivered(await oura.create(OURA_USER, "daily_activity", activity))
    delivered(await oura.create(OURA_USER, "sleep", sleep))
    delivered(await oura.create(OURA_USER, "workout", workout))
    delivered(await oura.create(OURA_USER, "daily_spo2", spo2))

    const days = (day: string) => `start_date=${day}&end_date=${day}`
    const activities = await eventually(async () => {
      const body = ok(await api("GET", `/v2/summary/activity/${alice}?${days(activity.day as string)}`))
      return body.activity.length > 0 ? body.activity : undefined
    }, WAIT_MS)
    expect(activities).toHaveLength(1)
    expect(activities[0]).toMatchObject({ steps: activity.steps, source: { provider: "oura" } })

    const sleeps = await eventually(async () => {
      const body = ok(await api("GET", `/v2/summary/sleep/${alice}?start_date=2024-01-01&end_date=2025-12-31`))
      return body.sleep.length > 0 ? body.sleep : undefined
    }, WAIT_MS)
    expect(sleeps).toHaveLength(1)

    const workouts = await eventually(async () => {
      const body = ok(await api("GET", `/v2/summary/workouts/${alice}?start_date=2024-01-01&end_date=2025-12-31`))
      return body.workouts.length > 0 ? body.workouts : undefined
    }, WAIT_MS)
    expect(workouts).toHaveLength(1)

    const oxygen = await eventually(async () => {
      const body = ok(await api("GET", `/v2/timeseries/${alice}/blood_oxygen?start_date=2024-01-01&end_date=2025-12-31`)) as Array<{ value: number }>
      return body.length > 0 ? body : undefined
    }, WAIT_MS)
    expect(oxygen).toHaveLength(1)

    await drained()
    for (const resource of ["activity", "sleep", "workouts"]) {
      expect(await events(alice, `daily.data.${resource}.created`), resource).toBe(1)
    }
    expect(await events(alice, "daily.data.blood_oxygen.created")).toBeGreaterThan(0)
    // Each notification was fetched once, with the linked user's bearer token.
    const fetched = oura.requests.filter((r) => r.method === "GET" && r.path.startsWith("/v2/usercollection/"))
    expect(fetched.map((r) => r.path).sort()).toEqual(
      [
        `/v2/usercollection/daily_activity/${activity.id}`,
        `/v2/usercollection/sleep/${sleep.id}`,
        `/v2/usercollection/workout/${workout.id}`,
        `/v2/usercollection/daily_spo2/${spo2.id}`
      ].sort()
    )
  })

  it("a revised document emits .updated; the same notification again adds nothing", async () => {
    const activity = first("daily_activity")
    const revised = { ...activity, steps: (activity.steps as number) + 1000 }
    delivered(await oura.revise(OURA_USER, "daily_activity", revised))
    await drained()
    expect(await events(alice, "daily.data.activity.updated")).toBe(1)
    const body = ok(await api("GET", `/v2/summary/activity/${alice}?start_date=${activity.day}&end_date=${activity.day}`))
    expect(body.activity.map((a: { steps: number }) => a.steps)).toEqual([revised.steps])

    const before = await count("select count(*) as n from outbox where user_id = $1", [alice])
    const again = { userId: OURA_USER, dataType: "daily_activity", objectId: activity.id as string, eventType: "update" as const }
    delivered(await oura.notify(again))
    delivered(await oura.notify(again))
    await drained()
    expect(await count("select count(*) as n from outbox where user_id = $1", [alice])).toBe(before)
  })

  it("verifies the raw bytes, so a body Oura serialises with Python's spacing is taken too", async () => {
    oura.state.webhooks.bodyStyle = "python"
    try {
      const session = first("session")
      delivered(await oura.create(OURA_USER, "session", session))
      await drained()
      const [row] = (await db.query("select body from inbox where provider = 'oura' and kind = 'notification' and body like '%\"session\"%'")).rows
      expect(row.body).toContain('"data_type": "session"')
      expect(oura.requests.some((r) => r.path === `/v2/usercollection/session/${session.id}`)).toBe(true)
    } finally {
      oura.state.webhooks.bodyStyle = "compact"
    }
  })

  it("a fetch Oura rate-limits is retried; one Oura forbids is reported without Oura's words", async () => {
    const [, limited, forbidden] = documents("workout")
    oura.inject({ path: `/v2/usercollection/workout/${limited!.id}`, status: 429, headers: { "retry-after": "1" }, body: JSON.stringify({ detail: "Rate limit exceeded" }) })
    delivered(await oura.create(OURA_USER, "workout", limited!))
    await drained()
    expect(oura.requests.filter((r) => r.path === `/v2/usercollection/workout/${limited!.id}`)).toHaveLength(2)
    const stored = ok(await api("GET", `/v2/summary/workouts/${alice}?start_date=2024-01-01&end_date=2025-12-31`))
    expect(stored.workouts.length).toBe(2)

    oura.inject({ path: `/v2/usercollection/workout/${forbidden!.id}`, status: 403, body: JSON.stringify({ detail: "secret-oura-detail" }) })
    delivered(await oura.create(OURA_USER, "workout", forbidden!))
    await drained()
    const [row] = (await db.query("select outcome from inbox where provider = 'oura' and kind = 'notification' and body like $1", [`%${forbidden!.id}%`])).rows
    expect(row.outcome.errors).toHaveLength(1)
    expect(row.outcome.errors[0].message).toContain("403")
    expect(JSON.stringify(row.outcome)).not.toContain("secret-oura-detail")
    expect(oura.requests.filter((r) => r.path === `/v2/usercollection/workout/${forbidden!.id}`)).toHaveLength(1)
  })

  it("a delete notification fetches nothing and fails nothing", async () => {
    const workout = first("workout")
    const fetchedBefore = oura.requests.filter((r) => r.path.startsWith("/v2/usercollection/")).length
    delivered(await oura.remove(OURA_USER, "workout", workout.id as string))
    await drained()
    expect(oura.requests.filter((r) => r.path.startsWith("/v2/usercollection/")).length).toBe(fetchedBefore)
    const outcomes = (await db.query("select outcome from inbox where provider = 'oura' and kind = 'notification' and body like '%\"delete\"%'")).rows
    expect(outcomes.map((r) => r.outcome.errors)).toEqual([[]])
  })

  it("refuses unsigned and wrongly signed notifications with 401 and stores nothing", async () => {
    const body = JSON.stringify({ event_type: "create", data_type: "daily_activity", object_id: "forged", event_time: "2024-11-11T08:00:00+00:00", user_id: OURA_USER })
    const timestamp = String(Math.floor(Date.now() / 1000))
    const before = await inboxRows()
    const refusals = [
      await post(body, {}),
      await post(body, { "x-oura-timestamp": timestamp }),
      await post(body, { "x-oura-timestamp": timestamp, "x-oura-signature": ouraSignature("not-the-secret", timestamp, body) }),
      // Signed, then changed in transit.
      await post(body.replace("forged", "forgeD"), { "x-oura-timestamp": timestamp, "x-oura-signature": ouraSignature(oura.clientSecret, timestamp, body) }),
      // Signed for another timestamp.
      await post(body, { "x-oura-timestamp": String(Number(timestamp) + 1), "x-oura-signature": ouraSignature(oura.clientSecret, timestamp, body) })
    ]
    expect(refusals.map((r) => r.status)).toEqual([401, 401, 401, 401, 401])
    for (const refusal of refusals) expect(await refusal.text()).not.toContain(OURA_USER)
    expect(await inboxRows()).toBe(before)

    // The same body rightly signed (lower-case hex is accepted too) is taken.
    const signed = await post(body, { "x-oura-timestamp": timestamp, "x-oura-signature": ouraSignature(oura.clientSecret, timestamp, body).toLowerCase() })
    expect(signed.status).toBe(200)
    expect(await inboxRows()).toBe(before + 1)
  })

  it("answers 400 without echoing values to a signed body that is not a notification, and stores unknown data types", async () => {
    const timestamp = String(Math.floor(Date.now() / 1000))
    const signedPost = (body: string) => post(body, { "x-oura-timestamp": timestamp, "x-oura-signature": ouraSignature(oura.clientSecret, timestamp, body) })
    const before = await inboxRows()
    const notJson = await signedPost("{\"event_type\": secret-value")
    expect(notJson.status).toBe(400)
    expect(await notJson.text()).not.toContain("secret-value")
    const wrongShape = await signedPost(JSON.stringify({ event_type: "create", data_type: "daily_activity", object_id: 42, user_id: "secret-user" }))
    expect(wrongShape.status).toBe(400)
    expect(await wrongShape.text()).not.toContain("secret-user")
    expect(await inboxRows()).toBe(before)

    const unknown = await signedPost(JSON.stringify({ event_type: "create", data_type: "meal", object_id: "m1", event_time: "2024-11-11T08:00:00+00:00", user_id: OURA_USER }))
    expect(unknown.status).toBe(200)
    await drained()
    const [row] = (await db.query("select outcome from inbox where provider = 'oura' and body like '%\"meal\"%'")).rows
    expect(row.outcome).toMatchObject({ items: 0, errors: [] })
  })

  it("parks a notification for an Oura user nobody linked, and processes it once the user links", async () => {
    const OURA_BOB = "oura-user-bob"
    // One no other test here uses.
    const workout = structuredClone(documents("workout")[10]!)
    oura.connect(OURA_BOB)
    delivered(await oura.create(OURA_BOB, "workout", workout))
    await drained()
    expect(await count("select count(*) as n from unlinked_notifications where provider = 'oura' and provider_user_id = $1", [OURA_BOB])).toBe(1)
    expect(oura.requests.some((r) => r.path === `/v2/usercollection/workout/${workout.id}`)).toBe(false)

    const bob = await linkedUser("bob", OURA_BOB)
    expect(bob.replayed).toBe(1)
    const workouts = await eventually(async () => {
      const body = ok(await api("GET", `/v2/summary/workouts/${bob.userId}?start_date=2024-01-01&end_date=2025-12-31`))
      return body.workouts.length > 0 ? body.workouts : undefined
    }, WAIT_MS)
    expect(workouts).toHaveLength(1)
    await drained()
    expect(await events(bob.userId, "daily.data.workouts.created")).toBe(1)
    expect(await count("select count(*) as n from unlinked_notifications where provider = 'oura'")).toBe(0)
  })

  it("a deleted sleep leaves the data API and the Postgres sink's tables with a deleted event per record; the same delete again adds nothing", async () => {
    const sleep = structuredClone(documents("sleep").filter((doc) => doc.type === "long_sleep")[1]!)
    const id = sleep.id as string
    const recordsOf = async () =>
      new Map((await db.query("select resource, id from records where user_id = $1 and provider = 'oura' and source_id = $2", [alice, id])).rows.map((r) => [r.resource as string, r.id as string]))
    const window = `start_date=${encodeURIComponent(sleep.bedtime_start as string)}&end_date=${encodeURIComponent(sleep.bedtime_end as string)}`
    const samplesIn = async (resource: string) => (ok(await api("GET", `/v2/timeseries/${alice}/${resource}?${window}`)) as Array<unknown>).length
    const sleepIds = async () =>
      (ok(await api("GET", `/v2/summary/sleep/${alice}?start_date=2024-01-01&end_date=2025-12-31`)).sleep as Array<{ id: string }>).map((s) => s.id)
    const sinkRows = async (records: Map<string, string>) => ({
      sleep: await count("select count(*) as n from wearflow_data.sleep where id = $1", [records.get("sleep")]),
      heartrate: await count("select count(*) as n from wearflow_data.heartrate where record_id = $1", [records.get("heartrate")]),
      hrv: await count("select count(*) as n from wearflow_data.hrv where record_id = $1", [records.get("hrv")])
    })

    delivered(await oura.create(OURA_USER, "sleep", sleep))
    await drained()
    const records = await recordsOf()
    expect([...records.keys()].sort()).toEqual(["heartrate", "hrv", "respiratory_rate", "sleep"])
    expect(await sleepIds()).toContain(records.get("sleep"))
    const heartrate = await samplesIn("heartrate")
    const hrv = await samplesIn("hrv")
    const own = await count("select count(*) as n from samples where record_id = $1", [records.get("heartrate")])
    expect(own).toBeGreaterThan(0)
    expect(heartrate).toBeGreaterThanOrEqual(own)
    const stored = await eventually(async () => {
      const rows = await sinkRows(records)
      return rows.sleep === 1 && rows.heartrate > 0 && rows.hrv > 0 ? rows : undefined
    }, WAIT_MS)
    expect(stored.heartrate).toBe(own)

    const fetchedBefore = oura.requests.filter((r) => r.path.startsWith("/v2/usercollection/")).length
    delivered(await oura.remove(OURA_USER, "sleep", id))
    await drained()
    // Nothing was fetched for it: the document is gone.
    expect(oura.requests.filter((r) => r.path.startsWith("/v2/usercollection/")).length).toBe(fetchedBefore)
    expect((await recordsOf()).size).toBe(0)
    expect(await count("select count(*) as n from samples where record_id = any($1::uuid[])", [[...records.values()]])).toBe(0)
    expect(await sleepIds()).not.toContain(records.get("sleep"))
    expect(await samplesIn("heartrate")).toBe(heartrate - own)
    expect(await samplesIn("hrv")).toBeLessThan(hrv)
    for (const resource of records.keys()) expect(await events(alice, `daily.data.${resource}.deleted`), resource).toBe(1)
    const [deleted] = (await db.query("select payload, record_id from outbox where user_id = $1 and event_type = 'daily.data.sleep.deleted'", [alice])).rows
    expect(deleted.payload.data).toMatchObject({ id: records.get("sleep"), user_id: alice, provider: "oura", resource: "sleep", source_id: id })
    expect(deleted.record_id).toBe(records.get("sleep"))
    await eventually(async () => {
      const rows = await sinkRows(records)
      return rows.sleep + rows.heartrate + rows.hrv === 0 ? true : undefined
    }, WAIT_MS)

    // The same delete notification again: nothing to remove, no event.
    const before = await count("select count(*) as n from outbox where user_id = $1", [alice])
    delivered(await oura.notify({ userId: OURA_USER, dataType: "sleep", objectId: id, eventType: "delete" }))
    await drained()
    expect(await count("select count(*) as n from outbox where user_id = $1", [alice])).toBe(before)
  })

  it("a sleep period Oura now returns as `deleted` is removed too", async () => {
    const sleep = structuredClone(documents("sleep").filter((doc) => doc.type === "long_sleep")[2]!)
    const stored = () => count("select count(*) as n from records where user_id = $1 and provider = 'oura' and source_id = $2", [alice, sleep.id])
    delivered(await oura.create(OURA_USER, "sleep", sleep))
    await drained()
    expect(await stored()).toBe(4)
    delivered(await oura.revise(OURA_USER, "sleep", { ...sleep, type: "deleted" }))
    await drained()
    expect(await stored()).toBe(0)
    expect(await count(
      "select count(*) as n from outbox where user_id = $1 and event_type like 'daily.data.%.deleted' and payload->'data'->>'source_id' = $2", [alice, sleep.id])).toBe(4)
  })
})
