/** The Withings poll against the fake Withings over loopback: what each round stores and where the next one starts. */
import type { Credentials, HistoryPage, PollAnswer } from "@wearflow/core/provider"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Host from "@wearflow/core/host"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import * as Budget from "./budget.ts"
import { manifest } from "./mod.ts"
import { layerProviderOn, WithingsProvider } from "./provider.ts"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type SubscriptionUpkeep, makeSync } from "./sync.ts"
import { utcDaysOfLocalDay } from "./paging.ts"
import { WithingsError } from "./rpc.ts"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"
import { DAY_S, callTo, connectionOf, documentsOf, recorder, recordsOf, seedIntraday, seedRecent } from "./testing/sync-harness.ts"

let fake: FakeWithings
beforeAll(async () => {
  fake = await startFakeWithings()
})
afterAll(() => fake.close())

let nextUser = 7_100_000
const newUser = () => String(nextUser++)

/** Subscriptions upkeep that records its calls and answers `result()`. */
const upkeep = (result: () => Effect.Effect<void, WithingsError> = () => Effect.void) => {
  const calls: Array<string> = []
  const ensure: SubscriptionUpkeep["ensure"] = (_credentials, userid) => Effect.suspend(() => {
    calls.push(userid)
    return result()
  })
  return { calls, ensure }
}

const syncOf = async (env: Record<string, string> = {}, subscriptions: SubscriptionUpkeep = upkeep()) => {
  const { call, config } = await callTo(fake, env)
  return makeSync(call, config, subscriptions)
}

const poll = async (sync: Awaited<ReturnType<typeof syncOf>>, credentials: Credentials, cursor: string | undefined, userId: string) => {
  const pages = recorder(userId)
  const answer = await Effect.runPromise(sync.poll(credentials, cursor, pages))
  return { answer, commits: pages.commits }
}

const cursorOf = (answer: PollAnswer): string | undefined => {
  if (answer._tag !== "Polled") throw new Error(`expected Polled, got ${answer._tag}`)
  return answer.cursor
}

/** Requests the fake saw for a user's token since `from`, as `action` names. */
const actionsSince = (from: number) => fake.requests.slice(from).map((r) => r.params["action"])

const ids = (docs: ReadonlyArray<Record<string, unknown>>, field: string) => [...new Set(docs.map((d) => String(d[field])))].sort()

describe("the Withings poll", () => {
  it("stores the seeded data on its first round, then nothing new from the cursor it answered", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    seedIntraday(fake, userId, [0, 1])
    const user = fake.state.users.get(userId)!
    const subscriptions = upkeep()
    const sync = await syncOf({}, subscriptions)
    const credentials = connectionOf(fake, userId)

    let cursor: string | undefined
    const first: Array<HistoryPage> = []
    for (let round = 0; ; round++) {
      expect(round).toBeLessThan(10)
      const { answer, commits } = await poll(sync, credentials, cursor, userId)
      first.push(...commits)
      expect(commits.map((c) => c.page)).toEqual(commits.map((_, i) => i))
      cursor = cursorOf(answer)
      if (answer._tag === "Polled" && !answer.more) break
    }
    expect(ids(documentsOf(first, "getmeas"), "grpid")).toEqual(ids(user.measuregrps, "grpid"))
    expect(ids(documentsOf(first, "getactivity"), "date")).toEqual(ids(user.activities, "date"))
    expect(ids(documentsOf(first, "getworkouts"), "id")).toEqual(ids(user.workouts, "id"))
    expect(ids(documentsOf(first, "getsummary"), "id")).toEqual(ids(user.sleepSummaries, "id"))
    expect(documentsOf(first, "getdevice")).toHaveLength(user.devices.length)
    expect(documentsOf(first, "sleep").length).toBeGreaterThan(0)
    expect(documentsOf(first, "intraday")).toHaveLength(2)
    const resources = new Set(recordsOf(first).map((r) => r.resource))
    for (const resource of ["body", "weight", "activity", "workouts", "sleep", "steps", "heartrate"]) expect(resources).toContain(resource)
    expect(subscriptions.calls).toEqual([userId])

    // The next round: only today's intraday window again (it may still grow), as it was.
    const { answer, commits } = await poll(sync, credentials, cursor, userId)
    expect(answer).toMatchObject({ _tag: "Polled", more: false })
    expect(commits.map((c) => c.kind)).toEqual(["intraday"])
    expect(first.map((c) => c.body)).toContain(commits[0]!.body)
    // Subscriptions and devices wait for their check interval (a day).
    expect(subscriptions.calls).toEqual([userId])
  })

  it("walks every page of a family (pages of 3) and stores a revision at the next round", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const user = fake.state.users.get(userId)!
    expect(user.measuregrps.length).toBeGreaterThan(9)
    const sync = await syncOf({ WITHINGS_SYNC_MAX_PAGES: "1000" })
    const credentials = connectionOf(fake, userId, ["user.metrics"])
    const from = fake.requests.length
    const { answer, commits } = await poll(sync, credentials, undefined, userId)
    expect(answer).toMatchObject({ _tag: "Polled", more: false })
    const measures = commits.filter((c) => c.kind === "getmeas")
    expect(measures.length).toBe(Math.ceil(user.measuregrps.length / 3))
    expect(measures.map((c) => c.itemCount).reduce((a, b) => a + b)).toBe(user.measuregrps.length)
    // getmeas answers `more: 1, offset` until its last page, which leaves both out.
    const offsets = fake.requests.slice(from).filter((r) => r.params["action"] === "getmeas").map((r) => Number(r.params["offset"] ?? 0))
    expect(offsets).toEqual(measures.map((_, i) => i * 3))

    // Withings' last page may also say `more: 0, offset: 0`.
    fake.state.getmeasLastPage = "zero"
    try {
      const zero = await poll(sync, credentials, undefined, userId)
      expect(zero.answer).toMatchObject({ _tag: "Polled", more: false })
      expect(zero.commits).toEqual(commits)
    } finally {
      fake.state.getmeasLastPage = "absent"
    }

    const group = user.measuregrps[4]!
    const measures0 = group["measures"] as Array<Record<string, unknown>>
    fake.revise(userId, "measuregrps", { ...group, measures: measures0.map((m) => ({ ...m, value: Number(m["value"]) + 1 })) })
    const next = await poll(sync, credentials, cursorOf(answer), userId)
    const revised = documentsOf(next.commits, "getmeas")
    expect(revised.map((g) => g["grpid"])).toEqual([group["grpid"]])
    expect((revised[0]!["measures"] as Array<Record<string, unknown>>)[0]!["value"]).toBe(Number(measures0[0]!["value"]) + 1)
    expect(recordsOf(next.commits).length).toBeGreaterThan(0)
  })

  it("hands over after WITHINGS_SYNC_MAX_PAGES requests and its continuation skips no page", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const user = fake.state.users.get(userId)!
    const sync = await syncOf({ WITHINGS_SYNC_MAX_PAGES: "2" })
    const credentials = connectionOf(fake, userId, ["user.metrics", "user.activity"])
    const all: Array<HistoryPage> = []
    let cursor: string | undefined
    const answers: Array<PollAnswer> = []
    for (let round = 0; ; round++) {
      expect(round).toBeLessThan(200)
      const before = fake.requests.length
      const { answer, commits } = await poll(sync, credentials, cursor, userId)
      expect(fake.requests.length - before).toBeLessThanOrEqual(2)
      answers.push(answer)
      all.push(...commits)
      cursor = cursorOf(answer)
      if (answer._tag === "Polled" && !answer.more) break
    }
    expect(answers[0]).toMatchObject({ _tag: "Polled", more: true })
    expect([...new Set(documentsOf(all, "getmeas").map((g) => String(g["grpid"])))].sort()).toEqual(ids(user.measuregrps, "grpid"))
    expect([...new Set(documentsOf(all, "getworkouts").map((g) => String(g["id"])))].sort()).toEqual(ids(user.workouts, "id"))
    expect([...new Set(documentsOf(all, "getsummary").map((g) => String(g["id"])))].sort()).toEqual(ids(user.sleepSummaries, "id"))
    expect(documentsOf(all, "sleep").length).toBeGreaterThan(0)
  })

  it("a continuation loses nothing when documents already fetched change between rounds (they move to the end of the changelog)", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const user = fake.state.users.get(userId)!
    const sync = await syncOf({ WITHINGS_SYNC_MAX_PAGES: "2" })
    const credentials = connectionOf(fake, userId, ["user.metrics"])
    const seen = new Set<string>()
    const keep = (commits: ReadonlyArray<HistoryPage>) => documentsOf(commits, "getmeas").forEach((g) => seen.add(String(g["grpid"])))
    // Round 1: devices and the first page; round 2: two more pages (offsets 3 and 6), handing over.
    const first = await poll(sync, credentials, undefined, userId)
    const second = await poll(sync, credentials, cursorOf(first.answer), userId)
    keep(first.commits)
    keep(second.commits)
    expect(second.answer).toMatchObject({ _tag: "Polled", more: true })
    // Two groups of the first page change: every group after them moves two places towards the start.
    for (const group of user.measuregrps.slice(0, 2)) fake.revise(userId, "measuregrps", { ...group, comment: "edited" })
    let cursor = cursorOf(second.answer)
    for (let round = 0; ; round++) {
      expect(round).toBeLessThan(50)
      const { answer, commits } = await poll(sync, credentials, cursor, userId)
      keep(commits)
      cursor = cursorOf(answer)
      if (answer._tag === "Polled" && !answer.more) break
    }
    expect([...seen].sort()).toEqual(ids(user.measuregrps, "grpid"))
  })

  it("makes 5 requests in a quiet steady-state round, and one per further UTC day today's activity day touches", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const sync = await syncOf()
    const credentials = connectionOf(fake, userId)
    let cursor: string | undefined
    for (let round = 0; ; round++) {
      expect(round).toBeLessThan(10)
      const { answer } = await poll(sync, credentials, cursor, userId)
      cursor = cursorOf(answer)
      if (answer._tag === "Polled" && !answer.more) break
    }
    const quiet = fake.requests.length
    cursor = cursorOf((await poll(sync, credentials, cursor, userId)).answer)
    // getmeas, getactivity, getworkouts, getsummary, and today's intraday window.
    expect(actionsSince(quiet).sort()).toEqual(["getactivity", "getintradayactivity", "getmeas", "getsummary", "getworkouts"])

    // The user moves: today's activity row (their local day, in Amsterdam) changes.
    const zone = "Europe/Amsterdam"
    const localToday = new Date().toLocaleDateString("en-CA", { timeZone: zone })
    fake.add(userId, "activities", { date: localToday, timezone: zone, hash_deviceid: "d1", deviceid: "d1", brand: 1, is_tracker: true, modelid: 93, steps: 1200 })
    const today = new Date().toISOString().slice(0, 10)
    const touched = new Set([...utcDaysOfLocalDay(localToday, zone)].filter((day) => day <= today).concat(today))
    const moving = fake.requests.length
    await poll(sync, credentials, cursor, userId)
    expect(actionsSince(moving).length).toBe(4 + touched.size)
  })

  it("a round run again from the same cursor (a crash before core stored the next) commits the same pages under the same numbers", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    seedIntraday(fake, userId, [0])
    const sync = await syncOf({ WITHINGS_SYNC_MAX_PAGES: "5" })
    const credentials = connectionOf(fake, userId)
    const first = await poll(sync, credentials, undefined, userId)
    const cursor = cursorOf(first.answer)
    const once = await poll(sync, credentials, cursor, userId)
    const again = await poll(sync, credentials, cursor, userId)
    expect(once.commits.length).toBeGreaterThan(0)
    expect(again.commits).toEqual(once.commits)
    expect(again.answer).toEqual(once.answer)
    // A commit that fails answers Unavailable: core tries the round again from the same cursor.
    const failing = recorder(userId, 1)
    expect(await Effect.runPromise(sync.poll(credentials, cursor, failing))).toEqual({ _tag: "Unavailable", message: "a page of the poll could not be stored" })
  })

  it("asks nothing of the families the granted scopes leave out, and skips a family Withings refuses", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const sync = await syncOf()
    const from = fake.requests.length
    const metricsOnly = connectionOf(fake, userId, ["user.metrics"])
    const { answer, commits } = await poll(sync, metricsOnly, undefined, userId)
    expect(answer).toMatchObject({ _tag: "Polled", more: false })
    expect(new Set(actionsSince(from))).toEqual(new Set(["getmeas", "getdevice"]))
    expect(new Set(commits.map((c) => c.kind))).toEqual(new Set(["getmeas", "getdevice"]))

    // Scopes unknown to the state, only user.metrics granted: Withings refuses activity (214), the rest goes on.
    const unknown = connectionOf(fake, userId, undefined, ["user.metrics"])
    const refused = await poll(sync, unknown, undefined, userId)
    expect(refused.answer).toMatchObject({ _tag: "Polled", more: false })
    expect(new Set(refused.commits.map((c) => c.kind))).toEqual(new Set(["getmeas", "getdevice"]))
    const cursor = JSON.parse(cursorOf(refused.answer)!) as { families: Record<string, { since: number }>; pending: Record<string, Array<string>> }
    // The refused families keep their place: nothing of theirs was fetched.
    expect(cursor.families["getactivity"]!.since).toBeLessThan(cursor.families["getmeas"]!.since)
    expect(cursor.pending).toEqual({ intraday: [], sleep: [] })
  })

  it("fetches intraday activity and sleep series in whole UTC days, today's again each round", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    seedIntraday(fake, userId, [0, 2])
    const sync = await syncOf({ WITHINGS_SYNC_MAX_PAGES: "1000" })
    const credentials = connectionOf(fake, userId)
    const from = fake.requests.length
    let cursor: string | undefined
    for (let round = 0; ; round++) {
      expect(round).toBeLessThan(10)
      const { answer } = await poll(sync, credentials, cursor, userId)
      cursor = cursorOf(answer)
      if (answer._tag === "Polled" && !answer.more) break
    }
    const windows = fake.requests.slice(from).filter((r) => r.params["action"] === "getintradayactivity" || r.params["action"] === "get")
    expect(windows.filter((r) => r.params["action"] === "get").length).toBeGreaterThan(0)
    for (const request of windows) {
      const start = Number(request.params["startdate"])
      expect(start % DAY_S).toBe(0)
      expect(Number(request.params["enddate"]) - start).toBe(DAY_S)
    }
    // The lookback (7 days) up to today, each day once.
    const intradayDays = windows.filter((r) => r.params["action"] === "getintradayactivity").map((r) => Number(r.params["startdate"]))
    expect(new Set(intradayDays).size).toBe(intradayDays.length)
    const today = Math.floor(Date.now() / 1000 / DAY_S) * DAY_S
    expect(Math.max(...intradayDays)).toBe(today)
    expect(Math.min(...intradayDays)).toBe(today - 7 * DAY_S)
    const next = fake.requests.length
    await poll(sync, credentials, cursor, userId)
    const again = fake.requests.slice(next).filter((r) => r.params["action"] === "getintradayactivity").map((r) => Number(r.params["startdate"]))
    expect(again).toEqual([today])
  })

  it("loses nothing modified in the second a round started when lastupdate is exclusive", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const frozen = Math.floor(Date.now() / 1000)
    fake.state.lastupdate = "exclusive"
    fake.state.clock = () => frozen
    try {
      const sync = await syncOf({ WITHINGS_SYNC_MAX_PAGES: "1000" })
      const credentials = connectionOf(fake, userId, ["user.metrics", "user.activity"])
      const first = await poll(sync, credentials, undefined, userId)
      const workout = fake.state.users.get(userId)!.workouts[0]!
      fake.revise(userId, "workouts", { ...workout, category: 2 })
      const next = await poll(sync, credentials, cursorOf(first.answer), userId)
      expect(documentsOf(next.commits, "getworkouts").map((w) => [w["id"], w["category"]])).toEqual([[workout["id"], 2]])
    } finally {
      fake.state.lastupdate = "inclusive"
      fake.state.clock = () => Math.floor(Date.now() / 1000)
    }
  })

  it("answers RateLimited, Forbidden and Unavailable as Withings' statuses say", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const sync = await syncOf()
    const credentials = connectionOf(fake, userId)

    // Over Withings' app-wide limit (601): wait at least the minute Withings asks for.
    fake.state.rateLimit.perWindow = 2
    try {
      const limited = await poll(sync, credentials, undefined, userId)
      expect(limited.answer._tag === "RateLimited" && limited.answer.retryAfter && Duration.toMillis(limited.answer.retryAfter)).toBe(60_000)
      expect(fake.state.counters.rateLimited).toBeGreaterThan(0)
    } finally {
      fake.state.rateLimit.perWindow = undefined
    }

    fake.inject({ path: "/v2/measure", action: "getworkouts", withingsStatus: 522, error: "Timeout for 12.5 kg" })
    const timeout = await poll(sync, credentials, undefined, userId)
    expect(timeout.answer).toEqual({ _tag: "Unavailable", message: "Withings answered status 522 to getworkouts" })
    fake.inject({ path: "/measure", httpStatus: 502, body: "bad gateway" })
    expect((await poll(sync, credentials, undefined, userId)).answer).toEqual({ _tag: "Unavailable", message: "Withings answered HTTP 502 to getmeas" })
    // A page that says there is more but does not move the offset on would be asked for forever.
    fake.inject({ path: "/measure", httpStatus: 200, body: JSON.stringify({ status: 0, body: { measuregrps: [], more: 1, offset: 0 } }) })
    expect((await poll(sync, credentials, undefined, userId)).answer).toEqual({ _tag: "Unavailable", message: "Withings' answer to getmeas could not be read" })
    fake.inject({ path: "/v2/measure", action: "getactivity", httpStatus: 200, body: JSON.stringify({ status: 0, body: { activities: "Europe/Paris 12.5 kg" } }) })
    expect((await poll(sync, credentials, undefined, userId)).answer).toEqual({ _tag: "Unavailable", message: "Withings' answer to getactivity could not be read" })
    fake.inject({ path: "/v2/sleep", action: "getsummary", withingsStatus: 503 })
    expect((await poll(sync, credentials, undefined, userId)).answer._tag).toBe("Unavailable")

    // Subscriptions failing (other than a dead token) never fail the round; they are tried again next round.
    const flaky = upkeep(() => Effect.fail(new WithingsError({ outcome: "unavailable", message: "down" })))
    const withFlaky = await syncOf({}, flaky)
    const polled = await poll(withFlaky, credentials, undefined, userId)
    expect(polled.answer._tag).toBe("Polled")
    await poll(withFlaky, credentials, cursorOf(polled.answer), userId)
    expect(flaky.calls).toEqual([userId, userId])
    const dead = upkeep(() => Effect.fail(new WithingsError({ outcome: "invalid_token", status: 401, message: "x" })))
    expect((await poll(await syncOf({}, dead), credentials, undefined, userId)).answer._tag).toBe("Forbidden")

    for (const grant of fake.state.grants.values()) if (grant.userId === userId) grant.revoked = true
    const revoked = await poll(sync, credentials, undefined, userId)
    expect(revoked.answer).toEqual({ _tag: "Forbidden", message: "Withings refused the access token (status 401): the user must reconnect" })
    expect(revoked.commits).toEqual([])
    expect((await poll(sync, { bearer: undefined, state: credentials.state }, undefined, userId)).answer._tag).toBe("Forbidden")
  })

  it("polls a connection linked without state (no scopes known) as its provider user id, asking every family", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const sync = await syncOf()
    const { bearer } = connectionOf(fake, userId)
    const polled = await poll(sync, { bearer, state: undefined }, undefined, userId)
    expect(polled.answer._tag).toBe("Polled")
    expect([...new Set(polled.commits.map((c) => c.kind))]).toEqual(expect.arrayContaining(["getdevice", "getmeas", "getactivity", "getworkouts", "getsummary"]))
  })

  it("polls through the Provider the plugin builds in its sandbox, whose itemsOf reads what the poll stored", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const provider = await Effect.runPromise(
      Effect.provide(
        WithingsProvider,
        Host.load({ manifest, layer: layerProviderOn.pipe(Layer.provide(Layer.succeed(Budget.WithingsBudget, Budget.unlimited))) }, ConfigProvider.fromMap(new Map([["WITHINGS_API_URL", fake.url]])))
          .pipe(Layer.provide(FetchHttpClient.layer))
      )
    )
    const pages = recorder(userId)
    const answer = await Effect.runPromise(provider.sync!.poll(connectionOf(fake, userId), undefined, pages))
    expect(answer._tag).toBe("Polled")
    const items = pages.commits.flatMap((c) => provider.itemsOf(c.kind, JSON.parse(c.body)))
    expect(new Set(items.map((i) => i.key))).toEqual(new Set(["device", "measuregrp", "activity", "workout", "sleep_summary", "sleep_series"]))
    expect(items.every((i) => i.user?._tag === "UserId" && i.user.id === userId)).toBe(true)
    expect(provider.sync!.interval).toEqual(Duration.hours(1))
  })
})
