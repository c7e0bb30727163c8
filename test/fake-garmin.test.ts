/** Proves the fake Garmin server: every endpoint, and failure injection. */
import { createHash, createHmac, randomBytes } from "node:crypto"
import OAuth from "oauth-1.0a"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeGarmin, type FakeGarminUser, startFakeGarmin } from "./support/fake-garmin.ts"

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

  it("serves OAuth1-signed pulls (legacy era), records without upload time always", async () => {
    const user = seedUser()
    const url = garmin.pingUrl("mct", { oauth1: true }, 1_444_937_651, 1_444_937_902)
    const response = await fetch(url, { headers: { authorization: signed("GET", url, oauth1Of(user)) } })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual([{ summaryId: "mct-1" }])
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
