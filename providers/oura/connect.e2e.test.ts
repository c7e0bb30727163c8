/**
 * Oura connections and history end to end: the real Bun server on a fresh database, pointed
 * at the fake Oura for both its API and its consent screen. A link URL runs the OAuth 2.0
 * flow in a browser's place; a token near its expiry is refreshed once with its single-use
 * refresh token, and the rotated one works next time; disconnecting revokes the grant; a
 * backfill pulls a month of history page by page (through a 429) and announces each resource
 * only once its records are stored.
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
import { DEFAULT_SCOPES } from "./config.ts"
import { type FakeOura, type OuraDocument, startFakeOura } from "./testing/fake-oura.ts"
import { seedRecent } from "./testing/history.ts"

const API_KEY = "oura-connect-api-key"
const REDIRECT = "https://app.example/oura-done"
const WAIT_MS = 90_000
const DAY_MS = 86_400_000

let oura: FakeOura
let server: RunningServer
let db: pg.Client
let dataDir: string
const api = wearflowApi(() => server.baseUrl, API_KEY)

/** One browser step: GET without following redirects. */
const visit = async (url: string) => {
  const response = await fetch(url, { redirect: "manual" })
  return { status: response.status, location: response.headers.get("location") ?? undefined, text: await response.text() }
}

const createUser = async (clientUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: clientUserId })
  expect(created.status).toBe(200)
  return created.body.user_id as string
}

const connectionOf = async (userId: string) =>
  (await db.query("select * from provider_connections where user_id = $1 and provider = 'oura'", [userId])).rows[0]

const eventsOf = async (userId: string, type: string) =>
  (await db.query("select payload from outbox where user_id = $1 and event_type = $2 order by position", [userId, type])).rows.map((r) => r.payload)

/** The refresh-token grants the fake answered, with the refresh token each presented. */
const refreshRequests = () =>
  oura.requests.filter((r) => r.path === "/oauth/token" && new URLSearchParams(r.body).get("grant_type") === "refresh_token").map((r) => new URLSearchParams(r.body).get("refresh_token"))

/** Runs the connect flow for Oura user `ouraUserId` as a browser would; answers the landing URL. */
const connect = async (userId: string, ouraUserId: string) => {
  oura.state.nextConsent = ouraUserId
  const link = await api("POST", "/v2/link/token", { user_id: userId, provider: "oura", redirect_url: REDIRECT })
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

beforeAll(async () => {
  oura = await startFakeOura()
  const url = Redacted.value(await freshDatabaseUrl())
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-oura-connect-"))
  server = await startServer((baseUrl) => ({
    WEARFLOW_PLUGINS: "oura,postgres,webhooks,s3",
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    // The chain's own budget (days per window) must not be what paces this test.
    WEARFLOW_BACKFILL_BUDGET_DAYS: "100000",
    WEARFLOW_TOKEN_REFRESH_INTERVAL: "100 millis",
    DATABASE_URL: url,
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dataDir,
    WEARFLOW_PUBLIC_URL: baseUrl,
    OURA_API_URL: oura.url,
    OURA_AUTH_URL: `${oura.url}/oauth/authorize`,
    OURA_CLIENT_ID: oura.clientId,
    OURA_CLIENT_SECRET: oura.clientSecret
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

describe("Oura connect flow", () => {
  it("takes the user from the link URL to Oura's consent and back, stores the connection with the granted scopes and announces it", async () => {
    const userId = await createUser("oura-connects")
    // The user unticks heart rate on the consent screen: granted ⊂ requested.
    oura.addUser("oura-consenting", { approvedScopes: DEFAULT_SCOPES.filter((scope) => scope !== "heartrate") })
    const { consent, landing } = await connect(userId, "oura-consenting")
    expect(consent.origin + consent.pathname).toBe(`${oura.url}/oauth/authorize`)
    expect(consent.searchParams.get("client_id")).toBe(oura.clientId)
    expect(consent.searchParams.get("response_type")).toBe("code")
    expect(consent.searchParams.get("scope")).toBe(DEFAULT_SCOPES.join(" "))
    expect(consent.searchParams.get("code_challenge")).toBeNull()
    expect(consent.searchParams.get("redirect_uri")).toBe(`${server.baseUrl}/v2/link/oura/callback`)
    expect(landing.origin + landing.pathname).toBe(REDIRECT)
    expect(Object.fromEntries(landing.searchParams)).toEqual({ state: "success", provider: "oura" })

    const granted = DEFAULT_SCOPES.filter((scope) => scope !== "heartrate")
    const user = await api("GET", `/v2/user/${userId}`)
    expect(user.body.connected_sources).toEqual([
      expect.objectContaining({ provider: "oura", provider_user_id: "oura-consenting", status: "active", scopes: granted })
    ])
    // The token exchange carried the client credentials in the body, not a PKCE verifier.
    const exchange = oura.requests.find((r) => r.path === "/oauth/token" && r.body.includes("grant_type=authorization_code"))!
    expect(new URLSearchParams(exchange.body).get("client_id")).toBe(oura.clientId)
    expect(new URLSearchParams(exchange.body).has("code_verifier")).toBe(false)

    const [created] = await eventsOf(userId, "provider.connection.created")
    expect(created.data).toMatchObject({
      user_id: userId,
      provider: { slug: "oura", name: "Oura" },
      external_user_id: "oura-consenting",
      resource_availability: {
        sleep: { status: "available" },
        workouts: { status: "available" },
        heartrate: { status: "unavailable", scope_requirements: { user_denied: { required: ["heartrate"] } } }
      }
    })
  })

  it("sends the user back with error_type=access_denied when they decline", async () => {
    const userId = await createUser("oura-declines")
    oura.addUser("oura-declining", { deniesConsent: true })
    const { landing } = await connect(userId, "oura-declining")
    expect(Object.fromEntries(landing.searchParams)).toEqual({ state: "error", provider: "oura", error_type: "access_denied" })
    expect(await connectionOf(userId)).toBeUndefined()
  })

  it("refreshes a token near its expiry once, stores the rotated pair, and uses the new refresh token next time", async () => {
    const userId = await createUser("oura-refreshes")
    // Tokens that expire within the hour are due for refresh at once.
    oura.state.oauth.expiresIn = 15 * 60
    await connect(userId, "oura-refreshing")
    oura.state.oauth.expiresIn = 86_400
    const firstRefresh = await eventually(async () => {
      const row = await connectionOf(userId)
      return row.access_token_expires_at.getTime() > Date.now() + 23 * 3_600_000 ? row : undefined
    }, WAIT_MS)
    expect(firstRefresh.last_error).toBeNull()
    const [used] = refreshRequests()
    expect(oura.state.refreshTokens.get(used!)?.used).toBe(true)

    // Due again: the refresh must present the rotated token (the first one is spent at Oura).
    await db.query("update provider_connections set access_token_expires_at = now() + interval '5 minutes' where user_id = $1 and provider = 'oura'", [userId])
    await eventually(async () => ((await connectionOf(userId)).access_token_expires_at.getTime() > Date.now() + 23 * 3_600_000 ? true : undefined), WAIT_MS)
    const presented = refreshRequests()
    expect(presented).toHaveLength(2)
    expect(new Set(presented).size).toBe(2)
    expect((await connectionOf(userId)).last_error).toBeNull()
  })
})

describe("Oura disconnect", () => {
  it("revokes the grant at Oura and erases the tokens; a token Oura no longer knows does not stop it", async () => {
    const userId = await createUser("oura-leaves")
    await connect(userId, "oura-leaving")
    const grant = [...oura.state.grants.values()].find((g) => g.userId === "oura-leaving")!
    const gone = await api("DELETE", `/v2/user/${userId}/connections/oura`)
    expect(gone.status).toBe(200)
    expect(gone.body).toMatchObject({ provider: "oura", status: "disconnected", provider_deregistered: true })
    expect(grant.revoked).toBe(true)
    expect(oura.requests.filter((r) => r.path === "/oauth/revoke")).toHaveLength(1)
    expect(await connectionOf(userId)).toMatchObject({ status: "disconnected", access_token: null, refresh_token: null })

    // Revoked by the user at Oura already: a 4xx answer still counts as deregistered.
    const other = await createUser("oura-revoked-elsewhere")
    await connect(other, "oura-revoked")
    oura.inject({ path: "/oauth/revoke", status: 401, body: JSON.stringify({ detail: "Token Already Used Or Revoked" }) })
    const again = await api("DELETE", `/v2/user/${other}/connections/oura`)
    expect(again.body).toMatchObject({ status: "disconnected", provider_deregistered: true })
  })
})

describe("Oura history", () => {
  it("pulls a month page by page through a 429, stores it, and announces each resource only after its records are stored", async () => {
    const ouraUser = "oura-with-history"
    const seeded = seedRecent(oura, ouraUser, ["workout", "sleep", "daily_activity", "daily_readiness", "heartrate"])
    const userId = await createUser("oura-history")
    await connect(userId, ouraUser)
    // Oura is over its limit for the first workout listing: the window waits and goes on.
    oura.inject({ path: "/v2/usercollection/workout", status: 429, headers: { "retry-after": "1" }, body: JSON.stringify({ detail: "Rate limit exceeded" }) })
    const asked = Date.now()
    const started = await api("POST", `/v2/user/${userId}/backfill/oura`, { days: 30 })
    expect(started.status, JSON.stringify(started.body)).toBeLessThan(300)

    const view = await eventually(async () => {
      const { body } = await api("GET", `/v2/introspect/historical_pull?user_id=${userId}&provider=oura`)
      const [latest] = body.data
      return latest && latest.status !== "scheduled" && latest.status !== "running" ? latest : undefined
    }, WAIT_MS)
    expect(view.status, JSON.stringify(view)).toBe("done")
    for (const [resource, pull] of Object.entries(view.historical_pulls as Record<string, { status: string }>)) {
      expect(pull.status, resource).toBe("success")
    }

    // What the month holds: days whose UTC midnight lies in the 30 days asked for.
    const firstDay = new Date(Math.ceil((asked - 30 * DAY_MS) / DAY_MS) * DAY_MS).toISOString().slice(0, 10)
    const inMonth = (docs: ReadonlyArray<OuraDocument>) => docs.filter((doc) => String(doc["day"]) >= firstDay)
    const workouts = inMonth(seeded["workout"]!)
    expect(workouts.length).toBeGreaterThan(oura.state.pageSize * 2)
    const stored = async (resource: string) =>
      Number((await db.query("select count(*) as n from records where user_id = $1 and resource = $2", [userId, resource])).rows[0].n)
    expect(await stored("workouts")).toBe(workouts.length)
    const viaApi = await api("GET", `/v2/summary/workouts/${userId}?start_date=${firstDay}&end_date=${new Date().toISOString().slice(0, 10)}`)
    expect(viaApi.body.workouts).toHaveLength(workouts.length)
    expect(await stored("sleep")).toBeGreaterThan(0)
    expect(await stored("heartrate")).toBeGreaterThan(0)
    // Pages at the fake's size, followed by next_token; the first listing was refused (429) and asked again.
    const listings = oura.requests.filter((r) => r.path === "/v2/usercollection/workout")
    expect(listings.filter((r) => r.query.next_token !== undefined).length).toBeGreaterThanOrEqual(Math.ceil(workouts.length / oura.state.pageSize) - 1)
    expect(listings.filter((r) => r.query.next_token === undefined).length).toBe(2)

    for (const resource of ["workouts", "sleep", "activity", "heartrate"]) {
      const [notice] = (await db.query("select position from outbox where user_id = $1 and event_type = $2", [userId, `historical.data.${resource}.created`])).rows
      expect(notice, resource).toBeDefined()
      const [last] = (await db.query(
        "select max(o.position) as position from outbox o join records r on r.id = o.record_id where r.user_id = $1 and r.resource = $2",
        [userId, resource]
      )).rows
      expect(BigInt(notice.position) > BigInt(last.position), resource).toBe(true)
    }
    const recordEvents = (await db.query("select historical from outbox o join records r on r.id = o.record_id where r.user_id = $1 and r.resource = 'workouts'", [userId])).rows
    expect(recordEvents.length).toBeGreaterThan(0)
    expect(recordEvents.every((e) => e.historical)).toBe(true)
  })
})
