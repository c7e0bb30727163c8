/**
 * The Oura Provider on its own, against the fake Oura: which items a stored body holds, and
 * how fetching a notification's document answers every status Oura gives.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Host from "@wearflow/core/host"
import type { BackfillAnswer, Credentials, HistoryPage, NotificationItem, Provider } from "@wearflow/core/provider"
import { ConfigProvider, Duration, Effect, Either, Layer, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { manifest } from "./mod.ts"
import { normalizers } from "./normalize.ts"
import * as Budget from "./budget.ts"
import { layerProviderOn, OuraProvider } from "./provider.ts"
import { type FakeOura, type OuraDocument, startFakeOura } from "./testing/fake-oura.ts"

const documents = (name: string): Array<OuraDocument> =>
  (JSON.parse(readFileSync(new URL(`./testing/fixtures/${name}.list.200.json`, import.meta.url), "utf8")) as { data: Array<OuraDocument> }).data

/** The Provider without a database: its request budget never waits. */
const unmetered = layerProviderOn.pipe(Layer.provide(Layer.succeed(Budget.OuraBudget, Budget.unlimited)))

let oura: FakeOura
let provider: Provider
let credentials: Credentials
const USER = "provider-test-user"

beforeAll(async () => {
  oura = await startFakeOura()
  provider = await Effect.runPromise(
    Effect.provide(
      OuraProvider,
      Host.load({ manifest, layer: unmetered }, ConfigProvider.fromMap(new Map([["OURA_API_URL", oura.url]]))).pipe(Layer.provide(FetchHttpClient.layer))
    )
  )
  credentials = { bearer: Redacted.make(oura.connect(USER).access_token), state: undefined }
})

afterAll(() => oura.close())

const notification = (fields: Partial<Record<string, unknown>> = {}) => ({
  event_type: "create",
  data_type: "daily_activity",
  object_id: "doc-1",
  event_time: "2024-11-11T08:00:00+00:00",
  user_id: USER,
  ...fields
})

const pointer = (fields: Partial<Record<string, unknown>> = {}): NotificationItem => {
  const [item] = provider.itemsOf("notification", notification(fields))
  if (item === undefined) throw new Error("no item")
  return item
}

const fetched = (item: NotificationItem, with_: Credentials | undefined = credentials) => Effect.runPromise(Effect.either(provider.fetch(item, with_)))

describe("Oura items", () => {
  it("a notification is one pointer item keyed by its data type and addressed by user_id", () => {
    expect(provider.itemsOf("notification", notification())).toEqual([
      { key: "daily_activity", index: 0, user: { _tag: "UserId", id: USER }, carries: "pointer", raw: notification() }
    ])
    expect(provider.itemsOf("notification", notification({ data_type: "vo2_max" }))[0]?.key).toBe("vo2_max")
    expect(provider.itemsOf("notification", notification({ data_type: "ring_configuration" }))[0]?.key).toBe("ring_configuration")
  })

  it("unknown data types, bad shapes and hostile ids give no items", () => {
    for (const body of [
      notification({ data_type: "meal" }),
      notification({ data_type: "heartrate" }),
      notification({ event_type: "upsert" }),
      notification({ user_id: "" }),
      notification({ object_id: 7 }),
      notification({ user_id: "a\u0000b" }),
      null,
      [],
      "text"
    ]) {
      expect(provider.itemsOf("notification", body)).toEqual([])
    }
  })

  it("a fetched page gives one item per document; a heartrate batch is one item", () => {
    const [a, b] = documents("workout")
    const page = { workout: [{ data_type: "workout", user_id: USER, data: [a, b] }] }
    expect(provider.itemsOf("page", page).map((item) => [item.key, item.index, item.user, (item.raw as OuraDocument).id])).toEqual([
      ["workout", 0, { _tag: "UserId", id: USER }, a!.id],
      ["workout", 1, { _tag: "UserId", id: USER }, b!.id]
    ])
    const rows = documents("heartrate")
    const batch = provider.itemsOf("page", { heartrate: [{ data_type: "heartrate", user_id: USER, data: rows }] })
    expect(batch).toEqual([{ key: "heartrate", index: 0, user: { _tag: "UserId", id: USER }, carries: "record", raw: { data: rows } }])
    // A bare page (the shape once core stores a fetched page as is).
    expect(provider.itemsOf("page", { data_type: "workout", user_id: USER, data: [a] })).toHaveLength(1)
    // A page under another key, or without its user, is not taken.
    expect(provider.itemsOf("page", { sleep: [{ data_type: "workout", user_id: USER, data: [a] }] })).toEqual([])
    expect(provider.itemsOf("page", { workout: [{ data_type: "workout", data: [a] }] })).toEqual([])
  })

  it("a delete notification is the deletion of its object id; a sleep period fetched as `deleted` is the deletion of its id", () => {
    const deletion = notification({ event_type: "delete", data_type: "sleep", object_id: "sleep-doc-1" })
    expect(provider.itemsOf("notification", deletion)).toEqual([
      { key: "sleep", index: 0, user: { _tag: "UserId", id: USER }, carries: "deletion", deleted: "sleep-doc-1", raw: deletion }
    ])
    // As for other events: none for data types not kept, nor for time series.
    expect(provider.itemsOf("notification", notification({ event_type: "delete", data_type: "meal" }))).toEqual([])
    expect(provider.itemsOf("notification", notification({ event_type: "delete", data_type: "heartrate" }))).toEqual([])

    const [kept, rest] = [documents("sleep")[0]!, documents("sleep").find((doc) => doc.type === "rest")!]
    const gone: OuraDocument = { ...documents("sleep")[1]!, type: "deleted" }
    const items = provider.itemsOf("page", { sleep: [{ data_type: "sleep", user_id: USER, data: [kept, gone, rest] }] })
    expect(items.map((item) => [item.carries, item.carries === "deletion" ? item.deleted : (item.raw as OuraDocument).id])).toEqual([
      ["record", kept.id],
      ["deletion", gone.id],
      // A rejected detection is no deletion: the normalizer gives it no records.
      ["record", rest.id]
    ])
    // Only sleep periods say `deleted`; another type's field of that name is its data.
    const session: OuraDocument = { ...documents("session")[0]!, type: "deleted" }
    expect(provider.itemsOf("page", { session: [{ data_type: "session", user_id: USER, data: [session] }] })[0]?.carries).toBe("record")
  })

  it("has no lifecycle items; connects with OAuth 2.0 and pulls its history", () => {
    expect(provider.lifecycle(pointer())).toBeUndefined()
    expect(provider.auth?.flows).toEqual(["oauth2"])
    expect(provider.backfill?.types.map((t) => t.type).sort()).toEqual(Object.keys(normalizers).sort())
    expect(provider.backfill?.types.find((t) => t.type === "heartrate")?.maxDays).toBe(30)
  })
})

describe("Oura fetch", () => {
  it("GETs the named document with the bearer token and returns it as a one-document page", async () => {
    const doc = documents("vo2_max")[0]!
    oura.addUser(USER).documents["vO2_max"] = [doc]
    const result = await fetched(pointer({ data_type: "vo2_max", object_id: doc.id }))
    expect(result).toEqual(Either.right({ _tag: "Records", kind: "page", key: "vo2_max", records: [{ data_type: "vo2_max", user_id: USER, data: [doc] }] }))
    const request = oura.requests.at(-1)!
    expect(request.path).toBe(`/v2/usercollection/vO2_max/${doc.id}`)
    expect(request.headers.authorization).toBe(`Bearer ${Redacted.value(credentials.bearer!)}`)
  })

  it("a document gone before it was fetched (404) stores nothing and is no error", async () => {
    expect(await fetched(pointer({ object_id: "never-there" }))).toEqual(Either.right({ _tag: "Records", kind: "page", key: "daily_activity", records: [] }))
  })

  it("a delete is no pointer: nothing is fetched for it", () => {
    expect(provider.itemsOf("notification", notification({ event_type: "delete" })).map((item) => item.carries)).toEqual(["deletion"])
  })

  it("maps Oura's refusals: 401, 403 and 426 are final, 429 and 5xx are retried; no message quotes Oura's body", async () => {
    const cases: Array<[number, boolean]> = [[401, false], [403, false], [426, false], [429, true], [500, true], [503, true], [400, false]]
    for (const [status, retryable] of cases) {
      oura.inject({ path: /^\/v2\/usercollection\//, status, body: JSON.stringify({ detail: "secret-detail-text" }), headers: { "retry-after": "1" } })
      const result = await fetched(pointer())
      expect(Either.isLeft(result), String(status)).toBe(true)
      const error = (result as Either.Left<{ retryable: boolean; status?: number; message: string }, unknown>).left
      expect([error.status, error.retryable], String(status)).toEqual([status, retryable])
      expect(error.message).not.toContain("secret-detail-text")
    }
  })

  it("without an access token, or with Oura unreachable, fails with the right retryability", async () => {
    const none = await fetched(pointer(), undefined)
    expect(Either.isLeft(none) && none.left.retryable).toBe(false)
    const unreachable = await Effect.runPromise(
      Effect.provide(
        OuraProvider,
        Host.load({ manifest, layer: unmetered }, ConfigProvider.fromMap(new Map([["OURA_API_URL", "http://127.0.0.1:9"]]))).pipe(Layer.provide(FetchHttpClient.layer))
      )
    )
    const down = await Effect.runPromise(Effect.either(unreachable.fetch(pointer(), credentials)))
    expect(Either.isLeft(down) && down.left.retryable).toBe(true)
  })
})

describe("Oura history (backfill.request)", () => {
  /** Runs a history request, collecting what it commits (as core's pages would store it). */
  const pull = async (type: string, start: string, end: string, with_: Credentials = credentials, on: Provider = provider) => {
    const committed: Array<{ page: number } & HistoryPage> = []
    const pages = {
      providerUserId: USER,
      commit: (page: number, content: HistoryPage) => Effect.sync(() => (committed.push({ page, ...content }), true))
    }
    const answer = await Effect.runPromise(on.backfill!.request(with_, type, { start: new Date(start), end: new Date(end) }, pages))
    const items = committed.flatMap((c) => on.itemsOf(c.kind, JSON.parse(c.body)))
    return { answer, committed, items }
  }
  const listed = (collection: string) => oura.requests.filter((r) => r.path === `/v2/usercollection/${collection}`)

  it("lists every page of a window one day wider, keeps the window's days, and commits each page as a page body", async () => {
    oura.seed(USER, ["workout", "sleep", "daily_activity", "heartrate"])
    const before = listed("workout").length
    const { answer, committed, items } = await pull("workout", "2024-10-10T00:00:00Z", "2024-10-20T00:00:00Z")
    const expected = documents("workout").filter((d) => (d.day as string) >= "2024-10-10" && (d.day as string) < "2024-10-20")
    expect(expected.length).toBeGreaterThan(oura.state.pageSize * 3)
    expect(answer).toEqual({ _tag: "Fetched", pages: committed.length })
    expect(committed.map((c) => c.page)).toEqual(committed.map((_, i) => i))
    expect(committed.every((c) => c.kind === "page")).toBe(true)
    expect(committed.reduce((n, c) => n + c.itemCount, 0)).toBe(expected.length)
    expect(items.map((item) => (item.raw as OuraDocument).id).sort()).toEqual(expected.map((d) => d.id).sort())
    expect(items.every((item) => item.user?._tag === "UserId" && item.user.id === USER && item.carries === "record")).toBe(true)
    const requests = listed("workout").slice(before)
    expect(requests[0]?.query).toMatchObject({ start_date: "2024-10-09", end_date: "2024-10-20" })
    expect(requests.length).toBeGreaterThan(1)
    expect(requests.slice(1).every((r) => typeof r.query.next_token === "string")).toBe(true)
    // Each item's time (its day's UTC midnight) places it inside the window asked for.
    for (const item of items) {
      const at = provider.backfill!.itemTime(item)!.getTime()
      expect(at >= Date.parse("2024-10-10T00:00:00Z") && at < Date.parse("2024-10-20T00:00:00Z")).toBe(true)
    }
  })

  it("keeps the days at both ends that Oura's per-collection bounds would drop (sleep exclusive at the start, daily_activity filtered on its 04:00 timestamp)", async () => {
    const sleep = await pull("sleep", "2024-10-10T00:00:00Z", "2024-10-12T00:00:00Z")
    const sleeps = documents("sleep").filter((d) => d.day === "2024-10-10" || d.day === "2024-10-11")
    expect(sleeps.some((d) => d.day === "2024-10-10")).toBe(true)
    expect(sleep.items.map((item) => (item.raw as OuraDocument).id).sort()).toEqual(sleeps.map((d) => d.id).sort())
    const activity = await pull("daily_activity", "2024-11-11T00:00:00Z", "2024-11-12T00:00:00Z")
    expect(activity.items.map((item) => (item.raw as OuraDocument).day)).toEqual(["2024-11-11"])
    // Adjacent windows share no day: the day whose midnight starts the next window is not this one's.
    const next = await pull("daily_activity", "2024-11-10T00:00:00Z", "2024-11-11T00:00:00Z")
    expect(next.items).toEqual([])
  })

  it("pulls heart rate by instant over whole UTC days and commits one batch per day", async () => {
    const rows = documents("heartrate")
    const before = listed("heartrate").length
    const { answer, committed, items } = await pull("heartrate", "2024-12-13T00:00:00Z", "2024-12-15T00:00:00Z")
    expect(answer).toEqual({ _tag: "Fetched", pages: 2 })
    expect(listed("heartrate").length - before).toBe(Math.ceil(rows.length / oura.state.timeSeriesPageSize))
    expect(listed("heartrate")[before]?.query).toMatchObject({ start_datetime: "2024-12-13T00:00:00.000Z", end_datetime: "2024-12-15T00:00:00.000Z" })
    expect(committed.map((c) => c.itemCount)).toEqual([1, 1])
    const days = items.map((item) => new Set((item.raw as { data: Array<{ timestamp: string }> }).data.map((row) => new Date(row.timestamp).toISOString().slice(0, 10))))
    expect(days.map((d) => [...d])).toEqual([["2024-12-13"], ["2024-12-14"]])
    expect(items.reduce((n, item) => n + (item.raw as { data: Array<unknown> }).data.length, 0)).toBe(rows.length)
    expect(items.every((item) => Either.isRight(normalizers.heartrate(item.raw)))).toBe(true)
  })

  it("answers Oura's refusals as the chain needs them: 401 stops, 403/426 reject the type, 429 waits Retry-After, 5xx retries", async () => {
    const cases: Array<[number, Partial<BackfillAnswer>]> = [
      [401, { _tag: "Forbidden", status: 401 }],
      [403, { _tag: "Rejected", status: 403 }],
      [426, { _tag: "Rejected", status: 426 }],
      [429, { _tag: "RateLimited", retryAfter: Duration.seconds(7) }],
      [503, { _tag: "Unavailable" }]
    ]
    for (const [status, expected] of cases) {
      oura.inject({ path: "/v2/usercollection/workout", status, body: JSON.stringify({ detail: "secret-detail-text" }), headers: { "retry-after": "7" } })
      const { answer, committed } = await pull("workout", "2024-10-10T00:00:00Z", "2024-10-12T00:00:00Z")
      expect(answer, String(status)).toMatchObject(expected)
      expect(JSON.stringify(answer)).not.toContain("secret-detail-text")
      expect(committed).toEqual([])
    }
    const unknown = await pull("workout", "2024-10-10T00:00:00Z", "2024-10-12T00:00:00Z", { bearer: Redacted.make("not-a-token"), state: undefined })
    expect(unknown.answer).toMatchObject({ _tag: "Forbidden", status: 401 })
  })

  it("waits for the shared request budget, or hands a long wait back to the chain", async () => {
    const budgeted = (waits: Array<Duration.Duration>) =>
      Effect.runPromise(
        Effect.provide(
          OuraProvider,
          Host.load(
            {
              manifest,
              layer: layerProviderOn.pipe(
                Layer.provide(Layer.succeed(Budget.OuraBudget, {
                  take: Effect.sync(() => {
                    const after = waits.shift()
                    return after === undefined ? { _tag: "Go" as const } : { _tag: "Wait" as const, after }
                  })
                }))
              )
            },
            ConfigProvider.fromMap(new Map([["OURA_API_URL", oura.url]]))
          ).pipe(Layer.provide(FetchHttpClient.layer))
        )
      )
    const short = await pull("workout", "2024-10-10T00:00:00Z", "2024-10-12T00:00:00Z", credentials, await budgeted([Duration.millis(5), Duration.millis(5)]))
    expect(short.answer._tag).toBe("Fetched")
    const long = await pull("workout", "2024-10-10T00:00:00Z", "2024-10-12T00:00:00Z", credentials, await budgeted([Duration.minutes(4)]))
    expect(long.answer).toEqual({ _tag: "RateLimited", retryAfter: Duration.minutes(4) })
    // A notification's fetch waits out a short wait, and over a long one is retried after it.
    const shortFetch = await Effect.runPromise(Effect.either((await budgeted([Duration.millis(5)])).fetch(pointer(), credentials)))
    expect(Either.isRight(shortFetch)).toBe(true)
    const overBudget = await budgeted([Duration.minutes(2)])
    const failed = await Effect.runPromise(Effect.either(overBudget.fetch(pointer(), credentials)))
    expect(Either.isLeft(failed) && failed.left.retryable && failed.left.retryAfter).toEqual(Duration.minutes(2))
  })
})
