/**
 * The Oura Provider on its own, against the fake Oura: which items a stored body holds, and
 * how fetching a notification's document answers every status Oura gives.
 */
import { FetchHttpClient } from "@effect/platform"
import * as Host from "@wearflow/core/host"
import type { Credentials, NotificationItem, Provider } from "@wearflow/core/provider"
import { ConfigProvider, Effect, Either, Layer, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { manifest } from "./mod.ts"
import { layerProvider, OuraProvider } from "./provider.ts"
import { type FakeOura, type OuraDocument, startFakeOura } from "./testing/fake-oura.ts"

const documents = (name: string): Array<OuraDocument> =>
  (JSON.parse(readFileSync(new URL(`./testing/fixtures/${name}.list.200.json`, import.meta.url), "utf8")) as { data: Array<OuraDocument> }).data

let oura: FakeOura
let provider: Provider
let credentials: Credentials
const USER = "provider-test-user"

beforeAll(async () => {
  oura = await startFakeOura()
  provider = await Effect.runPromise(
    Effect.provide(
      OuraProvider,
      Host.load({ manifest, layer: layerProvider }, ConfigProvider.fromMap(new Map([["OURA_API_URL", oura.url]]))).pipe(Layer.provide(FetchHttpClient.layer))
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

  it("has no lifecycle items, and no connect flow or backfill yet", () => {
    expect(provider.lifecycle(pointer())).toBeUndefined()
    expect(provider.auth).toBeUndefined()
    expect(provider.backfill).toBeUndefined()
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
        Host.load({ manifest, layer: layerProvider }, ConfigProvider.fromMap(new Map([["OURA_API_URL", "http://127.0.0.1:9"]]))).pipe(Layer.provide(FetchHttpClient.layer))
      )
    )
    const down = await Effect.runPromise(Effect.either(unreachable.fetch(pointer(), credentials)))
    expect(Either.isLeft(down) && down.left.retryable).toBe(true)
  })
})
