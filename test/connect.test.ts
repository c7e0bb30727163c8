/**
 * Connections end to end: the real server and a fake Garmin on loopback. Link URLs run the
 * OAuth 2.0 PKCE and OAuth 1.0a flows in a browser's place; tokens are refreshed before they
 * expire, once, even with two server processes; disconnecting deregisters at Garmin.
 */
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { eventually } from "./support/server.ts"
import { dailySteps, garminWebhook, wearflowApi } from "./support/wearflow-client.ts"
import { scrape } from "./support/metrics.ts"

const CONSUMER = { consumerKey: "connect-consumer-key", consumerSecret: "connect-consumer-secret" }
const API_KEY = "connect-api-key"
const ENCRYPTION_KEY = randomBytes(32).toString("base64")
const REDIRECT = "https://app.example/garmin-done"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const NOW = Math.floor(Date.now() / 1000)

let stack: GarminStack
let garmin: FakeGarmin
let db: pg.Client
let base = ""

const api = wearflowApi(() => base, API_KEY)
const ping = garminWebhook(() => base, CONSUMER.consumerKey, "ping")

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

const linkUrl = async (userId: string, extra: Record<string, unknown> = {}) => {
  const link = await api("POST", "/v2/link/token", { user_id: userId, provider: "garmin", ...extra })
  expect(link.status).toBe(200)
  return link.body as { link_token: string; link_web_url: string; expires_at: string }
}

const connectionOf = async (userId: string) =>
  (await db.query("select * from provider_connections where user_id = $1 and provider = 'garmin'", [userId])).rows[0]

/** Token refresh rounds a server has finished (its /metrics). */
const refreshRounds = async (baseUrl: string) => {
  return (await scrape(baseUrl, "wearflow_token_refresh_rounds_total")) ?? 0
}

/**
 * Waits until every server has finished two more refresh rounds: the second of them began
 * after now, so whatever a process would do with what it saw before now, it has done.
 */
const refreshRoundsPassed = async () => {
  const marks = await Promise.all(stack.servers.map((s) => refreshRounds(s.baseUrl)))
  await eventually(async () => {
    const now = await Promise.all(stack.servers.map((s) => refreshRounds(s.baseUrl)))
    return now.every((n, i) => n >= marks[i]! + 2) ? true : undefined
  })
}

const eventsOf = async (userId: string, type: string) =>
  (await db.query("select payload from outbox where user_id = $1 and event_type = $2 order by position", [userId, type])).rows.map((r) => r.payload)

beforeAll(async () => {
  // Two processes on one database, as two replicas would run; they share the token
  // encryption key, as a deployment configures them.
  stack = await startGarminStack({
    name: "connect",
    consumer: CONSUMER,
    apiKey: API_KEY,
    replicas: 2,
    env: { WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY, WEARFLOW_TOKEN_REFRESH_INTERVAL: "100 millis" }
  })
  ;({ garmin, db } = stack)
  base = stack.server.baseUrl
})

afterAll(async () => {
  await stack?.close()
})

describe("OAuth 2.0 PKCE connect flow", () => {
  it("takes the user from the link URL to Garmin's consent and back, stores the connection and announces it", async () => {
    const userId = await createUser("pkce-user")
    garmin.addUser("garmin-pkce", { permissions: ["ACTIVITY_EXPORT", "HEALTH_EXPORT"] })
    garmin.state.nextOAuth2User = "garmin-pkce"
    const link = await linkUrl(userId, { redirect_url: REDIRECT })
    expect(new URL(link.link_web_url).pathname).toBe("/v2/link/garmin/start")

    const start = await visit(link.link_web_url)
    expect(start.status).toBe(302)
    const consent = new URL(start.location!)
    expect(consent.origin + consent.pathname).toBe(`${garmin.url}/oauth2Confirm`)
    expect(consent.searchParams.get("client_id")).toBe(CONSUMER.consumerKey)
    expect(consent.searchParams.get("code_challenge_method")).toBe("S256")
    expect(consent.searchParams.get("code_challenge")).toMatch(/^[\w-]{43}$/)
    expect(consent.searchParams.get("redirect_uri")).toBe(`http://localhost:${new URL(base).port}/v2/link/garmin/callback`)

    const approved = await visit(consent.toString())
    expect(approved.status).toBe(302)
    // The redirect_uri names localhost (the default public URL); the test reaches 127.0.0.1.
    const callback = new URL(approved.location!)
    const callbackOnServer = `${base}${callback.pathname}${callback.search}`
    const done = await visit(callbackOnServer)
    expect(done.status).toBe(302)
    const landing = new URL(done.location!)
    expect(landing.origin + landing.pathname).toBe(REDIRECT)
    expect(Object.fromEntries(landing.searchParams)).toEqual({ state: "success", provider: "garmin" })

    const user = await api("GET", `/v2/user/${userId}`)
    expect(user.body.connected_sources).toEqual([
      expect.objectContaining({ provider: "garmin", provider_user_id: "garmin-pkce", status: "active", scopes: ["ACTIVITY_EXPORT", "HEALTH_EXPORT"] })
    ])
    const row = await connectionOf(userId)
    expect(row.auth_version).toBe("oauth2")
    expect(row.access_token_expires_at.getTime()).toBeGreaterThan(Date.now() + 86_000_000)
    expect(Buffer.from(row.access_token).toString("latin1")).not.toContain(garmin.state.users.get("garmin-pkce")!.oauth2!.accessToken)

    const [created] = await eventsOf(userId, "provider.connection.created")
    expect(created.data).toMatchObject({
      user_id: userId,
      provider: { slug: "garmin", name: "Garmin" },
      external_user_id: "garmin-pkce",
      resource_availability: {
        workouts: { status: "available" },
        activity: { status: "available" },
        menstrual_cycle: { status: "unavailable", scope_requirements: { user_denied: { required: ["MCT_EXPORT"] } } }
      }
    })

    // The callback is single use: replaying it (or the code) finishes nothing.
    const replay = await visit(callbackOnServer)
    expect(replay.status).toBe(404)
    expect(replay.text).toContain("already finished")

    // The connection works: a PING for that user is pulled with the stored Bearer token.
    garmin.state.users.get("garmin-pkce")!.data.dailies = [{ ...daily, userId: "garmin-pkce", summaryId: "pkce-pulled", calendarDate: "2024-04-01", steps: 4321 }]
    await ping({ dailies: [{ userId: "garmin-pkce", callbackURL: garmin.pingUrl("dailies", { userId: "garmin-pkce" }, NOW - 600, NOW) }] })
    const steps = await dailySteps(api, userId, "2024-04-01", 20_000)
    expect(steps).toEqual([4321])
  })

  it("sends the user back with error_type=access_denied when they decline", async () => {
    const userId = await createUser("pkce-declines")
    const link = await linkUrl(userId, { redirect_url: REDIRECT })
    const start = await visit(link.link_web_url)
    const state = new URL(start.location!).searchParams.get("state")!
    const done = await visit(`${base}/v2/link/garmin/callback?error=access_denied&state=${state}`)
    expect(done.status).toBe(302)
    expect(Object.fromEntries(new URL(done.location!).searchParams)).toEqual({ state: "error", provider: "garmin", error_type: "access_denied" })
    expect(await connectionOf(userId)).toBeUndefined()
  })

  it("refuses unknown link tokens and unknown users with clear answers", async () => {
    const unknown = await visit(`${base}/v2/link/garmin/start?token=not-a-real-token`)
    expect(unknown.status).toBe(404)
    expect(unknown.text).toContain("ask for a new one")
    const noUser = await api("POST", "/v2/link/token", { user_id: "6f1c1a52-1111-4a3c-9d6e-000000000000", provider: "garmin" })
    expect(noUser.status).toBe(404)
    const badProvider = await api("POST", "/v2/link/token", { user_id: await createUser("no-such-provider"), provider: "fitbit" })
    expect(badProvider.status).toBe(400)
    // Says what is wrong, never echoing the caller's value.
    expect(badProvider.body.message).toContain("provider")
    expect(badProvider.body.message).not.toContain("fitbit")
    const badRedirect = await api("POST", "/v2/link/token", { user_id: await createUser("bad-redirect"), provider: "garmin", redirect_url: "javascript:alert(1)" })
    expect(badRedirect.status).toBe(400)
  })
})

describe("link expiry", () => {
  it("refuses a link past its expiry, whether or not the user reached Garmin's consent page", async () => {
    const userId = await createUser("late-user")
    const asked = Date.now()
    const link = await linkUrl(userId)
    // One hour, as the README says.
    expect(Math.abs(Date.parse(link.expires_at) - (asked + 3_600_000))).toBeLessThan(60_000)
    const expire = () => db.query("update link_sessions set expires_at = now() - interval '1 second' where user_id = $1", [userId])

    await expire()
    const late = await visit(link.link_web_url)
    expect(late.status).toBe(404)
    expect(late.text).toContain("ask for a new one")

    // Expiring between the consent and the callback: the callback finishes nothing.
    garmin.addUser("garmin-late", { permissions: ["ACTIVITY_EXPORT", "HEALTH_EXPORT"] })
    garmin.state.nextOAuth2User = "garmin-late"
    const second = await linkUrl(userId)
    const start = await visit(second.link_web_url)
    expect(start.status).toBe(302)
    const approved = await visit(start.location!)
    expect(approved.status).toBe(302)
    const callback = new URL(approved.location!)
    await expire()
    const done = await visit(`${base}${callback.pathname}${callback.search}`)
    expect(done.status).toBe(404)
    expect(await connectionOf(userId)).toBeUndefined()
    expect(await eventsOf(userId, "provider.connection.created")).toEqual([])
  })
})

describe("OAuth 1.0a connect flow", () => {
  it("runs request token → oauthConfirm → access token, and shows a page when there is no redirect_url", async () => {
    const userId = await createUser("oauth1-user")
    garmin.state.nextOAuth1User = "garmin-oauth1-flow"
    const link = await linkUrl(userId, { oauth_version: "oauth1" })
    const start = await visit(link.link_web_url)
    expect(start.status).toBe(302)
    const consent = new URL(start.location!)
    expect(consent.pathname).toBe("/oauthConfirm")
    const approved = await visit(consent.toString())
    const callback = new URL(approved.location!)
    expect(callback.searchParams.get("oauth_verifier")).toBeTruthy()
    const done = await visit(`${base}${callback.pathname}${callback.search}`)
    expect(done.status).toBe(200)
    expect(done.text).toContain("Connected")

    const row = await connectionOf(userId)
    expect(row).toMatchObject({ provider_user_id: "garmin-oauth1-flow", auth_version: "oauth1", status: "active" })
    expect(row.provider_state).not.toBeNull()

    // The stored pair is the one Garmin issued: an OAuth 1.0a-era PING (no token in the URL)
    // finds the user by that token and is pulled signed with it.
    const fakeUser = garmin.state.users.get("garmin-oauth1-flow")!
    fakeUser.data.dailies = [{ ...daily, userId: "garmin-oauth1-flow", summaryId: "oauth1-flow-pulled", calendarDate: "2024-04-03", steps: 1357 }]
    await ping({
      dailies: [{
        userAccessToken: fakeUser.oauth1!.token,
        uploadStartTimeInSeconds: NOW - 600,
        uploadEndTimeInSeconds: NOW,
        callbackURL: garmin.pingUrl("dailies", { oauth1: true }, NOW - 600, NOW)
      }]
    })
    expect(await dailySteps(api, userId, "2024-04-03", 20_000)).toEqual([1357])
    const pull = garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").at(-1)!
    expect(pull.headers.authorization).toContain(`oauth_token="${fakeUser.oauth1!.token}"`)
  })
})

describe("token refresh", () => {
  it("refreshes a token expiring within the hour exactly once, with two server processes polling every 100 ms", async () => {
    const fakeUser = garmin.addUser("garmin-refresh", {
      oauth2: {
        accessToken: "refresh-me-access",
        accessTokenExpiresAt: Date.now() + 15 * 60_000,
        refreshToken: "refresh-me-refresh",
        refreshTokenExpiresAt: Date.now() + 90 * 86_400_000
      }
    })
    // Garmin answers slowly, so both processes see the token due while the first refresh runs.
    garmin.inject({ method: "POST", path: "/di-oauth2-service/oauth/token", delayMs: 500 })
    const before = { ...garmin.state.counters }
    const userId = await createUser("refresh-user")
    const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, {
      provider_user_id: "garmin-refresh",
      oauth2: { access_token: "refresh-me-access", refresh_token: "refresh-me-refresh", expires_at: new Date(Date.now() + 15 * 60_000).toISOString() }
    })
    expect(linked.status).toBe(200)

    const refreshed = await eventually(async () => {
      const row = await connectionOf(userId)
      return row.access_token_expires_at.getTime() > Date.now() + 86_000_000 ? row : undefined
    })
    // Both refreshers have run full rounds since: neither refreshes again.
    await refreshRoundsPassed()
    expect(garmin.state.counters.refreshCount - before.refreshCount).toBe(1)
    expect(garmin.state.counters.revocations).toBe(before.revocations)
    expect(refreshed.last_error).toBeNull()
    // The stored pair is the rotated one Garmin now holds: another refresh would work.
    expect(fakeUser.oauth2!.refreshToken).not.toBe("refresh-me-refresh")
    expect(fakeUser.retiredRefreshTokens).toEqual(["refresh-me-refresh"])
  })

  it("reports token_refresh_failed when Garmin refuses the refresh token, and stops trying", async () => {
    garmin.addUser("garmin-revoked")
    const userId = await createUser("revoked-user")
    await api("POST", `/v2/user/${userId}/connections/garmin`, {
      provider_user_id: "garmin-revoked",
      oauth2: { access_token: "dead-access", refresh_token: "dead-refresh", expires_at: new Date(Date.now() + 5 * 60_000).toISOString() }
    })
    const [event] = await eventually(async () => {
      const events = await eventsOf(userId, "provider.connection.error")
      return events.length > 0 ? events : undefined
    })
    expect(event.data).toMatchObject({ error_type: "token_refresh_failed", provider: { slug: "garmin" } })
    const attempts = garmin.requests.filter((r) => r.body.includes("dead-refresh")).length
    await refreshRoundsPassed()
    expect(garmin.requests.filter((r) => r.body.includes("dead-refresh")).length).toBe(attempts)
    expect((await connectionOf(userId)).last_error).toBe("token_refresh_failed")
  })
})

describe("disconnect", () => {
  it("deregisters at Garmin, erases the tokens, and answers 404 the second time", async () => {
    const fakeUser = garmin.addUser("garmin-leaving", {
      oauth2: { accessToken: "leaving-access", accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: "leaving-refresh", refreshTokenExpiresAt: Date.now() + 86_400_000 }
    })
    const userId = await createUser("leaving-user")
    await api("POST", `/v2/user/${userId}/connections/garmin`, {
      provider_user_id: "garmin-leaving",
      oauth2: { access_token: "leaving-access", refresh_token: "leaving-refresh" }
    })
    const before = garmin.state.counters.deregistrations
    const gone = await api("DELETE", `/v2/user/${userId}/connections/garmin`)
    expect(gone.status).toBe(200)
    expect(gone.body).toEqual({ user_id: userId, provider: "garmin", status: "disconnected", provider_deregistered: true, shared_account: false })
    expect(garmin.state.counters.deregistrations).toBe(before + 1)
    expect(fakeUser.registered).toBe(false)
    const row = await connectionOf(userId)
    expect(row).toMatchObject({ status: "disconnected", access_token: null, refresh_token: null })
    expect((await api("DELETE", `/v2/user/${userId}/connections/garmin`)).status).toBe(404)
  })

  it("keeps a Garmin account other users still share registered", async () => {
    garmin.addUser("garmin-shared-account", {
      oauth2: { accessToken: "shared-access", accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: "shared-refresh", refreshTokenExpiresAt: Date.now() + 86_400_000 }
    })
    const [first, second] = [await createUser("shared-1"), await createUser("shared-2")]
    for (const userId of [first, second]) {
      await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: "garmin-shared-account", oauth2: { access_token: "shared-access" } })
    }
    const before = garmin.state.counters.deregistrations
    const gone = await api("DELETE", `/v2/user/${first}/connections/garmin`)
    expect(gone.body).toMatchObject({ provider_deregistered: false, shared_account: true })
    expect(garmin.state.counters.deregistrations).toBe(before)
    expect((await connectionOf(second!)).status).toBe("active")
  })

  it("changes nothing when Garmin cannot be reached, and says to retry", async () => {
    garmin.addUser("garmin-flaky", {
      oauth2: { accessToken: "flaky-access", accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: "flaky-refresh", refreshTokenExpiresAt: Date.now() + 86_400_000 }
    })
    const userId = await createUser("flaky-user")
    await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: "garmin-flaky", oauth2: { access_token: "flaky-access" } })
    garmin.inject({ method: "DELETE", path: "/wellness-api/rest/user/registration", status: 503 })
    const failed = await api("DELETE", `/v2/user/${userId}/connections/garmin`)
    expect(failed.status).toBe(503)
    expect((await connectionOf(userId)).status).toBe("active")
    expect((await api("DELETE", `/v2/user/${userId}/connections/garmin`)).status).toBe(200)
  })
})
