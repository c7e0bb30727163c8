/**
 * Withings end to end: the real Bun server on a fresh database, pointed at the fake Withings
 * for its API and its consent screen. A link URL runs the OAuth 2.0 flow in a browser's
 * place; linking starts the connection's durable poll, whose first round stores what the
 * user has and subscribes the notification categories the granted scopes allow (Withings'
 * HEAD check answered by the server). A notification wakes the poll at once (the interval is
 * an hour); a revision arrives as `.updated`; Withings' "too many requests" status makes the
 * poll wait and lose nothing; a kill -9 in the middle of a round loses no page and stores
 * none twice; two processes on one database never poll one connection at once; a token
 * revoked at Withings ends the poll with `provider.connection.error`; disconnecting revokes
 * the grant (signed) and its subscriptions; a backfill announces `historical.data.*` once the
 * range is stored.
 */
import { Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import { eventually, type RunningServer, startServer } from "../../test/support/server.ts"
import { wearflowApi } from "../../test/support/wearflow-client.ts"
import { type FakeWithings, startFakeWithings, type WithingsDocument } from "./testing/fake-withings.ts"

const API_KEY = "withings-e2e-api-key"
const SECRET = "withings-e2e-notify-secret-0123"
const REDIRECT = "https://app.example/withings-done"
const WAIT_MS = 90_000
const DAY_S = 86_400

let withings: FakeWithings
let server: RunningServer
/** A second process on the same database, from the start (processes joining later move shards first). */
let second: RunningServer
let db: pg.Client
let databaseUrl: string
let dataDir: string
const api = wearflowApi(() => server.baseUrl, API_KEY)

const envFor = (baseUrl: string, runner: string): Record<string, string> => ({
  WEARFLOW_PLUGINS: "withings,postgres",
  WEARFLOW_BACKFILL_ON_CONNECT: "false",
  WEARFLOW_BACKFILL_BUDGET_DAYS: "100000",
  WEARFLOW_BACKFILL_QUIET_PERIOD: "1 second",
  WEARFLOW_SYNC_START_INTERVAL: "300 millis",
  WEARFLOW_SYNC_RETRY_BACKOFF: "500 millis",
  WEARFLOW_SYNC_MAX_BACKOFF: "2 seconds",
  WEARFLOW_RUNNER_ADDRESS: runner,
  WEARFLOW_RUNNER_LOCK_EXPIRATION: "3 seconds",
  DATABASE_URL: databaseUrl,
  WEARFLOW_API_KEY: API_KEY,
  WEARFLOW_DATA_DIR: dataDir,
  WEARFLOW_PUBLIC_URL: baseUrl,
  WITHINGS_API_URL: withings.url,
  WITHINGS_AUTH_URL: `${withings.url}/oauth2_user/authorize2`,
  WITHINGS_CLIENT_ID: withings.clientId,
  WITHINGS_CLIENT_SECRET: withings.clientSecret,
  WITHINGS_NOTIFY_SECRET: SECRET,
  WITHINGS_RATE_LIMIT_BACKOFF: "1 second",
  // The fake limits nothing unless a test asks it to (then it answers 601): the plugin's own
  // share of Withings' 120 a minute would otherwise pace these tests.
  WITHINGS_RATE_LIMIT: "100000"
})

/** One browser step: GET without following redirects. */
const visit = async (url: string) => {
  const response = await fetch(url, { redirect: "manual" })
  return { status: response.status, location: response.headers.get("location") ?? undefined }
}

const createUser = async (clientUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: clientUserId })
  expect(created.status).toBe(200)
  return created.body.user_id as string
}

/** Runs the connect flow for Withings user `withingsUserId` as a browser would. */
const connect = async (userId: string, withingsUserId: string) => {
  withings.state.nextConsent = withingsUserId
  const link = await api("POST", "/v2/link/token", { user_id: userId, provider: "withings", redirect_url: REDIRECT })
  expect(link.status).toBe(200)
  const start = await visit(link.body.link_web_url)
  expect(start.status).toBe(302)
  const consent = new URL(start.location!)
  const approved = await visit(consent.toString())
  expect(approved.status).toBe(302)
  const done = await visit(approved.location!)
  expect(done.status).toBe(302)
  return { consent, landing: new URL(done.location!) }
}

/** Links Withings user `withingsUserId` through the API with tokens the fake issues. */
const linkByApi = async (userId: string, withingsUserId: string) => {
  withings.addUser(withingsUserId)
  const tokens = withings.connect(withingsUserId)
  const linked = await api("POST", `/v2/user/${userId}/connections/withings`, {
    provider_user_id: withingsUserId,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    expires_at: new Date(Date.now() + tokens.expires_in * 1000).toISOString(),
    scopes: ["user.metrics", "user.activity"]
  })
  expect(linked.status).toBeLessThan(300)
}

interface SyncView {
  readonly rounds: number
  readonly cursor: string | null
  readonly next_poll_at: string | null
  readonly last_error: string | null
  readonly state: string
  readonly end_reason: string | null
}

const syncOf = async (userId: string, at: RunningServer = server): Promise<SyncView | undefined> => {
  const { body, status } = await wearflowApi(() => at.baseUrl, API_KEY)("GET", `/v2/user/${userId}/sync`)
  expect(status).toBe(200)
  return (body.data as Array<SyncView & { provider: string }>).find((s) => s.provider === "withings")
}

/** Waits until the connection's poll has finished more than `rounds` rounds; answers its view. */
const afterRound = (userId: string, rounds: number, at?: RunningServer) =>
  eventually(async () => {
    const sync = await syncOf(userId, at)
    return sync !== undefined && sync.rounds > rounds && sync.state !== "polling" ? sync : undefined
  }, WAIT_MS)

const recordOf = async (userId: string, resource: string, sourceId: string) =>
  (await db.query("select data, updated_at from records where user_id = $1 and provider = 'withings' and resource = $2 and source_id = $3", [userId, resource, sourceId])).rows[0] as
    | { data: Record<string, unknown>; updated_at: Date }
    | undefined

const eventCount = async (userId: string, type: string) =>
  Number((await db.query("select count(*) as n from outbox where user_id = $1 and event_type = $2", [userId, type])).rows[0].n)

let nextGroup = 7_000_000_001
/** A weight measure group taken `minutesAgo` minutes ago (its grpid is new). */
const weighIn = (kg: number, minutesAgo = 5): WithingsDocument => {
  const date = Math.floor(Date.now() / 1000) - minutesAgo * 60
  return {
    grpid: nextGroup++,
    attrib: 0,
    date,
    category: 1,
    deviceid: "e2e-scale",
    hash_deviceid: "e2e-scale",
    model: "Body+",
    modelid: 5,
    comment: null,
    measures: [{ value: Math.round(kg * 1000), type: 1, unit: -3, algo: 0, fm: 3 }]
  }
}

/** Withings' notification for a measure category, as it POSTs it (to one server, or via the fake's subscriptions). */
const notifyDirect = (at: RunningServer, withingsUserId: string, appli = 1) => {
  const now = Math.floor(Date.now() / 1000)
  return fetch(`${at.baseUrl}/api/v1/webhooks/withings/${SECRET}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ userid: withingsUserId, appli: String(appli), startdate: String(now - 3600), enddate: String(now) }).toString()
  })
}

/** Whole days from the recorded examples' latest measure (January 2024) to yesterday. */
const SHIFT_DAYS = Math.floor((Date.now() - Date.parse("2024-01-27T00:00:00Z")) / (DAY_S * 1000))

beforeAll(async () => {
  withings = await startFakeWithings()
  databaseUrl = Redacted.value(await freshDatabaseUrl())
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-withings-e2e-"))
  server = await startServer((baseUrl) => envFor(baseUrl, "withings-e2e-a:1"))
  second = await startServer((baseUrl) => envFor(baseUrl, "withings-e2e-b:1"))
  db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
})

afterAll(async () => {
  await db?.end()
  await second?.stop()
  await server?.stop()
  await withings?.close()
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true })
})

describe("Withings, polled", () => {
  const withingsUserId = "4815162342"
  let userId: string

  it("connects through the consent screen, polls what the user has, and subscribes what the granted scopes allow", async () => {
    userId = await createUser("withings-first")
    // Synced just now; the 300 recorded nights are left out (a night is a day window each: minutes of polling).
    withings.seed(withingsUserId, ["measuregrps", "activities", "workouts", "devices"], { shiftDays: SHIFT_DAYS, touched: true })
    const { consent, landing } = await connect(userId, withingsUserId)
    expect(consent.origin + consent.pathname).toBe(`${withings.url}/oauth2_user/authorize2`)
    expect(consent.searchParams.get("scope")).toBe("user.metrics,user.activity")
    expect(consent.searchParams.get("redirect_uri")).toBe(`${server.baseUrl}/v2/link/withings/callback`)
    expect(Object.fromEntries(landing.searchParams)).toEqual({ state: "success", provider: "withings" })
    const user = await api("GET", `/v2/user/${userId}`)
    expect(user.body.connected_sources).toEqual([
      expect.objectContaining({ provider: "withings", provider_user_id: withingsUserId, status: "active", scopes: ["user.metrics", "user.activity"] })
    ])

    const first = await afterRound(userId, 0)
    expect(first.last_error).toBeNull()
    // The next poll is the interval away (an hour): only a notification brings it sooner.
    expect(Date.parse(first.next_poll_at!) - Date.now()).toBeGreaterThan(30 * 60_000)
    const stored = await eventually(async () => {
      const { rows } = await db.query("select resource, count(*)::int as n from records where user_id = $1 group by resource", [userId])
      return rows.length >= 2 ? Object.fromEntries(rows.map((r) => [r.resource, r.n])) : undefined
    }, WAIT_MS)
    expect(Object.keys(stored).length).toBeGreaterThanOrEqual(2)
    expect(await eventCount(userId, "provider.connection.created")).toBe(1)

    // Subscribed: every default category the two scopes allow, at the secret callback URL, which answered Withings' HEAD check.
    // Either process may run the poll; each subscribes under its own public URL here (one in production).
    const callbacks = [server, second].map((at) => `${at.baseUrl}/api/v1/webhooks/withings/${SECRET}`)
    const applis = withings.state.subscriptions.filter((s) => s.userId === withingsUserId && callbacks.includes(s.callbackurl)).map((s) => s.appli).sort((a, b) => a - b)
    expect(applis).toEqual([1, 2, 4, 16, 44, 46])
    const checks = withings.state.checks.filter((c) => callbacks.includes(c.callbackurl))
    expect(checks.length).toBeGreaterThan(0)
    expect(checks.every((c) => c.passed)).toBe(true)
  }, 180_000)

  it("a notification wakes the poll at once, and a revision arrives as .updated", async () => {
    const before = (await syncOf(userId))!.rounds
    const group = withings.add(withingsUserId, "measuregrps", weighIn(71.5))
    const sourceId = `meas:${group["grpid"]}`
    const delivered = await withings.notify(withingsUserId, 1, Number(group["date"]) - 60, Number(group["date"]) + 60)
    expect(delivered.every((status) => status === 200)).toBe(true)
    const body = await eventually(() => recordOf(userId, "body", sourceId), WAIT_MS)
    expect(body.data["weight"]).toBe(71.5)
    // The page is stored (and processed) before the round that fetched it is recorded.
    await afterRound(userId, before)
    expect(await eventCount(userId, "daily.data.body.created")).toBeGreaterThanOrEqual(1)

    const updatedBefore = await eventCount(userId, "daily.data.body.updated")
    withings.revise(withingsUserId, "measuregrps", { ...group, measures: [{ value: 71_900, type: 1, unit: -3, algo: 0, fm: 3 }] })
    await withings.notify(withingsUserId, 1, Number(group["date"]) - 60, Number(group["date"]) + 60)
    await eventually(async () => ((await recordOf(userId, "body", sourceId))?.data["weight"] === 71.9 ? true : undefined), WAIT_MS)
    await eventually(async () => ((await eventCount(userId, "daily.data.body.updated")) > updatedBefore ? true : undefined), WAIT_MS)
  }, 180_000)

  it("waits out Withings' 'too many requests' status and loses nothing", async () => {
    const limitedBefore = withings.state.counters.rateLimited
    withings.state.rateLimit = { perWindow: 0, windowMs: 60_000 }
    const group = withings.add(withingsUserId, "measuregrps", weighIn(72.25))
    const response = await notifyDirect(server, withingsUserId)
    expect(response.status).toBe(200)
    const limited = await eventually(async () => {
      const sync = await syncOf(userId)
      return sync?.last_error !== null && /rate limit/i.test(sync?.last_error ?? "") ? sync : undefined
    }, WAIT_MS)
    expect(limited.state).not.toBe("ended")
    expect(withings.state.counters.rateLimited).toBeGreaterThan(limitedBefore)
    expect(await recordOf(userId, "body", `meas:${group["grpid"]}`)).toBeUndefined()

    withings.state.rateLimit = { perWindow: undefined, windowMs: 60_000 }
    const body = await eventually(() => recordOf(userId, "body", `meas:${group["grpid"]}`), WAIT_MS)
    expect(body.data["weight"]).toBe(72.25)
    await eventually(async () => ((await syncOf(userId))?.last_error === null ? true : undefined), WAIT_MS)
  }, 180_000)

  it("two processes on one database never poll one connection at once", async () => {
    const users = await Promise.all(["5100000001", "5100000002", "5100000003"].map(async (id) => {
      const local = await createUser(`withings-pair-${id}`)
      await linkByApi(local, id)
      return { local, id }
    }))
    const started = await Promise.all(users.map(({ local }) => afterRound(local, 0)))
    // Each request takes a while, so two rounds of one connection would overlap if both processes ran one.
    withings.inject({ path: /^\/(measure|v2\/measure|v2\/sleep|v2\/user|notify)$/, delayMs: 100, times: 10_000 })
    try {
      for (const { id } of users) withings.state.maxInFlight.set(id, 0)
      // Waves of notifications to both processes, each waking every connection's poll again
      // (a wake while a round runs asks for one more round after it).
      let rounds = started.map((view) => view.rounds)
      for (let wave = 0; wave < 3; wave++) {
        for (const { id } of users) {
          expect((await notifyDirect(server, id)).status).toBe(200)
          expect((await notifyDirect(second, id)).status).toBe(200)
        }
        rounds = (await Promise.all(users.map(({ local }, i) => afterRound(local, rounds[i]!)))).map((view) => view.rounds)
      }
      for (const { id } of users) expect(withings.state.maxInFlight.get(id), `requests at once for ${id}`).toBe(1)
    } finally {
      withings.clearInjected()
    }
  }, 240_000)

  it("a kill -9 in the middle of a round loses no page and stores none twice", async () => {
    const groups = Array.from({ length: 8 }, (_, i) => withings.add(withingsUserId, "measuregrps", weighIn(60 + i, 30 + i)))
    const createdBefore = await eventCount(userId, "daily.data.body.created")
    // The round's second page of measures (the fake serves three a page) is held until the server is gone.
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    withings.inject({ path: "/measure", action: "getmeas", params: { offset: "3" }, hold: held })
    const seen = withings.requests.length
    expect((await notifyDirect(server, withingsUserId)).status).toBe(200)
    await eventually(async () => (withings.requests.slice(seen).some((r) => r.params["action"] === "getmeas" && r.params["offset"] === "3") ? true : undefined), WAIT_MS)
    expect(await server.stop("SIGKILL")).toBeNull()
    release()

    server = await startServer((baseUrl) => envFor(baseUrl, "withings-e2e-a:1"))
    for (const group of groups) await eventually(() => recordOf(userId, "body", `meas:${group["grpid"]}`), WAIT_MS)
    const { rows } = await db.query(
      "select source_id, count(*)::int as n from records where user_id = $1 and resource = 'body' and source_id = any($2) group by source_id",
      [userId, groups.map((g) => `meas:${g["grpid"]}`)]
    )
    expect(rows.map((r) => r.n)).toEqual(groups.map(() => 1))
    // Each new group announced exactly once, though its page was fetched again after the restart.
    await eventually(async () => ((await eventCount(userId, "daily.data.body.created")) === createdBefore + groups.length ? true : undefined), WAIT_MS)
    const { rows: dupes } = await db.query(
      "select payload->'data'->>'id' as id, count(*)::int as n from outbox where user_id = $1 and event_type = 'daily.data.body.created' group by 1 having count(*) > 1",
      [userId]
    )
    expect(dupes).toEqual([])
  }, 240_000)

  it("a backfill stores the requested range, then announces historical.data.* per resource", async () => {
    const started = await api("POST", `/v2/user/${userId}/backfill/withings`, { days: 30 })
    expect(started.status).toBe(202)
    await eventually(async () => ((await eventCount(userId, "historical.data.body.created")) > 0 ? true : undefined), WAIT_MS)
    const { rows } = await db.query("select payload from outbox where user_id = $1 and event_type like 'historical.data.%' order by position", [userId])
    expect(rows.length).toBeGreaterThan(0)
  }, 180_000)

  it("a token revoked at Withings ends the poll with provider.connection.error", async () => {
    const other = await createUser("withings-revoked")
    await linkByApi(other, "5200000001")
    await afterRound(other, 0)
    for (const grant of withings.state.grants.values()) if (grant.userId === "5200000001") grant.revoked = true
    expect((await notifyDirect(server, "5200000001")).status).toBe(200)
    const ended = await eventually(async () => {
      const sync = await syncOf(other)
      return sync?.state === "ended" ? sync : undefined
    }, WAIT_MS)
    expect(ended.end_reason).toMatch(/refused/)
    await eventually(async () => ((await eventCount(other, "provider.connection.error")) > 0 ? true : undefined), WAIT_MS)
    const { rows } = await db.query("select last_error from provider_connections where user_id = $1", [other])
    expect(rows).toEqual([{ last_error: "provider_credential_error" }])
  }, 180_000)

  it("disconnecting revokes the grant with a signed request, drops the subscriptions and ends the poll", async () => {
    const removed = await api("DELETE", `/v2/user/${userId}/connections/withings`)
    expect(removed.status).toBeLessThan(300)
    await eventually(async () => {
      const grants = [...withings.state.grants.values()].filter((g) => g.userId === withingsUserId)
      return grants.length > 0 && grants.every((g) => g.revoked) ? true : undefined
    }, WAIT_MS)
    expect(withings.state.subscriptions.filter((s) => s.userId === withingsUserId)).toEqual([])
    const ended = await eventually(async () => {
      const sync = await syncOf(userId)
      return sync?.state === "ended" ? sync : undefined
    }, WAIT_MS)
    expect(ended.end_reason).toMatch(/disconnected|inactive|connection is/)
  }, 180_000)
})
