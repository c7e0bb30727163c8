/**
 * The fake Oura server's contract, exercised with plain fetch over loopback: what a plugin
 * test may rely on when it runs against the fake.
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders } from "node:http"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { startFakeOura, type FakeOura, type OuraDocument } from "./fake-oura.ts"

const fixture = (name: string) => JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8")) as { data: Array<OuraDocument> }

/** Polls until `probe` returns a value other than undefined. */
const eventually = async <A>(probe: () => A | undefined | Promise<A | undefined>, timeoutMs = 15_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error("condition not met in time")
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

interface Received {
  readonly method: string
  readonly url: URL
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** A webhook receiver: answers the verification challenge when the token matches, and POSTs with `postStatus()`. */
const startReceiver = async (verificationToken: string) => {
  const received: Array<Received> = []
  const receiver = {
    received,
    url: "",
    /** The answer to a verification GET; by default Oura's documented one. */
    answerChallenge: (query: URLSearchParams): { status: number; body: unknown } =>
      query.get("verification_token") === verificationToken
        ? { status: 200, body: { challenge: query.get("challenge") } }
        : { status: 401, body: { detail: "bad token" } },
    postStatus: (): number | Promise<number> => 200,
    close: async () => {}
  }
  const server = createServer(async (req, res) => {
    const chunks: Array<Buffer> = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const url = new URL(req.url ?? "/", receiver.url)
    received.push({ method: req.method ?? "", url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") })
    if (req.method === "GET") {
      const answer = receiver.answerChallenge(url.searchParams)
      res.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body))
    } else {
      const status = await receiver.postStatus()
      if (!res.destroyed) res.writeHead(status).end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no address")
  receiver.url = `http://127.0.0.1:${address.port}/oura/webhook`
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return receiver
}

let oura: FakeOura
beforeEach(async () => {
  oura = await startFakeOura({ clientId: "client-1", clientSecret: "secret-1" })
})
afterEach(async () => {
  await oura.close()
})

const get = (path: string, accessToken: string) => fetch(`${oura.url}${path}`, { headers: { authorization: `Bearer ${accessToken}` } })
const getJson = async (path: string, accessToken: string) => {
  const response = await get(path, accessToken)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}
const tokenRequest = (fields: Record<string, string>) =>
  fetch(`${oura.url}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: "client-1", client_secret: "secret-1", ...fields })
  })
const authorize = async (params: Record<string, string>) => {
  const response = await fetch(`${oura.url}/oauth/authorize?${new URLSearchParams({ response_type: "code", client_id: "client-1", ...params })}`, {
    redirect: "manual"
  })
  return { status: response.status, location: new URL(response.headers.get("location") ?? "http://none/") }
}
/** Every document of a list, following next_token alone (or with the original params). */
const collectAll = async (pathWithQuery: string, accessToken: string, withParams = false) => {
  const docs: Array<OuraDocument> = []
  let pages = 0
  let next: string | null = null
  do {
    const path: string =
      next === null ? pathWithQuery : withParams ? `${pathWithQuery}${pathWithQuery.includes("?") ? "&" : "?"}next_token=${next}` : `${pathWithQuery.split("?")[0]}?next_token=${next}`
    const { status, body } = await getJson(path, accessToken)
    expect(status).toBe(200)
    docs.push(...(body["data"] as Array<OuraDocument>))
    next = body["next_token"] as string | null
    pages++
  } while (next !== null)
  return { docs, pages }
}

const subscribe = (body: Record<string, unknown>, secret = "secret-1") =>
  fetch(`${oura.url}/v2/webhook/subscription`, {
    method: "POST",
    headers: { "x-client-id": "client-1", "x-client-secret": secret, "content-type": "application/json" },
    body: JSON.stringify(body)
  })
const clientHeaders = { "x-client-id": "client-1", "x-client-secret": "secret-1" }

describe("OAuth", () => {
  const redirectUri = "http://127.0.0.1:9/callback"

  it("runs the code flow: granted ⊂ requested, unknown scopes dropped, code single use", async () => {
    oura.addUser("user-a", { approvedScopes: ["daily", "personal"] })
    oura.state.nextConsent = "user-a"
    const consent = await authorize({ redirect_uri: redirectUri, state: "xyz", scope: "daily heartrate personal bogus" })
    expect(consent.status).toBe(302)
    expect(consent.location.origin + consent.location.pathname).toBe(redirectUri)
    expect(consent.location.searchParams.get("state")).toBe("xyz")
    const code = consent.location.searchParams.get("code") ?? ""

    const response = await tokenRequest({ grant_type: "authorization_code", code, redirect_uri: redirectUri })
    expect(response.status).toBe(200)
    const tokens = (await response.json()) as Record<string, unknown>
    expect(tokens).toMatchObject({ token_type: "bearer", expires_in: 86_400, scope: "daily personal" })
    const info = await getJson("/v2/usercollection/personal_info", String(tokens["access_token"]))
    expect(info).toMatchObject({ status: 200, body: { id: "user-a", age: 42 } })
    expect(info.body["email"]).toBeUndefined() // no email scope

    const again = await tokenRequest({ grant_type: "authorization_code", code, redirect_uri: redirectUri })
    expect(again.status).toBe(400)
    expect(await again.json()).toMatchObject({ error: "invalid_grant" })
  })

  it("refuses expired codes, a different redirect_uri and wrong client credentials", async () => {
    const codeFor = async () => (await authorize({ redirect_uri: redirectUri })).location.searchParams.get("code") ?? ""
    const expired = await codeFor()
    const entry = oura.state.authorizationCodes.get(expired)
    if (entry) entry.expiresAt = Date.now() - 1
    const late = await tokenRequest({ grant_type: "authorization_code", code: expired, redirect_uri: redirectUri })
    expect([late.status, ((await late.json()) as { error: string }).error]).toEqual([400, "invalid_grant"])

    const mismatch = await tokenRequest({ grant_type: "authorization_code", code: await codeFor(), redirect_uri: "http://127.0.0.1:9/other" })
    expect([mismatch.status, ((await mismatch.json()) as { error: string }).error]).toEqual([400, "invalid_redirect_uri"])

    const wrongClient = await tokenRequest({ grant_type: "authorization_code", code: await codeFor(), redirect_uri: redirectUri, client_secret: "nope" })
    expect([wrongClient.status, ((await wrongClient.json()) as { error: string }).error]).toEqual([401, "invalid_client"])

    const unknownClient = await authorize({ redirect_uri: redirectUri, client_id: "someone-else" })
    expect(unknownClient.status).toBe(400)
  })

  it("sends access_denied back to the redirect_uri when the user declines", async () => {
    oura.addUser("user-b", { deniesConsent: true })
    oura.state.nextConsent = "user-b"
    const consent = await authorize({ redirect_uri: redirectUri, state: "s1" })
    expect(consent.status).toBe(302)
    expect(Object.fromEntries(consent.location.searchParams)).toMatchObject({ error: "access_denied", state: "s1" })
    expect(consent.location.searchParams.get("error_description")).toBeTruthy()
  })

  it("rotates refresh tokens: each works once, the second use is invalid_grant", async () => {
    oura.state.oauth.expiresIn = 600
    const first = oura.connect("user-c", ["daily"])
    const response = await tokenRequest({ grant_type: "refresh_token", refresh_token: first.refresh_token })
    expect(response.status).toBe(200)
    const second = (await response.json()) as Record<string, unknown>
    expect(second).toMatchObject({ token_type: "bearer", expires_in: 600 })
    expect(second["refresh_token"]).not.toBe(first.refresh_token)
    expect((await get("/v2/usercollection/daily_sleep", String(second["access_token"]))).status).toBe(200)

    const reuse = await tokenRequest({ grant_type: "refresh_token", refresh_token: first.refresh_token })
    expect(reuse.status).toBe(400)
    expect(await reuse.json()).toEqual({ error: "invalid_grant", error_description: "Token Already Used Or Revoked" })
    expect(oura.state.counters.refreshes).toBe(2)
    // The rotated-out access token lives on until it expires, unless switched.
    expect((await get("/v2/usercollection/daily_sleep", first.access_token)).status).toBe(200)
    oura.state.oauth.refreshRevokesOldAccessToken = true
    const third = await tokenRequest({ grant_type: "refresh_token", refresh_token: String(second["refresh_token"]) })
    expect(third.status).toBe(200)
    expect((await get("/v2/usercollection/daily_sleep", String(second["access_token"]))).status).toBe(401)
  })

  it("answers 401 for revoked, expired and unknown tokens", async () => {
    const grant = oura.connect("user-d")
    expect((await get("/v2/usercollection/daily_sleep", grant.access_token)).status).toBe(200)
    expect((await fetch(`${oura.url}/oauth/revoke?access_token=${grant.access_token}`, { method: "POST" })).status).toBe(200)
    const revoked = await getJson("/v2/usercollection/daily_sleep", grant.access_token)
    expect(revoked).toEqual({ status: 401, body: { detail: expect.any(String) } })
    // Revoking the token revokes its grant: the refresh token is dead too.
    expect((await tokenRequest({ grant_type: "refresh_token", refresh_token: grant.refresh_token })).status).toBe(400)

    const other = oura.connect("user-d")
    const access = oura.state.accessTokens.get(other.access_token)
    if (access) access.expiresAt = Date.now() - 1
    expect((await get("/v2/usercollection/daily_sleep", other.access_token)).status).toBe(401)
    expect((await get("/v2/usercollection/daily_sleep", "made-up")).status).toBe(401)
  })
})

describe("data routes", () => {
  it("paginates: every document once across small pages, next_token alone or with the params", async () => {
    const { access_token } = oura.connect("user-p")
    oura.seed("user-p", ["sleep"])
    oura.state.pageSize = 5
    const expected = fixture("sleep.list.200.json").data.map((doc) => doc["id"])
    const alone = await collectAll("/v2/usercollection/sleep", access_token)
    expect(alone.pages).toBe(Math.ceil(expected.length / 5))
    expect(alone.docs.map((doc) => doc["id"]).sort()).toEqual([...expected].sort())
    const withParams = await collectAll("/v2/usercollection/sleep?start_date=2024-01-01&end_date=2025-01-01", access_token, true)
    expect(withParams.docs.map((doc) => doc["id"]).sort()).toEqual([...expected].sort())

    oura.state.timeSeriesPageSize = 400
    oura.seed("user-p", ["heartrate"])
    const rows = await collectAll("/v2/usercollection/heartrate?start_datetime=2024-12-13T00:00:00Z&end_datetime=2024-12-15T00:00:00Z", access_token)
    expect(rows.docs).toHaveLength(fixture("heartrate.list.200.json").data.length)
    expect(rows.pages).toBe(3)
    const latest = await getJson("/v2/usercollection/heartrate?latest=true", access_token)
    expect(latest.body["data"]).toEqual(fixture("heartrate.list.200.json").data.slice(-1))
    const unknown = await getJson("/v2/usercollection/sleep?next_token=nope", access_token)
    expect(unknown).toEqual({ status: 400, body: { detail: expect.any(String) } })
  })

  it("windows each collection by its own rule, switchable per collection", async () => {
    const { access_token } = oura.connect("user-w")
    oura.seed("user-w", ["daily_activity", "daily_readiness", "sleep"])
    const [activity] = fixture("daily_activity.list.200.json").data
    oura.state.users.get("user-w")?.documents["daily_activity"]?.push({ ...activity, id: "next-day", day: "2024-11-12", timestamp: "2024-11-12T04:00:00+01:00" })
    const ids = async (path: string) => ((await getJson(path, access_token)).body["data"] as Array<OuraDocument>).map((doc) => doc["id"])

    // Recorded: 2024-11-11..12 gave one activity (filtered on timestamp) but two readiness documents.
    expect(await ids("/v2/usercollection/daily_readiness?start_date=2024-11-11&end_date=2024-11-12")).toHaveLength(2)
    expect(await ids("/v2/usercollection/daily_activity?start_date=2024-11-11&end_date=2024-11-12")).toHaveLength(1)
    expect(await ids("/v2/usercollection/daily_activity?start_date=2024-11-11&end_date=2024-11-12T23:59:59%2B01:00")).toHaveLength(2)
    oura.state.windows["daily_activity"] = { field: "day", start: "inclusive", end: "inclusive" }
    expect(await ids("/v2/usercollection/daily_activity?start_date=2024-11-11&end_date=2024-11-12")).toHaveLength(2)

    // sleep: exclusive at the start by default.
    const sleepOn10 = fixture("sleep.list.200.json").data.filter((doc) => doc["day"] === "2024-10-10").length
    expect(sleepOn10).toBeGreaterThan(0)
    expect(await ids("/v2/usercollection/sleep?start_date=2024-10-10&end_date=2024-10-10")).toHaveLength(0)
    oura.state.windows["sleep"] = { field: "day", start: "inclusive", end: "inclusive" }
    expect(await ids("/v2/usercollection/sleep?start_date=2024-10-10&end_date=2024-10-10")).toHaveLength(sleepOn10)

    // Nonsense dates read as unix seconds: 200 and nothing; unparseable ones are FastAPI's 422.
    expect(await getJson("/v2/usercollection/sleep?start_date=1&end_date=2", access_token)).toEqual({ status: 200, body: { data: [], next_token: null } })
    const invalid = await getJson("/v2/usercollection/sleep?start_date=yesterday", access_token)
    expect(invalid.status).toBe(422)
    expect(invalid.body["detail"]).toEqual([expect.objectContaining({ loc: ["query", "start_date"], msg: expect.any(String), type: expect.any(String) })])
  })

  it("serves single documents bare, 404 {detail} for unknown ids, and the other user's documents to no one", async () => {
    const { access_token } = oura.connect("user-s")
    oura.seed("user-s", ["daily_activity", "vO2_max"])
    const [activity] = fixture("daily_activity.list.200.json").data
    expect(await getJson(`/v2/usercollection/daily_activity/${String(activity?.["id"])}`, access_token)).toEqual({ status: 200, body: activity })
    expect(await getJson("/v2/usercollection/daily_activity/no-such-id", access_token)).toEqual({ status: 404, body: { detail: "Document not found." } })
    const [vo2] = fixture("vo2_max.list.200.json").data
    expect((await getJson(`/v2/usercollection/vO2_max/${String(vo2?.["id"])}`, access_token)).status).toBe(200)
    const stranger = oura.connect("user-t")
    expect((await getJson(`/v2/usercollection/daily_activity/${String(activity?.["id"])}`, stranger.access_token)).status).toBe(404)
    expect((await get("/v2/usercollection/heartrate/anything", access_token)).status).toBe(404)

    const picked = await getJson("/v2/usercollection/daily_activity?fields=score,steps", access_token)
    expect(Object.keys((picked.body["data"] as Array<OuraDocument>)[0] ?? {}).sort()).toEqual(["day", "id", "score", "steps", "timestamp"])
    // The RFC 7807 bodies Oura's docs describe, for clients that must parse both.
    oura.state.errorShape = "problem"
    expect(await getJson("/v2/usercollection/daily_activity/no-such-id", access_token)).toEqual({
      status: 404,
      body: { status: 404, title: "Not Found", detail: "Document not found." }
    })
  })

  it("answers 403 for a collection whose scope the grant lacks, 426 where set, and personal_info's id to any token", async () => {
    const { access_token } = oura.connect("user-x", ["daily"])
    expect((await get("/v2/usercollection/daily_sleep", access_token)).status).toBe(200)
    for (const collection of ["heartrate", "workout", "daily_spo2", "vO2_max", "ring_configuration"]) {
      const answer = await getJson(`/v2/usercollection/${collection}`, access_token)
      expect(answer).toEqual({ status: 403, body: { detail: expect.any(String) } })
    }
    expect(await getJson("/v2/usercollection/personal_info", access_token)).toEqual({ status: 200, body: { id: "user-x" } })
    oura.state.users.get("user-x")?.appTooOld.add("daily_sleep")
    expect((await get("/v2/usercollection/daily_sleep", access_token)).status).toBe(426)
  })

  it("rate-limits per access token with Oura's 429 headers and counts requests", async () => {
    const first = oura.connect("user-r")
    const second = oura.connect("user-r")
    oura.state.rateLimit.perToken = 3
    for (let i = 0; i < 3; i++) expect((await get("/v2/usercollection/daily_sleep", first.access_token)).status).toBe(200)
    const limited = await get("/v2/usercollection/daily_sleep", first.access_token)
    expect(limited.status).toBe(429)
    expect(await limited.json()).toEqual({ detail: expect.any(String) })
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0)
    expect(limited.headers.get("x-ratelimit-limit")).toBe("3")
    expect(limited.headers.get("x-ratelimit-window")).toBe("300")
    expect(Number(limited.headers.get("x-ratelimit-reset"))).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000))
    expect(limited.headers.get("x-ratelimit-tier")).toBe("access_token")
    expect((await get("/v2/usercollection/daily_sleep", second.access_token)).status).toBe(200)

    oura.state.rateLimit.perApp = 4
    const appLimited = await get("/v2/usercollection/daily_sleep", second.access_token)
    expect([appLimited.status, appLimited.headers.get("x-ratelimit-tier")]).toEqual([429, "application"])
    expect(oura.state.counters.requestsByToken.get(first.access_token)).toBe(4)
    expect(oura.state.counters.requestsByApp).toBe(6)
    expect(oura.state.counters.rateLimited).toBe(2)
  })

  it("serves the sandbox with any bearer, and injected failures in front of any route", async () => {
    const sandbox = await getJson("/v2/sandbox/usercollection/workout", "anything")
    expect(sandbox.status).toBe(200)
    expect((sandbox.body["data"] as Array<unknown>).length).toBeGreaterThan(0)

    const { access_token } = oura.connect("user-i")
    oura.inject({ path: "/v2/usercollection/daily_sleep", status: 503, body: '{"detail":"down"}', times: 2 })
    expect((await get("/v2/usercollection/daily_sleep", access_token)).status).toBe(503)
    expect((await get("/v2/usercollection/daily_sleep", access_token)).status).toBe(503)
    expect((await get("/v2/usercollection/daily_sleep", access_token)).status).toBe(200)

    let release = () => {}
    oura.inject({ path: "/v2/usercollection/daily_sleep", hold: new Promise<void>((resolve) => (release = resolve)) })
    let settled = false
    const held = get("/v2/usercollection/daily_sleep", access_token).then((response) => ((settled = true), response))
    await eventually(() => (oura.requests.filter((r) => r.path === "/v2/usercollection/daily_sleep").length === 4 ? true : undefined))
    expect(settled).toBe(false)
    release()
    expect((await held).status).toBe(200)
  })
})

describe("webhooks", () => {
  it("creates a subscription only after the callback answers the challenge", async () => {
    const receiver = await startReceiver("verify-me")
    try {
      const created = await subscribe({ callback_url: receiver.url, verification_token: "verify-me", event_type: "create", data_type: "sleep" })
      expect(created.status).toBe(201)
      const model = (await created.json()) as Record<string, unknown>
      expect(model).toEqual({ id: expect.any(String), callback_url: receiver.url, event_type: "create", data_type: "sleep", expiration_time: expect.any(String) })
      const verification = receiver.received.find((r) => r.method === "GET")
      expect(verification?.url.searchParams.get("verification_token")).toBe("verify-me")
      expect(oura.state.verifications).toEqual([expect.objectContaining({ status: 200, passed: true, challenge: verification?.url.searchParams.get("challenge") })])

      // The wrong token (the receiver answers 401) and a wrong challenge both prevent creation.
      const refused = await subscribe({ callback_url: receiver.url, verification_token: "guess", event_type: "update", data_type: "sleep" })
      expect(refused.status).toBe(400)
      receiver.answerChallenge = () => ({ status: 200, body: { challenge: "something else" } })
      const wrongAnswer = await subscribe({ callback_url: receiver.url, verification_token: "verify-me", event_type: "update", data_type: "sleep" })
      expect(wrongAnswer.status).toBe(400)
      const list = await fetch(`${oura.url}/v2/webhook/subscription`, { headers: clientHeaders })
      expect(((await list.json()) as Array<unknown>).map((s) => (s as { id: string }).id)).toEqual([model["id"]])

      expect((await subscribe({ callback_url: receiver.url, verification_token: "verify-me", event_type: "create", data_type: "sleep" }, "wrong")).status).toBe(401)
      const invalid = await subscribe({ callback_url: receiver.url, event_type: "sometimes", data_type: "sleep" })
      expect(invalid.status).toBe(422)
      expect(((await invalid.json()) as { detail: Array<{ loc: Array<string> }> }).detail.map((e) => e.loc)).toEqual([
        ["body", "verification_token"],
        ["body", "event_type"]
      ])
    } finally {
      await receiver.close()
    }
  })

  it("renews, reads, updates and deletes by id; unknown ids answer 403 (or 404 when switched)", async () => {
    const receiver = await startReceiver("t")
    try {
      const created = (await (await subscribe({ callback_url: receiver.url, verification_token: "t", event_type: "update", data_type: "workout" })).json()) as { id: string; expiration_time: string }
      expect(Date.parse(created.expiration_time) - Date.now()).toBeGreaterThan(89 * 86_400_000)
      const sub = oura.state.subscriptions.get(created.id)
      if (sub) sub.expiresAt = Date.now() + 60_000 // nearly expired
      const renewed = await fetch(`${oura.url}/v2/webhook/subscription/renew/${created.id}`, { method: "PUT", headers: clientHeaders })
      expect(renewed.status).toBe(200)
      expect(Date.parse(((await renewed.json()) as { expiration_time: string }).expiration_time) - Date.now()).toBeGreaterThan(89 * 86_400_000)

      const updated = await fetch(`${oura.url}/v2/webhook/subscription/${created.id}`, {
        method: "PUT",
        headers: { ...clientHeaders, "content-type": "application/json" },
        body: JSON.stringify({ verification_token: "t", event_type: "delete" })
      })
      expect(await updated.json()).toMatchObject({ id: created.id, event_type: "delete", data_type: "workout" })
      expect((await fetch(`${oura.url}/v2/webhook/subscription/${created.id}`, { headers: clientHeaders })).status).toBe(200)
      expect((await fetch(`${oura.url}/v2/webhook/subscription/${created.id}`, { method: "DELETE", headers: clientHeaders })).status).toBe(204)
      const gone = await fetch(`${oura.url}/v2/webhook/subscription/renew/${created.id}`, { method: "PUT", headers: clientHeaders })
      expect([gone.status, await gone.json()]).toEqual([403, { detail: expect.any(String) }])
      oura.state.webhooks.unknownIdStatus = 404
      expect((await fetch(`${oura.url}/v2/webhook/subscription/${created.id}`, { headers: clientHeaders })).status).toBe(404)
    } finally {
      await receiver.close()
    }
  })

  it("signs notifications with the client secret over timestamp + raw body, and the object can be fetched", async () => {
    const receiver = await startReceiver("t")
    try {
      await subscribe({ callback_url: receiver.url, verification_token: "t", event_type: "create", data_type: "vo2_max" })
      const { access_token } = oura.connect("user-n")
      const outcomes = await oura.create("user-n", "vO2_max", { id: "vo2-1", day: "2024-11-12", timestamp: "2024-11-12T10:00:00+00:00", vo2_max: 50 })
      expect(outcomes).toEqual([expect.objectContaining({ status: 200, attempts: 1 })])

      const post = await eventually(() => receiver.received.find((r) => r.method === "POST"))
      const timestamp = String(post.headers["x-oura-timestamp"])
      expect(timestamp).toMatch(/^\d+$/)
      const expected = createHmac("sha256", "secret-1").update(timestamp + post.body).digest("hex").toUpperCase()
      const signature = String(post.headers["x-oura-signature"])
      expect(signature).toMatch(/^[0-9A-F]{64}$/)
      expect(timingSafeEqual(Buffer.from(signature), Buffer.from(expected))).toBe(true)
      // Oura's sample re-serialises the parsed body; the compact default verifies that way too.
      const notification = JSON.parse(post.body) as Record<string, string>
      expect(JSON.stringify(notification)).toBe(post.body)
      expect(Object.keys(notification).sort()).toEqual(Object.keys(JSON.parse(readFileSync(new URL("./fixtures/webhook-notification.doc-example.json", import.meta.url), "utf8")) as object).sort())
      expect(notification).toMatchObject({ event_type: "create", data_type: "vo2_max", object_id: "vo2-1", user_id: "user-n" })
      expect((await getJson(`/v2/usercollection/vO2_max/${notification["object_id"]}`, access_token)).body).toMatchObject({ vo2_max: 50 })
    } finally {
      await receiver.close()
    }
  })

  it("revise and remove change the document and notify update and delete", async () => {
    const receiver = await startReceiver("t")
    try {
      for (const event_type of ["update", "delete"]) {
        expect((await subscribe({ callback_url: receiver.url, verification_token: "t", event_type, data_type: "daily_sleep" })).status).toBe(201)
      }
      const { access_token } = oura.connect("user-v")
      const [sleep] = oura.seed("user-v", ["daily_sleep"])["daily_sleep"] ?? []
      const id = String(sleep?.["id"])
      await oura.revise("user-v", "daily_sleep", { ...sleep, score: 12 })
      expect((await getJson(`/v2/usercollection/daily_sleep/${id}`, access_token)).body).toMatchObject({ id, score: 12 })
      expect(oura.state.users.get("user-v")?.documents["daily_sleep"]?.filter((doc) => doc["id"] === id)).toHaveLength(1)
      await oura.remove("user-v", "daily_sleep", id)
      expect((await getJson(`/v2/usercollection/daily_sleep/${id}`, access_token)).status).toBe(404)
      const posts = receiver.received.filter((r) => r.method === "POST").map((r) => JSON.parse(r.body) as Record<string, string>)
      expect(posts.map((n) => [n["event_type"], n["object_id"], n["user_id"]])).toEqual([
        ["update", id, "user-v"],
        ["delete", id, "user-v"]
      ])
    } finally {
      await receiver.close()
    }
  })

  it("sends Python-spaced bodies when switched: only the raw bytes verify then", async () => {
    oura.state.webhooks.bodyStyle = "python"
    const receiver = await startReceiver("t")
    try {
      await subscribe({ callback_url: receiver.url, verification_token: "t", event_type: "update", data_type: "daily_sleep" })
      await oura.notify({ userId: "u", dataType: "daily_sleep", objectId: "d1", eventType: "update" })
      const post = await eventually(() => receiver.received.find((r) => r.method === "POST"))
      const timestamp = String(post.headers["x-oura-timestamp"])
      const sign = (body: string) => createHmac("sha256", "secret-1").update(timestamp + body).digest("hex").toUpperCase()
      expect(post.body).toContain('"event_type": "update", ')
      expect(post.headers["x-oura-signature"]).toBe(sign(post.body))
      expect(post.headers["x-oura-signature"]).not.toBe(sign(JSON.stringify(JSON.parse(post.body))))
    } finally {
      await receiver.close()
    }
  })

  it("counts a callback that does not answer in time as failed and retries it", async () => {
    oura.state.webhooks.retryDelayMs = () => 1
    oura.state.webhooks.timeoutMs = 1_500 // long enough for the retry's answer on a loaded machine
    const receiver = await startReceiver("t")
    let release = () => {}
    const stalled = new Promise<number>((resolve) => (release = () => resolve(200)))
    try {
      await subscribe({ callback_url: receiver.url, verification_token: "t", event_type: "delete", data_type: "tag" })
      // The first POST gets no answer until the fake has given up on it; the retry gets 200.
      const answers: Array<number | Promise<number>> = [stalled, 200]
      receiver.postStatus = () => answers.shift() ?? 200
      const outcome = await oura.notify({ userId: "u", dataType: "tag", objectId: "t1", eventType: "delete" })
      expect(outcome).toEqual([expect.objectContaining({ status: 200, attempts: 2 })])
      expect(oura.state.deliveries.map((d) => d.status)).toEqual([0, 200])
    } finally {
      release()
      await receiver.close()
    }
  })

  it("retries failed deliveries, stops on 410 (cancelling the subscription), and skips expired subscriptions", async () => {
    oura.state.webhooks.retryDelayMs = () => 1
    const receiver = await startReceiver("t")
    try {
      const created = (await (await subscribe({ callback_url: receiver.url, verification_token: "t", event_type: "update", data_type: "sleep" })).json()) as { id: string }
      const answers = [500, 503, 200]
      receiver.postStatus = () => answers.shift() ?? 200
      await oura.notify({ userId: "u", dataType: "sleep", objectId: "s1", eventType: "update" })
      await eventually(() => (oura.state.deliveries.length === 3 ? true : undefined))
      expect(oura.state.deliveries.map((d) => [d.attempt, d.status])).toEqual([[1, 500], [2, 503], [3, 200]])

      oura.state.webhooks.retries = 2
      receiver.postStatus = () => 500
      await oura.notify({ userId: "u", dataType: "sleep", objectId: "s2", eventType: "update" })
      await eventually(() => (oura.state.deliveries.length === 6 ? true : undefined))
      expect(oura.state.deliveries.slice(3).map((d) => d.attempt)).toEqual([1, 2, 3])

      receiver.postStatus = () => 410
      await oura.notify({ userId: "u", dataType: "sleep", objectId: "s3", eventType: "update" })
      await eventually(() => (oura.state.subscriptions.has(created.id) ? undefined : true))
      expect(oura.state.deliveries.slice(6).map((d) => d.status)).toEqual([410])

      const again = (await (await subscribe({ callback_url: receiver.url, verification_token: "t", event_type: "update", data_type: "sleep" })).json()) as { id: string }
      const sub = oura.state.subscriptions.get(again.id)
      if (sub) sub.expiresAt = Date.now() - 1
      receiver.postStatus = () => 200
      expect(await oura.notify({ userId: "u", dataType: "sleep", objectId: "s4", eventType: "update" })).toEqual([])
      expect(oura.state.deliveries).toHaveLength(7)
    } finally {
      await receiver.close()
    }
  })
})
