/**
 * The fake Withings server's contract, exercised with plain fetch over loopback: what a plugin
 * test may rely on when it runs against the fake.
 */
import { readFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders } from "node:http"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { startFakeWithings, withingsSignature, type FakeWithings, type WithingsDocument } from "./fake-withings.ts"
import { eventually } from "../../../test/support/server.ts"

const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8"))


interface Received {
  readonly method: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** A notification receiver: HEAD answers `headStatus`, POST answers `postStatus()`. */
const startReceiver = async () => {
  const received: Array<Received> = []
  const receiver = {
    received,
    url: "",
    headStatus: 200,
    postStatus: (): number => 200,
    close: async () => {}
  }
  const server = createServer(async (req, res) => {
    const chunks: Array<Buffer> = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    received.push({ method: req.method ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") })
    res.writeHead(req.method === "HEAD" ? receiver.headStatus : receiver.postStatus()).end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no address")
  receiver.url = `http://127.0.0.1:${address.port}/withings/notify/secret-path`
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return receiver
}

let withings: FakeWithings
beforeEach(async () => {
  withings = await startFakeWithings({ clientId: "client-1", clientSecret: "secret-1", redirectUris: ["https://app.example/callback"] })
})
afterEach(async () => {
  await withings.close()
})

interface Answer {
  readonly httpStatus: number
  readonly status: number
  readonly body: Record<string, unknown>
  readonly error?: string
}

/** A Withings call: POST, form-encoded fields, Bearer token when given. */
const call = async (path: string, fields: Record<string, string | number>, accessToken?: string): Promise<Answer> => {
  const response = await fetch(`${withings.url}${path}`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(accessToken === undefined ? {} : { authorization: `Bearer ${accessToken}` })
    },
    body: new URLSearchParams(Object.entries(fields).map(([k, v]) => [k, String(v)]))
  })
  const json = (await response.json()) as { status: number; body: Record<string, unknown>; error?: string }
  return { httpStatus: response.status, ...json }
}

const requestToken = (fields: Record<string, string>) =>
  call("/v2/oauth2", { action: "requesttoken", client_id: "client-1", client_secret: "secret-1", ...fields })

const authorize = async (params: Record<string, string>) => {
  const query = new URLSearchParams({
    response_type: "code",
    client_id: "client-1",
    redirect_uri: "https://app.example/callback",
    state: "st-1",
    ...params
  })
  const response = await fetch(`${withings.url}/oauth2_user/authorize2?${query}`, { redirect: "manual" })
  return { status: response.status, location: new URL(response.headers.get("location") ?? "http://none/") }
}

/** Consent and exchange: the token answer's body. */
const connectViaOAuth = async (scope = "user.metrics,user.activity") => {
  const { location } = await authorize({ scope })
  const answer = await requestToken({ grant_type: "authorization_code", code: location.searchParams.get("code") ?? "", redirect_uri: "https://app.example/callback" })
  expect(answer.status).toBe(0)
  return answer.body as { userid: string; access_token: string; refresh_token: string; scope: string }
}

/** Every document of a v2 list or getmeas, following more/offset. */
const collectAll = async (path: string, fields: Record<string, string | number>, key: string, token: string) => {
  const docs: Array<WithingsDocument> = []
  const bodies: Array<Record<string, unknown>> = []
  let offset: number | undefined
  for (;;) {
    const answer = await call(path, offset === undefined ? fields : { ...fields, offset }, token)
    expect(answer.status).toBe(0)
    bodies.push(answer.body)
    docs.push(...(answer.body[key] as Array<WithingsDocument>))
    const more = answer.body["more"]
    if (more !== true && more !== 1) return { docs, bodies }
    offset = answer.body["offset"] as number
  }
}

describe("OAuth 2.0", () => {
  it("redirects with a code and the state, and exchanges it once for tokens carrying a string userid and comma-separated scopes", async () => {
    withings.addUser("4242", { approvedScopes: ["user.metrics", "user.sleepevents"] })
    withings.state.nextConsent = "4242"
    const { status, location } = await authorize({ scope: "user.metrics,user.activity,user.sleepevents" })
    expect(status).toBe(302)
    expect(`${location.origin}${location.pathname}`).toBe("https://app.example/callback")
    expect(location.searchParams.get("state")).toBe("st-1")
    const code = location.searchParams.get("code") ?? ""
    expect(code).not.toBe("")

    const answer = await requestToken({ grant_type: "authorization_code", code, redirect_uri: "https://app.example/callback" })
    expect(answer.httpStatus).toBe(200)
    expect(answer.status).toBe(0)
    expect(answer.body).toMatchObject({ userid: "4242", expires_in: 10_800, scope: "user.metrics,user.sleepevents", token_type: "Bearer" })

    const again = await requestToken({ grant_type: "authorization_code", code, redirect_uri: "https://app.example/callback" })
    expect(again).toMatchObject({ httpStatus: 200, status: 503, error: "Invalid Params: invalid code" })
  })

  it("refuses space-separated scopes and unregistered redirect URIs on the authorize page", async () => {
    expect((await authorize({ scope: "user.metrics user.activity" })).status).toBe(400)
    expect((await authorize({ scope: "user.metrics", redirect_uri: "https://evil.example/cb" })).status).toBe(400)
  })

  it("rotates refresh tokens: the old one dies once the new access token is used, and reusing it fails", async () => {
    const first = await connectViaOAuth()
    const refreshed = await requestToken({ grant_type: "refresh_token", refresh_token: first.refresh_token })
    expect(refreshed.status).toBe(0)
    expect(refreshed.body["userid"]).toBeUndefined()
    const second = refreshed.body as { access_token: string; refresh_token: string }
    expect(second.refresh_token).not.toBe(first.refresh_token)

    expect((await call("/v2/user", { action: "getdevice" }, second.access_token)).status).toBe(0)
    const reused = await requestToken({ grant_type: "refresh_token", refresh_token: first.refresh_token })
    expect(reused).toMatchObject({ httpStatus: 200, status: 503, error: "Invalid Params: invalid refresh_token" })
    expect((await requestToken({ grant_type: "refresh_token", refresh_token: second.refresh_token })).status).toBe(0)
  })

  it("kills the old refresh token at once when set to", async () => {
    withings.state.oauth.oldRefresh = "immediate"
    const first = await connectViaOAuth()
    expect((await requestToken({ grant_type: "refresh_token", refresh_token: first.refresh_token })).status).toBe(0)
    expect((await requestToken({ grant_type: "refresh_token", refresh_token: first.refresh_token })).status).toBe(503)
  })

  it("revokes a user with a signed call: tokens die and notification subscriptions go", async () => {
    const receiver = await startReceiver()
    try {
      const tokens = await connectViaOAuth()
      expect((await call("/notify", { action: "subscribe", callbackurl: receiver.url, appli: 1 }, tokens.access_token)).status).toBe(0)
      const timestamp = String(Math.floor(Date.now() / 1000))
      const nonceAnswer = await call("/v2/signature", {
        action: "getnonce",
        client_id: "client-1",
        timestamp,
        signature: withingsSignature("secret-1", { action: "getnonce", client_id: "client-1", timestamp })
      })
      const nonce = nonceAnswer.body["nonce"] as string
      const revoke = await call("/v2/oauth2", {
        action: "revoke",
        client_id: "client-1",
        nonce,
        signature: withingsSignature("secret-1", { action: "revoke", client_id: "client-1", nonce }),
        userid: tokens.userid
      })
      expect(revoke.status).toBe(0)
      expect(withings.state.subscriptions).toEqual([])
      expect((await call("/v2/user", { action: "getdevice" }, tokens.access_token)).status).toBe(401)
    } finally {
      await receiver.close()
    }
  })
})

describe("errors inside HTTP 200", () => {
  it("answers an invalid or expired token, an unknown action, a missing scope and an injected status with HTTP 200", async () => {
    const tokens = withings.connect("77", ["user.activity"])
    const invalid = await call("/measure", { action: "getmeas" }, "not-a-token")
    expect(invalid).toMatchObject({ httpStatus: 200, status: 401, body: {} })
    expect(invalid.error).toContain("invalid_token")

    expect(await call("/measure", { action: "getmeas" }, tokens.access_token)).toMatchObject({ httpStatus: 200, status: 214 })
    expect(await call("/v2/measure", { action: "nosuchaction" }, tokens.access_token)).toMatchObject({ httpStatus: 200, status: 2554 })
    expect(await call("/v2/sleep", { action: "getsummary" }, tokens.access_token)).toMatchObject({ httpStatus: 200, status: 503 })

    withings.inject({ path: "/v2/sleep", action: "getsummary", withingsStatus: 522, error: "Timeout" })
    expect(await call("/v2/sleep", { action: "getsummary", lastupdate: 0 }, tokens.access_token)).toMatchObject({ httpStatus: 200, status: 522 })
    expect((await call("/v2/sleep", { action: "getsummary", lastupdate: 0 }, tokens.access_token)).status).toBe(0)

    for (const token of withings.state.accessTokens.values()) token.expiresAt = Date.now() - 1
    expect(await call("/v2/sleep", { action: "getsummary", lastupdate: 0 }, tokens.access_token)).toMatchObject({ httpStatus: 200, status: 401 })
  })

  it("answers status 601 once the app-wide rate limit is reached, for every user, and counts requests", async () => {
    const a = withings.connect("1")
    const b = withings.connect("2")
    withings.state.rateLimit.perWindow = 3
    expect((await call("/v2/user", { action: "getdevice" }, a.access_token)).status).toBe(0)
    expect((await call("/v2/user", { action: "getdevice" }, b.access_token)).status).toBe(0)
    expect((await call("/v2/user", { action: "getdevice" }, a.access_token)).status).toBe(0)
    const limited = await call("/v2/user", { action: "getdevice" }, b.access_token)
    expect(limited).toMatchObject({ httpStatus: 200, status: 601 })
    expect(withings.state.counters.requests).toBe(4)
    expect(withings.state.counters.rateLimited).toBe(1)
    withings.state.rateLimit.perWindow = undefined
    expect((await call("/v2/user", { action: "getdevice" }, b.access_token)).status).toBe(0)
  })
})

describe("data", () => {
  it("serves getmeas groups exactly as the fixture holds them, values decoding as value × 10^unit", async () => {
    const tokens = withings.connect("10")
    withings.seed("10", ["measuregrps"])
    withings.state.pageSize = 10
    const { docs } = await collectAll("/measure", { action: "getmeas", startdate: 0, enddate: 2_000_000_000 }, "measuregrps", tokens.access_token)
    const expected = [
      ...(fixture("measure-getmeas.200.json") as { body: { measuregrps: Array<WithingsDocument> } }).body.measuregrps,
      ...(fixture("measure-getmeas.measuregrps-bodyscan.json") as Array<WithingsDocument>),
      ...(fixture("measure-getmeas.measuregrps-segmental.json") as Array<WithingsDocument>)
    ]
    const byGroup = (groups: Array<WithingsDocument>) =>
      groups.map((g) => JSON.stringify(g)).sort()
    expect(byGroup(docs)).toEqual(byGroup(expected))

    const weight = docs.find((g) => g["grpid"] === 4815757309)
    const measure = (weight?.["measures"] as Array<{ value: number; unit: number; type: number }>)[0]
    expect(measure && measure.value * 10 ** measure.unit).toBeCloseTo(118.003, 6)

    const onlyWeights = await collectAll("/measure", { action: "getmeas", meastype: 1 }, "measuregrps", tokens.access_token)
    expect(onlyWeights.docs.length).toBeGreaterThan(0)
    for (const group of onlyWeights.docs) expect((group["measures"] as Array<{ type: number }>).every((m) => m.type === 1)).toBe(true)
  })

  it("pages with more/offset: getmeas leaves both out on its last page, v2 lists answer more=false", async () => {
    const tokens = withings.connect("11")
    withings.seed("11", ["measuregrps", "sleepSummaries"])
    withings.state.pageSize = 4
    const meas = await collectAll("/measure", { action: "getmeas", lastupdate: 0 }, "measuregrps", tokens.access_token)
    expect(meas.docs.length).toBe(38)
    expect(meas.bodies.length).toBe(10)
    expect(meas.bodies[0]).toMatchObject({ more: 1, offset: 4 })
    const last = meas.bodies.at(-1) ?? {}
    expect("more" in last || "offset" in last).toBe(false)

    withings.state.pageSize = 70
    const summaries = await collectAll("/v2/sleep", { action: "getsummary", startdateymd: "2021-01-01", enddateymd: "2022-12-31" }, "series", tokens.access_token)
    expect(summaries.docs.length).toBe(300)
    expect(new Set(summaries.docs.map((d) => d["id"])).size).toBe(300)
    expect(summaries.bodies.at(-1)).toMatchObject({ more: false })
    const april = await collectAll("/v2/sleep", { action: "getsummary", startdateymd: "2021-04-10", enddateymd: "2021-04-18" }, "series", tokens.access_token)
    expect(april.docs.map((d) => d["date"]).sort()).toEqual(
      ["2021-04-10", "2021-04-11", "2021-04-12", "2021-04-13", "2021-04-14", "2021-04-15", "2021-04-16", "2021-04-17", "2021-04-18"]
    )
  })

  it("answers lastupdate with only what changed since, and a revised group appears again", async () => {
    const tokens = withings.connect("12")
    withings.seed("12", ["measuregrps", "activities"])
    withings.state.pageSize = 100
    let now = 1_800_000_000
    withings.state.clock = () => now

    const all = await collectAll("/measure", { action: "getmeas", lastupdate: 0 }, "measuregrps", tokens.access_token)
    expect(all.docs.length).toBe(38)
    expect((await collectAll("/measure", { action: "getmeas", lastupdate: now }, "measuregrps", tokens.access_token)).docs).toEqual([])

    now += 60
    const original = all.docs.find((g) => g["grpid"] === 5149666502) ?? {}
    withings.revise("12", "measuregrps", { ...original, measures: [{ value: 95000, type: 1, unit: -3, algo: 0, fm: 3 }] })
    withings.add("12", "measuregrps", { grpid: 9_000_000_001, attrib: 0, date: now - 10, category: 1, measures: [{ value: 72, type: 11, unit: 0 }] })
    withings.revise("12", "activities", { date: "2023-10-21", hash_deviceid: null, modelid: 1055, steps: 5000 })

    const changed = await collectAll("/measure", { action: "getmeas", lastupdate: now }, "measuregrps", tokens.access_token)
    expect(changed.docs.map((g) => g["grpid"]).sort()).toEqual([5149666502, 9_000_000_001])
    expect(changed.docs.find((g) => g["grpid"] === 5149666502)).toMatchObject({ modified: now, measures: [{ value: 95000 }] })
    const activities = await collectAll("/v2/measure", { action: "getactivity", lastupdate: now }, "activities", tokens.access_token)
    expect(activities.docs).toEqual([{ date: "2023-10-21", hash_deviceid: null, modelid: 1055, steps: 5000, modified: now }])

    withings.state.lastupdate = "exclusive"
    expect((await collectAll("/measure", { action: "getmeas", lastupdate: now }, "measuregrps", tokens.access_token)).docs).toEqual([])

    expect(withings.remove("12", "measuregrps", "9000000001")).toBe(true)
    withings.state.lastupdate = "inclusive"
    const afterDelete = await collectAll("/measure", { action: "getmeas", lastupdate: now }, "measuregrps", tokens.access_token)
    expect(afterDelete.docs.map((g) => g["grpid"])).toEqual([5149666502])
  })

  it("seeds the examples moved by whole days when asked", async () => {
    const tokens = withings.connect("15")
    withings.seed("15", ["sleepSummaries", "sleepSeries", "measuregrps"], { shiftDays: 1000 })
    const shift = 1000 * 86_400
    withings.state.pageSize = 300
    const summaries = await collectAll("/v2/sleep", { action: "getsummary", startdateymd: "2024-01-13", enddateymd: "2024-01-13" }, "series", tokens.access_token)
    // 2021-04-18 + 1000 days
    expect(summaries.docs).toHaveLength(1)
    expect(summaries.docs[0]).toMatchObject({ id: 2081804182, startdate: 1618691453 + shift, enddate: 1618713173 + shift, modified: 1620237476 + shift })
    const sleep = await call("/v2/sleep", { action: "get", startdate: 1618691453 + shift, enddate: 1618691453 + shift + 600 }, tokens.access_token)
    expect((sleep.body["series"] as Array<WithingsDocument>)[0]).toMatchObject({ startdate: 1618691453 + shift, hr: { [String(1618691453 + shift)]: 70 } })
    const weight = await call("/measure", { action: "getmeas", meastype: 1, startdate: 1693651151 + shift, enddate: 1693651151 + shift }, tokens.access_token)
    expect((weight.body["measuregrps"] as Array<WithingsDocument>)[0]).toMatchObject({ grpid: 4815757309, measures: [{ value: 118003, unit: -3 }] })
  })

  it("answers an empty page when lastupdate comes with a date range", async () => {
    const tokens = withings.connect("13")
    withings.seed("13", ["sleepSummaries"])
    const both = await call("/v2/sleep", { action: "getsummary", lastupdate: 0, startdateymd: "2021-01-01", enddateymd: "2021-12-31" }, tokens.access_token)
    expect(both).toMatchObject({ status: 0, body: { series: [], more: false } })
    withings.state.lastupdateWithRange = "invalid"
    expect((await call("/v2/sleep", { action: "getsummary", lastupdate: 0, startdateymd: "2021-01-01", enddateymd: "2021-12-31" }, tokens.access_token)).status).toBe(503)
  })

  it("serves sleep get for at most 24 h, intraday keyed by epoch, devices and goals", async () => {
    const tokens = withings.connect("14")
    withings.seed("14")
    const start = 1618691453
    const sleep = await call("/v2/sleep", { action: "get", startdate: start, enddate: start + 5 * 86_400, data_fields: "hr" }, tokens.access_token)
    expect(sleep.status).toBe(0)
    expect(sleep.body["model"]).toBe(32)
    const series = sleep.body["series"] as Array<WithingsDocument>
    expect(series.length).toBeGreaterThan(0)
    expect(series.every((s) => (s["startdate"] as number) <= start + 86_400)).toBe(true)
    expect(series[0]).toHaveProperty("hr")
    expect(series[0]).not.toHaveProperty("rr")

    withings.add("14", "intraday", { timestamp: 1_700_000_000, deviceid: "d1", model: "ScanWatch", model_id: 93, steps: 12, heart_rate: 80 })
    withings.add("14", "intraday", { timestamp: 1_700_000_060, deviceid: "d1", model: "ScanWatch", model_id: 93, steps: 30, heart_rate: 82 })
    const intraday = await call("/v2/measure", { action: "getintradayactivity", data_fields: "steps" }, tokens.access_token)
    expect(intraday.body).toEqual({
      series: {
        "1700000000": { deviceid: "d1", model: "ScanWatch", model_id: 93, steps: 12 },
        "1700000060": { deviceid: "d1", model: "ScanWatch", model_id: 93, steps: 30 }
      }
    })

    const devices = await call("/v2/user", { action: "getdevice" }, tokens.access_token)
    expect(devices.body).toEqual((fixture("user-v2-getdevice.200.json") as { body: unknown }).body)
    const goals = await call("/v2/user", { action: "getgoals" }, tokens.access_token)
    expect(goals.body).toEqual((fixture("user-v2-getgoals.200.json") as { body: unknown }).body)
  })
})

describe("notifications", () => {
  it("checks the callback with HEAD when subscribing, stores the subscription, and refuses an appli the scopes do not allow", async () => {
    const receiver = await startReceiver()
    try {
      const tokens = withings.connect("20", ["user.metrics"])
      const answer = await call("/notify", { action: "subscribe", callbackurl: receiver.url, appli: 1, comment: "weight" }, tokens.access_token)
      expect(answer).toMatchObject({ httpStatus: 200, status: 0 })
      expect(receiver.received.map((r) => r.method)).toEqual(["HEAD"])
      expect(withings.state.checks).toEqual([{ callbackurl: receiver.url, status: 200, passed: true }])
      expect(withings.state.subscriptions).toEqual([{ userId: "20", appli: 1, callbackurl: receiver.url, comment: "weight", expires: 2_147_483_647 }])

      const list = await call("/notify", { action: "list" }, tokens.access_token)
      expect(list.body).toEqual({ profiles: [{ appli: 1, callbackurl: receiver.url, expires: 2_147_483_647, comment: "weight" }] })
      expect((await call("/notify", { action: "get", callbackurl: receiver.url }, tokens.access_token)).body).toMatchObject({ appli: 1 })

      expect((await call("/notify", { action: "subscribe", callbackurl: receiver.url, appli: 44 }, tokens.access_token)).status).toBe(214)

      receiver.headStatus = 404
      const refused = await call("/notify", { action: "subscribe", callbackurl: receiver.url, appli: 4 }, tokens.access_token)
      expect(refused).toMatchObject({ httpStatus: 200, status: 503 })
      expect(withings.state.subscriptions.map((s) => s.appli)).toEqual([1])

      expect((await call("/notify", { action: "revoke", callbackurl: receiver.url, appli: 1 }, tokens.access_token)).status).toBe(0)
      expect(withings.state.subscriptions).toEqual([])
      expect((await call("/notify", { action: "revoke", callbackurl: receiver.url, appli: 1 }, tokens.access_token)).status).toBe(503)
    } finally {
      await receiver.close()
    }
  })

  it("notify() POSTs the form-encoded notification to the user's callbacks for the appli and records each attempt", async () => {
    const receiver = await startReceiver()
    try {
      const tokens = withings.connect("21")
      expect((await call("/notify", { action: "subscribe", callbackurl: receiver.url, appli: 1 }, tokens.access_token)).status).toBe(0)
      expect((await call("/notify", { action: "subscribe", callbackurl: receiver.url, appli: 44 }, tokens.access_token)).status).toBe(0)

      let posts = 0
      receiver.postStatus = () => (++posts === 1 ? 500 : 204)
      const pending = withings.notify("21", 1, 1530576000, 1530698753)
      await eventually(async () => (withings.state.deliveries.length === 2 ? true : undefined))
      expect(await pending).toEqual([204])
      expect(withings.state.deliveries.map((d) => [d.attempt, d.status, d.appli])).toEqual([
        [1, 500, 1],
        [2, 204, 1]
      ])
      const post = receiver.received.filter((r) => r.method === "POST").at(-1)
      expect(post?.headers["content-type"]).toBe("application/x-www-form-urlencoded")
      expect(post?.body).toBe("userid=21&appli=1&startdate=1530576000&enddate=1530698753")

      expect(await withings.notify("99", 1, 1, 2)).toEqual([])
    } finally {
      await receiver.close()
    }
  })
})

describe("injection", () => {
  it("holds a request until released, then answers normally, counting a user's requests in flight", async () => {
    const tokens = withings.connect("30")
    let release = () => {}
    withings.inject({ path: "/v2/user", hold: new Promise<void>((resolve) => (release = resolve)) })
    const held = call("/v2/user", { action: "getdevice" }, tokens.access_token)
    await eventually(async () => (withings.state.inFlight.get("30") === 1 ? true : undefined))
    expect((await call("/measure", { action: "getmeas" }, tokens.access_token)).status).toBe(0)
    expect(withings.state.maxInFlight.get("30")).toBe(2)
    release()
    expect((await held).status).toBe(0)
    expect(withings.state.inFlight.get("30")).toBe(0)
  })

  it("answers an injected HTTP failure in place of the Withings answer", async () => {
    const tokens = withings.connect("31")
    withings.inject({ path: "/measure", httpStatus: 502, body: "Bad Gateway" })
    const response = await fetch(`${withings.url}/measure`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Bearer ${tokens.access_token}` },
      body: "action=getmeas"
    })
    expect(response.status).toBe(502)
    expect(await response.text()).toBe("Bad Gateway")
    expect((await call("/measure", { action: "getmeas" }, tokens.access_token)).status).toBe(0)
  })
})
