/** Proves the fake Garmin server: every endpoint, backfill delivery, and failure injection. */
import { createHash, createHmac, randomBytes } from "node:crypto"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"
import OAuth from "oauth-1.0a"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import {
  type FakeBackfillSettings,
  type FakeGarmin,
  type FakeGarminUser,
  type GarminRecord,
  recordTimeOf,
  startFakeGarmin,
  uploadTimeOf
} from "./fake-garmin.ts"

const consumer = { key: "consumer-key", secret: "consumer-secret" }
const oauth = new OAuth({
  consumer,
  signature_method: "HMAC-SHA1",
  hash_function: (base, key) => createHmac("sha1", key).update(base).digest("base64")
})

/** An OAuth 1.0a Authorization header; `extra` oauth_* params (callback, verifier) go in it too. */
const signed = (method: string, url: string, token?: OAuth.Token, extra: Record<string, string> = {}): string => {
  const authorization = oauth.authorize({ url, method, data: extra }, token)
  return oauth.toHeader({ ...authorization, ...extra }).Authorization
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const formBody = (values: Record<string, string>) => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(values).toString()
})

interface TokenResponse {
  access_token: string
  refresh_token: string
  token_type: string
  expires_in: number
  refresh_token_expires_in: number
}

let garmin: FakeGarmin

beforeAll(async () => {
  garmin = await startFakeGarmin({ consumerKey: consumer.key, consumerSecret: consumer.secret })
})
afterAll(() => garmin.close())

/** A registered user holding both OAuth1 and OAuth2 credentials and some epochs. */
const seedUser = (): FakeGarminUser => {
  const user = garmin.addUser(randomBytes(16).toString("hex"), {
    oauth1: { token: randomBytes(8).toString("hex"), secret: randomBytes(8).toString("hex") },
    oauth2: {
      accessToken: randomBytes(8).toString("hex"),
      accessTokenExpiresAt: Date.now() + 60_000,
      refreshToken: randomBytes(8).toString("hex"),
      refreshTokenExpiresAt: Date.now() + 60_000
    }
  })
  user.data["epochs"] = [
    { summaryId: "in-window", uploadTimeInSeconds: 1_000 },
    { summaryId: "too-late", uploadTimeInSeconds: 5_000 }
  ]
  user.data["mct"] = [{ summaryId: "mct-1" }]
  return user
}
const oauth1Of = (user: FakeGarminUser): OAuth.Token => ({ key: user.oauth1!.token, secret: user.oauth1!.secret })

describe("PING pulls", () => {
  it("serves the records of the window with the pull token (OAuth2 era)", async () => {
    const user = seedUser()
    const response = await fetch(garmin.pingUrl("epochs", { userId: user.userId }, 900, 1_100))
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual([{ summaryId: "in-window", uploadTimeInSeconds: 1_000 }])
  })

  it("accepts a matching Bearer token and refuses another user's", async () => {
    const user = seedUser()
    const other = seedUser()
    const url = garmin.pingUrl("epochs", { userId: user.userId }, 900, 1_100)
    expect((await fetch(url, { headers: bearer(user.oauth2!.accessToken) })).status).toBe(200)
    expect((await fetch(url, { headers: bearer(other.oauth2!.accessToken) })).status).toBe(401)
  })

  it("refuses an unknown pull token and a window over 24 h", async () => {
    const user = seedUser()
    const unknown = await fetch(garmin.pingUrl("epochs", { token: "nope" }, 0, 10))
    expect(unknown.status).toBe(401)
    expect(await unknown.json()).toEqual({ errorMessage: "InvalidPullTokenException" })
    const tooLong = await fetch(garmin.pingUrl("epochs", { userId: user.userId }, 0, 86_401))
    expect(tooLong.status).toBe(400)
    expect(await tooLong.json()).toHaveProperty("errorMessage")
  })

  it("serves OAuth1-signed pulls (legacy era); a record without upload time is uploaded when announced", async () => {
    const user = seedUser()
    const url = garmin.pingUrl("mct", { oauth1: true }, 1_444_937_651, 1_444_937_902)
    const response = await fetch(url, { headers: { authorization: signed("GET", url, oauth1Of(user)) } })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual([{ summaryId: "mct-1" }])
  })

  it("serves only what was uploaded in the window: a pull of another window gets none of it", async () => {
    const user = seedUser()
    user.data["dailies"] = [{ summaryId: "announced" }]
    const announced = garmin.pingUrl("dailies", { userId: user.userId }, 2_000, 2_100)
    user.data["dailies"].push({ summaryId: "uploaded-later" })
    const pull = async (url: string) => (await (await fetch(url)).json()) as Array<GarminRecord>
    /** The announced URL with another upload window, as a client pulling the wrong window would send it. */
    const moved = (start: number, end: number) => {
      const url = new URL(announced)
      url.searchParams.set("uploadStartTimeInSeconds", String(start))
      url.searchParams.set("uploadEndTimeInSeconds", String(end))
      return url.toString()
    }
    // What is served is the record as stored: the upload time the fake gave it stays out of it.
    expect(await pull(announced)).toEqual([{ summaryId: "announced" }])
    expect(await pull(moved(0, 1_999))).toEqual([])
    expect(await pull(moved(2_101, 3_000))).toEqual([]) // not announced yet: not uploaded
    expect(await pull(garmin.pingUrl("dailies", { userId: user.userId }, 2_101, 3_000))).toEqual([{ summaryId: "uploaded-later" }])
    expect(await pull(announced)).toEqual([{ summaryId: "announced" }])
    expect(uploadTimeOf(user.data["dailies"][0]!)).toBe(2_100)
    expect(uploadTimeOf(user.data["dailies"][1]!)).toBe(3_000)
    expect(uploadTimeOf(user.data["epochs"]![0]!)).toBe(1_000) // its own field
  })

  it("refuses a bad OAuth1 signature", async () => {
    const user = seedUser()
    const url = garmin.pingUrl("mct", { oauth1: true }, 0, 10)
    const wrongSecret = { key: user.oauth1!.token, secret: "wrong" }
    const response = await fetch(url, { headers: { authorization: signed("GET", url, wrongSecret) } })
    expect(response.status).toBe(401)
    const unsigned = await fetch(url)
    expect(unsigned.status).toBe(401)
  })
})

describe("activity files", () => {
  it("downloads once, then answers 410", async () => {
    const user = seedUser()
    const url = garmin.addActivityFile(user.userId, { bytes: new Uint8Array([0x0e, 0x10, 0x2e, 0x46]) })
    const first = await fetch(url)
    expect(first.status).toBe(200)
    expect(first.headers.get("content-type")).toBe("application/octet-stream")
    expect(new Uint8Array(await first.arrayBuffer())).toEqual(new Uint8Array([0x0e, 0x10, 0x2e, 0x46]))
    expect((await fetch(url)).status).toBe(410)
  })

  it("refuses a wrong token", async () => {
    const user = seedUser()
    const url = garmin.addActivityFile(user.userId, { id: "file-1", bytes: "x" })
    const forged = new URL(url)
    forged.searchParams.set("token", "forged")
    expect((await fetch(forged)).status).toBe(401)
  })
})

/** Runs the PKCE consent + code exchange and returns the token response. */
const connectOAuth2 = async (userId: string): Promise<TokenResponse> => {
  garmin.state.nextOAuth2User = userId
  const verifier = randomBytes(32).toString("base64url")
  const challenge = createHash("sha256").update(verifier).digest("base64url")
  const redirectUri = "https://wearflow.test/callback"
  const authorize = new URL("/oauth2Confirm", garmin.url)
  authorize.search = new URLSearchParams({
    response_type: "code",
    client_id: consumer.key,
    code_challenge: challenge,
    code_challenge_method: "S256",
    redirect_uri: redirectUri,
    state: "xyz"
  }).toString()
  const consent = await fetch(authorize, { redirect: "manual" })
  expect(consent.status).toBe(302)
  const back = new URL(consent.headers.get("location")!)
  expect(back.origin + back.pathname).toBe(redirectUri)
  expect(back.searchParams.get("state")).toBe("xyz")
  const code = back.searchParams.get("code")!

  const exchange = (codeVerifier: string) =>
    fetch(
      `${garmin.url}/di-oauth2-service/oauth/token`,
      formBody({
        grant_type: "authorization_code",
        client_id: consumer.key,
        client_secret: consumer.secret,
        code,
        code_verifier: codeVerifier,
        redirect_uri: redirectUri
      })
    )
  const response = await exchange(verifier)
  expect(response.status).toBe(200)
  expect((await exchange(verifier)).status).toBe(400) // codes are single-use
  return (await response.json()) as TokenResponse
}

const refresh = (refreshToken: string) =>
  fetch(
    `${garmin.url}/di-oauth2-service/oauth/token`,
    formBody({
      grant_type: "refresh_token",
      client_id: consumer.key,
      client_secret: consumer.secret,
      refresh_token: refreshToken
    })
  )

describe("OAuth2 PKCE", () => {
  it("authorizes, exchanges the code, and serves user id and permissions", async () => {
    const tokens = await connectOAuth2("pkce-user")
    expect(tokens).toMatchObject({ token_type: "bearer", expires_in: 86_400, refresh_token_expires_in: 7_776_000 })

    const id = await fetch(`${garmin.url}/wellness-api/rest/user/id`, { headers: bearer(tokens.access_token) })
    expect(await id.json()).toEqual({ userId: "pkce-user" })

    garmin.state.users.get("pkce-user")!.permissions = ["ACTIVITY_EXPORT", "HEALTH_EXPORT"]
    const permissions = `${garmin.url}/wellness-api/rest/user/permissions`
    const asArray = await fetch(permissions, { headers: bearer(tokens.access_token) })
    expect(await asArray.json()).toEqual(["ACTIVITY_EXPORT", "HEALTH_EXPORT"])
    garmin.state.permissionsShape = "object"
    const asObject = await fetch(permissions, { headers: bearer(tokens.access_token) })
    expect(await asObject.json()).toEqual({ permissions: ["ACTIVITY_EXPORT", "HEALTH_EXPORT"] })
    garmin.state.permissionsShape = "array"
  })

  it("refuses a wrong PKCE verifier and an unknown client", async () => {
    const unknownClient = new URL("/oauth2Confirm", garmin.url)
    unknownClient.search = "response_type=code&client_id=other&code_challenge=c&code_challenge_method=S256&redirect_uri=https://x.test/"
    expect((await fetch(unknownClient, { redirect: "manual" })).status).toBe(400)

    garmin.state.nextOAuth2User = "verifier-user"
    const authorize = new URL("/oauth2Confirm", garmin.url)
    authorize.search = `response_type=code&client_id=${consumer.key}&code_challenge=abc&code_challenge_method=S256&redirect_uri=https://x.test/`
    const code = new URL((await fetch(authorize, { redirect: "manual" })).headers.get("location")!).searchParams.get("code")!
    const response = await fetch(
      `${garmin.url}/di-oauth2-service/oauth/token`,
      formBody({
        grant_type: "authorization_code",
        client_id: consumer.key,
        client_secret: consumer.secret,
        code,
        code_verifier: "not-the-verifier",
        redirect_uri: "https://x.test/"
      })
    )
    expect(response.status).toBe(400)
  })

  it("rotates refresh tokens; reusing an old one is refused and revokes the connection", async () => {
    const first = await connectOAuth2("rotating-user")
    const before = garmin.state.counters.refreshCount

    const rotated = await refresh(first.refresh_token)
    expect(rotated.status).toBe(200)
    const second = (await rotated.json()) as TokenResponse
    expect(second.refresh_token).not.toBe(first.refresh_token)
    expect(second.access_token).not.toBe(first.access_token)

    const reused = await refresh(first.refresh_token)
    expect(reused.status).toBe(400)
    expect(await reused.json()).toEqual({ error: "invalid_grant" })
    expect(garmin.state.counters.refreshCount).toBe(before + 2)

    // The reuse revoked the grant: even the newest tokens stop working.
    expect(garmin.state.users.get("rotating-user")!.oauth2).toBeUndefined()
    expect((await refresh(second.refresh_token)).status).toBe(400)
    const id = await fetch(`${garmin.url}/wellness-api/rest/user/id`, { headers: bearer(second.access_token) })
    expect(id.status).toBe(401)
  })
})

describe("OAuth1", () => {
  it("runs the three-legged flow", async () => {
    const callback = "https://wearflow.test/oauth1/callback"
    const requestTokenUrl = `${garmin.url}/oauth-service/oauth/request_token`
    const requested = await fetch(requestTokenUrl, {
      method: "POST",
      headers: { authorization: signed("POST", requestTokenUrl, undefined, { oauth_callback: callback }) }
    })
    expect(requested.status).toBe(200)
    const request = new URLSearchParams(await requested.text())
    expect(request.get("oauth_callback_confirmed")).toBe("true")
    const requestToken = { key: request.get("oauth_token")!, secret: request.get("oauth_token_secret")! }

    garmin.state.nextOAuth1User = "legacy-user"
    const confirm = new URL("/oauthConfirm", garmin.url)
    confirm.search = new URLSearchParams({ oauth_token: requestToken.key, oauth_callback: callback }).toString()
    const consent = await fetch(confirm, { redirect: "manual" })
    expect(consent.status).toBe(302)
    const back = new URL(consent.headers.get("location")!)
    expect(back.origin + back.pathname).toBe(callback)
    expect(back.searchParams.get("oauth_token")).toBe(requestToken.key)
    const verifier = back.searchParams.get("oauth_verifier")!

    const accessTokenUrl = `${garmin.url}/oauth-service/oauth/access_token`
    const wrongVerifier = await fetch(accessTokenUrl, {
      method: "POST",
      headers: { authorization: signed("POST", accessTokenUrl, requestToken, { oauth_verifier: "wrong" }) }
    })
    expect(wrongVerifier.status).toBe(401)
    const granted = await fetch(accessTokenUrl, {
      method: "POST",
      headers: { authorization: signed("POST", accessTokenUrl, requestToken, { oauth_verifier: verifier }) }
    })
    expect(granted.status).toBe(200)
    const access = new URLSearchParams(await granted.text())
    expect(garmin.state.users.get("legacy-user")!.oauth1).toEqual({
      token: access.get("oauth_token"),
      secret: access.get("oauth_token_secret")
    })

    // The new token signs user-scoped calls.
    const idUrl = `${garmin.url}/wellness-api/rest/user/id`
    const token = { key: access.get("oauth_token")!, secret: access.get("oauth_token_secret")! }
    const id = await fetch(idUrl, { headers: { authorization: signed("GET", idUrl, token) } })
    expect(await id.json()).toEqual({ userId: "legacy-user" })
  })

  it("exchanges an OAuth1 token for OAuth2 tokens, with a per-user failure mode", async () => {
    const user = garmin.addUser("migrating-user", { oauth1: { token: "t1", secret: "s1" } })
    const url = `${garmin.url}/partner-gateway/rest/user/token-exchange`
    const exchange = () =>
      fetch(url, { method: "POST", headers: { authorization: signed("POST", url, oauth1Of(user)) } })
    const before = garmin.state.counters.tokenExchangeCount

    user.tokenExchangeFailure = 500
    expect((await exchange()).status).toBe(500)
    user.tokenExchangeFailure = undefined
    const response = await exchange()
    expect(response.status).toBe(200)
    const tokens = (await response.json()) as TokenResponse
    expect(tokens).toMatchObject({ token_type: "bearer", expires_in: 86_400 })
    expect(user.oauth2?.accessToken).toBe(tokens.access_token)
    expect(garmin.state.counters.tokenExchangeCount).toBe(before + 2)

    const badSignature = await fetch(url, {
      method: "POST",
      headers: { authorization: signed("POST", url, { key: "t1", secret: "wrong" }) }
    })
    expect(badSignature.status).toBe(401)
  })
})

describe("user lifecycle and backfill", () => {
  it("deletes the registration; the tokens then stop working", async () => {
    const user = seedUser()
    const before = garmin.state.counters.deregistrations
    const url = `${garmin.url}/wellness-api/rest/user/registration`
    const deleted = await fetch(url, { method: "DELETE", headers: bearer(user.oauth2!.accessToken) })
    expect(deleted.status).toBe(204)
    expect(user.registered).toBe(false)
    expect(garmin.state.counters.deregistrations).toBe(before + 1)
    expect((await fetch(url, { method: "DELETE", headers: bearer(user.oauth2!.accessToken) })).status).toBe(401)
  })

  it("answers 409 to any range overlapping one already requested, not only the same one", async () => {
    const user = seedUser()
    const ask = (type: string, start: number, end: number) =>
      fetch(`${garmin.url}/wellness-api/rest/backfill/${type}?summaryStartTimeInSeconds=${start}&summaryEndTimeInSeconds=${end}`, {
        headers: bearer(user.oauth2!.accessToken)
      }).then((r) => r.status)
    expect(await ask("dailies", 10_000, 20_000)).toBe(202)
    expect(await ask("dailies", 15_000, 25_000)).toBe(409) // overlaps the end
    expect(await ask("dailies", 5_000, 10_001)).toBe(409) // overlaps the start by a second
    expect(await ask("dailies", 12_000, 13_000)).toBe(409) // inside
    expect(await ask("dailies", 0, 30_000)).toBe(409) // around
    expect(await ask("dailies", 20_000, 30_000)).toBe(202) // touching is not overlapping
    expect(await ask("dailies", 5_000, 10_000)).toBe(202)
    expect(await ask("sleeps", 12_000, 13_000)).toBe(202) // another type
  })

  it("accepts a backfill with 202, then 409 for the same range", async () => {
    const user = seedUser()
    const url = `${garmin.url}/wellness-api/rest/backfill/dailies?summaryStartTimeInSeconds=1000&summaryEndTimeInSeconds=2000`
    const first = await fetch(url, { headers: bearer(user.oauth2!.accessToken) })
    expect(first.status).toBe(202)
    expect(await first.text()).toBe("")
    expect((await fetch(url, { headers: bearer(user.oauth2!.accessToken) })).status).toBe(409)
    expect(garmin.state.backfills).toContainEqual({ userId: user.userId, type: "dailies", start: 1000, end: 2000 })
    // OAuth1-signed backfills of another type and range are independent.
    const other = `${garmin.url}/wellness-api/rest/backfill/sleeps?summaryStartTimeInSeconds=1000&summaryEndTimeInSeconds=2000`
    expect((await fetch(other, { headers: { authorization: signed("GET", other, oauth1Of(user)) } })).status).toBe(202)
  })

  it("answers 404 for anything else", async () => {
    expect((await fetch(`${garmin.url}/nowhere`)).status).toBe(404)
    expect((await fetch(`${garmin.url}/wellness-api/rest/user/id`, { method: "POST" })).status).toBe(404)
  })
})

// ---------------------------------------------------------------------------
// Backfill: answers, delivery, history
// ---------------------------------------------------------------------------

const DAY = 86_400
/** 2026-01-01T00:00:00Z in epoch seconds. */
const D0 = Date.UTC(2026, 0, 1) / 1000

/** A user of `fake` with an OAuth2 grant (seedUser's, on any instance). */
const connectedUser = (fake: FakeGarmin, init: Partial<Omit<FakeGarminUser, "userId">> = {}): FakeGarminUser =>
  fake.addUser(randomBytes(16).toString("hex"), {
    oauth2: {
      accessToken: randomBytes(8).toString("hex"),
      accessTokenExpiresAt: Date.now() + 60_000,
      refreshToken: randomBytes(8).toString("hex"),
      refreshTokenExpiresAt: Date.now() + 60_000
    },
    ...init
  })

const requestBackfill = (fake: FakeGarmin, user: FakeGarminUser, type: string, start: number, end: number) =>
  fetch(`${fake.url}/wellness-api/rest/backfill/${type}?summaryStartTimeInSeconds=${start}&summaryEndTimeInSeconds=${end}`, {
    headers: bearer(user.oauth2!.accessToken)
  })

interface Receiver {
  readonly url: string
  /** Every POST received, in order, retries included. */
  readonly received: Array<{ readonly headers: IncomingHttpHeaders; readonly body: Record<string, Array<GarminRecord>> }>
  close(): Promise<void>
}

/** A loopback stand-in for Wearflow's PUSH endpoint; `statusFor(n)` answers the n-th POST (from 0). */
const startReceiver = async (statusFor: (index: number) => number = () => 200): Promise<Receiver> => {
  const received: Receiver["received"] = []
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const index = received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) }) - 1
      res.writeHead(statusFor(index)).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/api/v1/webhooks/garmin/push`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}

/** Records of `records` whose time lies in [start, end). */
const inWindow = (records: ReadonlyArray<GarminRecord>, start: number, end: number) =>
  records.filter((record) => {
    const time = recordTimeOf(record)
    return time !== undefined && time >= start && time < end
  })

const deliveriesOf = (fake: FakeGarmin, user: FakeGarminUser) =>
  fake.state.deliveries.filter((delivery) => delivery.userId === user.userId)

const untilDelivered = (fake: FakeGarmin, user: FakeGarminUser, count: number) =>
  vi.waitFor(() => expect(deliveriesOf(fake, user)).toHaveLength(count), { timeout: 5_000, interval: 20 })

describe("backfill", () => {
  let defaults: FakeBackfillSettings
  beforeAll(() => {
    defaults = { ...garmin.state.backfill }
  })
  afterEach(() => {
    Object.assign(garmin.state.backfill, defaults)
  })

  it("seeds history from the fixtures: one record per day, activities every second day", () => {
    const user = seedUser()
    const added = garmin.seedHistory(user.userId, { from: D0, to: D0 + 10 * DAY })
    expect(Object.keys(added).sort()).toEqual(["activities", "bodyComps", "dailies", "epochs", "hrv", "sleeps", "stressDetails"])
    for (const [key, records] of Object.entries(added)) {
      expect(records, key).toHaveLength(key === "activities" ? 5 : 10)
      expect(user.data[key]).toEqual(expect.arrayContaining(records))
      for (const record of records) {
        expect(record["userId"]).toBe(user.userId)
        expect(record).not.toHaveProperty("userAccessToken")
        expect(recordTimeOf(record)).toBeGreaterThanOrEqual(D0)
        expect(recordTimeOf(record)).toBeLessThan(D0 + 10 * DAY)
      }
    }
    const ids = Object.values(added).flatMap((records) => records.map((record) => record["summaryId"]))
    expect(new Set(ids).size).toBe(ids.length)

    // Every time field moves with the record: calendarDate, nested sleep levels.
    const [daily] = added["dailies"]!
    expect(daily).toMatchObject({ calendarDate: "2026-01-01", startTimeInSeconds: D0, steps: 4210 })
    const [sleep] = added["sleeps"]!
    const levels = sleep!["sleepLevelsMap"] as { deep: Array<{ startTimeInSeconds: number }> }
    expect(levels.deep[0]!.startTimeInSeconds).toBe(sleep!["startTimeInSeconds"])
    expect(added["bodyComps"]![0]!["measurementTimeInSeconds"]).toBeGreaterThanOrEqual(D0)

    const sparse = garmin.seedHistory(user.userId, {
      from: D0,
      to: D0 + 10 * DAY,
      types: ["dailies", "activityDetails"],
      everyDays: 2
    })
    expect(sparse["dailies"]).toHaveLength(5)
    expect(sparse["activityDetails"]).toHaveLength(3)
    expect(sparse["activityDetails"]![0]!["summaryId"]).toMatch(/^\d+-detail$/)
    expect(() => garmin.seedHistory(user.userId, { from: D0, to: D0 + DAY, types: ["mct"] })).toThrow(/carry no time/)
    expect(() => garmin.seedHistory("nobody", { from: D0, to: D0 + DAY })).toThrow(/unknown user/)
  })

  it("answers 202 at once, then PUSHes exactly the records of the window, in chunks", async () => {
    const receiver = await startReceiver()
    try {
      Object.assign(garmin.state.backfill, { deliverTo: receiver.url, deliveryDelayMs: 100, chunkSize: 2, chunkGapMs: 10 })
      const user = seedUser()
      const seeded = garmin.seedHistory(user.userId, { from: D0, to: D0 + 10 * DAY, types: ["dailies"] })
      const expected = inWindow(seeded["dailies"]!, D0 + 2 * DAY, D0 + 7 * DAY)
      expect(expected).toHaveLength(5)

      const asked = Date.now()
      expect((await requestBackfill(garmin, user, "dailies", D0 + 2 * DAY, D0 + 7 * DAY)).status).toBe(202)
      expect(receiver.received).toHaveLength(0) // the data comes later
      await untilDelivered(garmin, user, 3)

      expect(receiver.received.map(({ body }) => Object.keys(body))).toEqual([["dailies"], ["dailies"], ["dailies"]])
      expect(receiver.received.map(({ body }) => body["dailies"]!.length)).toEqual([2, 2, 1])
      expect(receiver.received.flatMap(({ body }) => body["dailies"]!)).toEqual(expected)
      for (const { headers } of receiver.received) {
        expect(headers["garmin-client-id"]).toBe(consumer.key)
        expect(headers["content-type"]).toBe("application/json")
      }
      const delivered = { userId: user.userId, type: "dailies", key: "dailies", status: 200, at: expect.any(Number), start: D0 + 2 * DAY, end: D0 + 7 * DAY }
      expect(deliveriesOf(garmin, user)).toEqual([
        { ...delivered, count: 2 },
        { ...delivered, count: 2 },
        { ...delivered, count: 1 }
      ])
      expect(deliveriesOf(garmin, user)[0]!.at - asked).toBeGreaterThanOrEqual(90)
    } finally {
      await receiver.close()
    }
  })

  it("keys data by envelope key for deliveries and pulls; finds each kind of record time", async () => {
    const receiver = await startReceiver()
    try {
      Object.assign(garmin.state.backfill, { deliverTo: receiver.url, deliveryDelayMs: 0 })
      const user = seedUser()
      const pulseox = garmin.seedHistory(user.userId, { from: D0, to: D0 + 3 * DAY, types: ["pulseox"] })["pulseox"]!
      const details = garmin.seedHistory(user.userId, { from: D0, to: D0 + 4 * DAY, types: ["activityDetails"] })[
        "activityDetails"
      ]!
      expect(details[0]).not.toHaveProperty("startTimeInSeconds") // found under summary
      user.data["userMetrics"] = [
        { summaryId: "metrics-in", calendarDate: "2026-01-01", vo2Max: 48 },
        { summaryId: "metrics-at-end", calendarDate: "2026-01-02", vo2Max: 49 } // the end is exclusive
      ]
      user.data["bodyComps"] = [
        { summaryId: "weight-before", measurementTimeInSeconds: D0 - 1 },
        { summaryId: "weight-in", measurementTimeInSeconds: D0 }
      ]

      const windows = [
        ["pulseOx", D0 + 3 * DAY],
        ["activityDetails", D0 + 4 * DAY],
        ["userMetrics", D0 + DAY],
        ["bodyComps", D0 + DAY]
      ] as const
      for (const [type, end] of windows) {
        expect((await requestBackfill(garmin, user, type, D0, end)).status).toBe(202)
      }
      await untilDelivered(garmin, user, 4)
      const bodies = Object.assign({}, ...receiver.received.map(({ body }) => body)) as Record<string, Array<GarminRecord>>
      expect(bodies["pulseox"]).toEqual(pulseox)
      expect(bodies["activityDetails"]).toEqual(details)
      expect(bodies["userMetrics"]!.map((record) => record["summaryId"])).toEqual(["metrics-in"])
      expect(bodies["bodyComps"]!.map((record) => record["summaryId"])).toEqual(["weight-in"])
      const pulseOxDelivery = deliveriesOf(garmin, user).find((delivery) => delivery.type === "pulseOx")
      expect(pulseOxDelivery).toMatchObject({ key: "pulseox", count: 3 })

      // A PING pull of the REST name pulseOx serves the same list.
      const pulled = await fetch(garmin.pingUrl("pulseOx", { userId: user.userId }, 0, 10))
      expect(await pulled.json()).toEqual(pulseox)

      // An empty window delivers nothing, as Garmin sends nothing.
      const ended = garmin.state.backfillsEnded.filter((request) => request.userId === user.userId).length
      expect((await requestBackfill(garmin, user, "sleeps", D0, D0 + DAY)).status).toBe(202)
      await vi.waitFor(() => expect(garmin.state.backfillsEnded.filter((request) => request.userId === user.userId)).toHaveLength(ended + 1), { timeout: 5_000, interval: 10 })
      expect(deliveriesOf(garmin, user)).toHaveLength(4)
    } finally {
      await receiver.close()
    }
  })

  it("delivers nothing while deliverTo is unset", async () => {
    garmin.state.backfill.deliveryDelayMs = 0
    const user = seedUser()
    garmin.seedHistory(user.userId, { from: D0, to: D0 + DAY, types: ["dailies"] })
    expect((await requestBackfill(garmin, user, "dailies", D0, D0 + DAY)).status).toBe(202)
    // Other tests' deliveries may end meanwhile: wait for this user's.
    await vi.waitFor(() => expect(garmin.state.backfillsEnded.filter((ended) => ended.userId === user.userId)).toHaveLength(1), { timeout: 5_000, interval: 10 })
    expect(deliveriesOf(garmin, user)).toEqual([])
  })

  it("retries a delivery the receiver refused, as Garmin does; 0 when it cannot connect", async () => {
    const receiver = await startReceiver((index) => (index === 0 ? 500 : 200))
    try {
      Object.assign(garmin.state.backfill, { deliverTo: receiver.url, deliveryDelayMs: 0 })
      const user = seedUser()
      garmin.seedHistory(user.userId, { from: D0, to: D0 + 3 * DAY, types: ["sleeps"] })
      expect((await requestBackfill(garmin, user, "sleeps", D0, D0 + 3 * DAY)).status).toBe(202)
      await untilDelivered(garmin, user, 1)
      expect(receiver.received).toHaveLength(2)
      expect(receiver.received[1]!.body).toEqual(receiver.received[0]!.body)
      expect(deliveriesOf(garmin, user)).toEqual([
        { userId: user.userId, type: "sleeps", key: "sleeps", count: 3, status: 200, at: expect.any(Number), start: D0, end: D0 + 3 * DAY }
      ])
    } finally {
      await receiver.close()
    }

    // Nothing listens there any more: 1 try + 5 retries 200 ms apart, then status 0.
    const user = seedUser()
    garmin.seedHistory(user.userId, { from: D0, to: D0 + DAY, types: ["dailies"] })
    expect((await requestBackfill(garmin, user, "dailies", D0, D0 + DAY)).status).toBe(202)
    await untilDelivered(garmin, user, 1)
    expect(deliveriesOf(garmin, user)[0]).toMatchObject({ count: 1, status: 0 })
  })

  it("delivers by PING when asked: one pull URL per chunk, serving exactly that chunk", async () => {
    const receiver = await startReceiver()
    try {
      Object.assign(garmin.state.backfill, { deliverTo: receiver.url, deliveryDelayMs: 0, chunkSize: 2, chunkGapMs: 0, deliverAs: "ping" })
      const user = seedUser()
      const seeded = garmin.seedHistory(user.userId, { from: D0, to: D0 + 5 * DAY, types: ["pulseox"] })["pulseox"]!
      expect((await requestBackfill(garmin, user, "pulseOx", D0, D0 + 5 * DAY)).status).toBe(202)
      await untilDelivered(garmin, user, 3)
      const items = receiver.received.map(({ body }) => {
        expect(Object.keys(body)).toEqual(["pulseox"])
        expect(body["pulseox"]).toHaveLength(1)
        return body["pulseox"]![0] as unknown as { userId: string; callbackURL: string }
      })
      const pulled: Array<GarminRecord> = []
      for (const item of items) {
        expect(item.userId).toBe(user.userId)
        const url = new URL(item.callbackURL)
        expect(url.pathname).toBe("/wellness-api/rest/pulseOx")
        expect(url.searchParams.get("uploadStartTimeInSeconds")).toBe(url.searchParams.get("uploadEndTimeInSeconds"))
        const records = (await (await fetch(item.callbackURL)).json()) as Array<GarminRecord>
        expect(records.length).toBeLessThanOrEqual(2)
        pulled.push(...records)
      }
      expect(pulled).toEqual(seeded)
      // A window just before the first upload serves nothing.
      const first = Number(new URL(items[0]!.callbackURL).searchParams.get("uploadStartTimeInSeconds"))
      expect(await (await fetch(garmin.pingUrl("pulseOx", { userId: user.userId }, first - 100, first - 1))).json()).toEqual([])
    } finally {
      await receiver.close()
    }
  })

  it("batches other items into backfill bodies when asked; holds deliveries while paused", async () => {
    const receiver = await startReceiver()
    try {
      const user = seedUser()
      const live = { summaryId: "live-today", userId: user.userId }
      Object.assign(garmin.state.backfill, {
        deliverTo: receiver.url,
        deliveryDelayMs: 0,
        paused: true,
        alongside: (userId: string) => ({ dailies: [{ ...live, userId }], deregistrations: [{ userId: "someone-else" }] })
      })
      const seeded = garmin.seedHistory(user.userId, { from: D0, to: D0 + 2 * DAY, types: ["dailies"] })["dailies"]!
      expect((await requestBackfill(garmin, user, "dailies", D0, D0 + 2 * DAY)).status).toBe(202)
      await vi.waitFor(() => expect(garmin.state.counters.deliveriesPaused).toBe(1), { timeout: 5_000, interval: 10 })
      expect(receiver.received).toHaveLength(0) // held at the pause
      garmin.state.backfill.paused = false
      await untilDelivered(garmin, user, 1)
      expect(receiver.received[0]!.body).toEqual({ dailies: [live, ...seeded], deregistrations: [{ userId: "someone-else" }] })
      expect(deliveriesOf(garmin, user)[0]).toMatchObject({ count: 2 }) // the backfilled records
    } finally {
      await receiver.close()
    }
  })

  it("answers 403 without HISTORICAL_DATA_EXPORT", async () => {
    const user = seedUser()
    user.permissions = ["ACTIVITY_EXPORT", "HEALTH_EXPORT"]
    const response = await requestBackfill(garmin, user, "dailies", D0, D0 + DAY)
    expect(response.status).toBe(403)
    expect(await response.json()).toEqual({ errorMessage: expect.stringContaining("HISTORICAL_DATA_EXPORT") })
    expect(garmin.state.backfills.filter((request) => request.userId === user.userId)).toEqual([])
  })

  it("words the min-start 400 as configured", async () => {
    const user = seedUser()
    user.backfillMinStartTimeInSeconds = D0
    garmin.state.backfill.minStartMessage = (min) => `Invalid start time; earliest allowed is ${min}`
    expect(await (await requestBackfill(garmin, user, "dailies", D0 - DAY, D0)).json()).toEqual({ errorMessage: `Invalid start time; earliest allowed is ${D0}` })
  })

  it("answers 400 before the min start time, naming it as ISO 8601; the user's limit wins", async () => {
    const user = seedUser()
    user.backfillMinStartTimeInSeconds = Date.UTC(2026, 8, 1) / 1000
    garmin.state.backfill.minStartTimeInSeconds = D0 // the user's own limit overrides it
    const before = await requestBackfill(garmin, user, "dailies", D0, D0 + DAY)
    expect(before.status).toBe(400)
    expect(await before.json()).toEqual({
      errorMessage: "summaryStartTimeInSeconds is before the min start time of 2026-09-01T00:00:00Z"
    })
    const september = Date.UTC(2026, 8, 1) / 1000
    expect((await requestBackfill(garmin, user, "dailies", september, september + DAY)).status).toBe(202)

    const other = seedUser() // no limit of its own: the global one applies
    const global = await requestBackfill(garmin, other, "sleeps", D0 - DAY, D0)
    expect(global.status).toBe(400)
    expect(await global.json()).toEqual({
      errorMessage: "summaryStartTimeInSeconds is before the min start time of 2026-01-01T00:00:00Z"
    })
    expect((await requestBackfill(garmin, other, "sleeps", D0, D0 + DAY)).status).toBe(202)
  })

  it("limits activity types to 30 days and every type to 90", async () => {
    const user = seedUser()
    for (const type of ["activities", "activityDetails", "moveiq"]) {
      const tooLong = await requestBackfill(garmin, user, type, D0, D0 + 31 * DAY)
      expect(tooLong.status, type).toBe(400)
      expect(await tooLong.json()).toEqual({ errorMessage: "time range exceeds 30 days" })
      expect((await requestBackfill(garmin, user, type, D0, D0 + 30 * DAY)).status, type).toBe(202)
    }
    expect((await requestBackfill(garmin, user, "dailies", D0, D0 + 90 * DAY)).status).toBe(202)
    expect((await requestBackfill(garmin, user, "sleeps", D0, D0 + 90 * DAY + 1)).status).toBe(400)
  })

  it("logs every request with its answer, in order; backfills keeps the accepted ones", async () => {
    const user = seedUser()
    const before = garmin.state.backfillRequests.length
    const unauthorized = await fetch(
      `${garmin.url}/wellness-api/rest/backfill/hrv?summaryStartTimeInSeconds=${D0}&summaryEndTimeInSeconds=${D0 + DAY}`,
      { headers: bearer("not-a-token") }
    )
    expect(unauthorized.status).toBe(401)
    expect((await requestBackfill(garmin, user, "hrv", D0, D0 + DAY)).status).toBe(202)
    expect((await requestBackfill(garmin, user, "hrv", D0, D0 + DAY)).status).toBe(409)
    const missing = await fetch(`${garmin.url}/wellness-api/rest/backfill/hrv?summaryStartTimeInSeconds=${D0}`, {
      headers: bearer(user.oauth2!.accessToken)
    })
    expect(missing.status).toBe(400)

    const at = expect.any(Number)
    expect(garmin.state.backfillRequests.slice(before)).toEqual([
      { userId: undefined, type: "hrv", start: D0, end: D0 + DAY, status: 401, at },
      { userId: user.userId, type: "hrv", start: D0, end: D0 + DAY, status: 202, at },
      { userId: user.userId, type: "hrv", start: D0, end: D0 + DAY, status: 409, at },
      { userId: user.userId, type: "hrv", start: D0, end: undefined, status: 400, at }
    ])
    expect(garmin.state.backfills.filter((request) => request.userId === user.userId)).toEqual([
      { userId: user.userId, type: "hrv", start: D0, end: D0 + DAY }
    ])
  })
})

describe("backfill rate limit and shutdown (own servers)", () => {
  it("answers 429 with Retry-After over the days budget, summed over users; refusals do not count", async () => {
    const fake = await startFakeGarmin({ consumerKey: consumer.key, consumerSecret: consumer.secret })
    try {
      Object.assign(fake.state.backfill, { daysPerMinute: 10, rateWindowMs: 1_000 })
      const alice = connectedUser(fake)
      const bob = connectedUser(fake)

      expect((await requestBackfill(fake, alice, "dailies", D0, D0 + 6 * DAY)).status).toBe(202)
      const limited = await requestBackfill(fake, bob, "dailies", D0, D0 + 5 * DAY)
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("1")
      // The refused 5 days did not count: 6 + 4 fits.
      expect((await requestBackfill(fake, bob, "sleeps", D0, D0 + 4 * DAY)).status).toBe(202)
      // Partial days count as whole ones: 10 + ceil(1 s / 1 day) is over.
      expect((await requestBackfill(fake, alice, "hrv", D0, D0 + 1)).status).toBe(429)
      // More than a whole window's budget never fits; the duplicate check comes after the limit.
      expect((await requestBackfill(fake, alice, "dailies", D0, D0 + 11 * DAY)).status).toBe(429)
      expect((await requestBackfill(fake, alice, "dailies", D0, D0 + 6 * DAY)).status).toBe(429)

      await sleep(1_050) // the window passes
      expect((await requestBackfill(fake, alice, "dailies", D0, D0 + 6 * DAY)).status).toBe(409)
      expect((await requestBackfill(fake, bob, "dailies", D0, D0 + 5 * DAY)).status).toBe(202)

      const statuses = fake.state.backfillRequests.map((entry) => entry.status)
      expect(statuses).toEqual([202, 429, 202, 429, 429, 429, 409, 202])
      const accepted = fake.state.backfillRequests.filter((entry) => entry.status === 202)
      expect(accepted[2]!.at - accepted[0]!.at).toBeGreaterThanOrEqual(1_000)
    } finally {
      await fake.close()
    }
  })

  it("close() cancels pending deliveries and retries", async () => {
    const receiver = await startReceiver(() => 500)
    try {
      const waiting = await startFakeGarmin({ consumerKey: consumer.key, consumerSecret: consumer.secret })
      Object.assign(waiting.state.backfill, { deliverTo: receiver.url, deliveryDelayMs: 100 })
      const user = connectedUser(waiting)
      waiting.seedHistory(user.userId, { from: D0, to: D0 + DAY, types: ["dailies"] })
      expect((await requestBackfill(waiting, user, "dailies", D0, D0 + DAY)).status).toBe(202)
      await waiting.close()

      const retrying = await startFakeGarmin({ consumerKey: consumer.key, consumerSecret: consumer.secret })
      Object.assign(retrying.state.backfill, { deliverTo: receiver.url, deliveryDelayMs: 0 })
      const other = connectedUser(retrying)
      retrying.seedHistory(other.userId, { from: D0, to: D0 + DAY, types: ["dailies"] })
      expect((await requestBackfill(retrying, other, "dailies", D0, D0 + DAY)).status).toBe(202)
      await vi.waitFor(() => expect(receiver.received).toHaveLength(1), { timeout: 2_000, interval: 10 })
      await retrying.close() // during the 200 ms before the first retry

      await sleep(500)
      expect(receiver.received).toHaveLength(1) // only the retrying server's first attempt
      expect(receiver.received[0]!.body["dailies"]![0]!["userId"]).toBe(other.userId)
      expect(waiting.state.deliveries).toEqual([])
      expect(retrying.state.deliveries).toEqual([])
    } finally {
      await receiver.close()
    }
  })
})

describe("failure injection", () => {
  it("answers injected statuses for N matching requests, then handles normally", async () => {
    const user = seedUser()
    garmin.inject({ path: /^\/wellness-api\/rest\/user\/id$/, status: 429, headers: { "retry-after": "2" }, times: 2 })
    garmin.inject({ method: "GET", path: "/wellness-api/rest/user/id", status: 503, body: '{"errorMessage":"busy"}' })
    const get = () => fetch(`${garmin.url}/wellness-api/rest/user/id`, { headers: bearer(user.oauth2!.accessToken) })

    const limited = await get()
    expect(limited.status).toBe(429)
    expect(limited.headers.get("retry-after")).toBe("2")
    expect((await get()).status).toBe(429)
    const unavailable = await get()
    expect(unavailable.status).toBe(503)
    expect(await unavailable.json()).toEqual({ errorMessage: "busy" })
    const normal = await get()
    expect(normal.status).toBe(200)
    expect(await normal.json()).toEqual({ userId: user.userId })
  })

  it("defaults to one 500 and ignores other methods", async () => {
    garmin.inject({ method: "DELETE", path: "/nowhere" })
    expect((await fetch(`${garmin.url}/nowhere`)).status).toBe(404)
    expect((await fetch(`${garmin.url}/nowhere`, { method: "DELETE" })).status).toBe(500)
    expect((await fetch(`${garmin.url}/nowhere`, { method: "DELETE" })).status).toBe(404)
  })

  it("holds a request open until released, then handles it normally (or answers the rule's status)", async () => {
    const user = seedUser()
    let release!: () => void
    garmin.inject({ path: "/wellness-api/rest/user/id", hold: new Promise<void>((resolve) => (release = resolve)) })
    let answered = false
    const response = fetch(`${garmin.url}/wellness-api/rest/user/id`, { headers: bearer(user.oauth2!.accessToken) }).then((r) => {
      answered = true
      return r
    })
    await vi.waitFor(() => expect(garmin.requests.at(-1)?.path).toBe("/wellness-api/rest/user/id"))
    // Held: the request arrived, and stays unanswered while other requests are served.
    expect((await fetch(`${garmin.url}/wellness-api/rest/user/id`, { headers: bearer(user.oauth2!.accessToken) })).status).toBe(200)
    expect(answered).toBe(false)
    release()
    expect((await response).status).toBe(200)

    garmin.inject({ path: "/wellness-api/rest/user/id", status: 503, hold: Promise.resolve() })
    expect((await fetch(`${garmin.url}/wellness-api/rest/user/id`)).status).toBe(503)
  })

  it("delays a response, then handles it normally", async () => {
    const user = seedUser()
    garmin.inject({ path: "/wellness-api/rest/user/id", delayMs: 300 })
    const started = Date.now()
    const response = await fetch(`${garmin.url}/wellness-api/rest/user/id`, { headers: bearer(user.oauth2!.accessToken) })
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect(response.status).toBe(200)
  })

  it("records every request", () => {
    const last = garmin.requests.at(-1)
    expect(last).toMatchObject({ method: "GET", path: "/wellness-api/rest/user/id", query: {} })
    expect(last?.headers["authorization"]).toMatch(/^Bearer /)
  })
})
