/**
 * Oura history, pulled: Oura cannot resend history as notifications, so a window is listed
 * from `/v2/usercollection/<collection>` page by page (following `next_token`), and each page
 * is committed to the inbox as the same page body a fetched notification gives
 * (`{"<data_type>": [{data_type, user_id, data}]}`); the window is complete once core has
 * processed them all.
 *
 * A day belongs to the window that holds its UTC midnight, so adjacent windows share no day.
 * Oura's window bounds are not uniform per collection (some ends exclusive, daily_activity
 * filtered on its 04:00 timestamp), so documents are asked for one day wider on both sides,
 * then kept by their `day` and deduplicated by id. Heart rate (rows without ids) is asked for
 * by instant over whole UTC days and committed one UTC day per page: a heart-rate record
 * replaces a day's samples whole (normalize/heartrate.ts).
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { BackfillAnswer, BackfillType, Credentials, HistoryPages, NotificationItem, ProviderBackfill, TimeRange } from "@wearflow/core/provider"
import { Duration, Effect, Schema } from "effect"
import { type RequestBudget, turn } from "./budget.ts"
import { apiUrlOf, type OuraConfig } from "./config.ts"
import { collectionPath, dayOf, timeOf } from "./normalize.ts"
import { PAGE_KIND, pageOf } from "./notifications.ts"

const DAY_MS = 86_400_000
const TIMEOUT = Duration.seconds(60)
/** More pages than this for one window means Oura's `next_token` does not end. */
const MAX_PAGES = 10_000

const type = (name: string, resource: string, maxDays = 90): BackfillType => ({ type: name, resource, keys: [name], maxDays })

/**
 * One type per normalized data type, named and keyed by it, with the resource its records
 * mostly fill (the resource's `historical.data.*.created` waits for every type mapped to it).
 * Heart rate asks at most 30 days at once (Oura's guidance for the time series).
 */
export const backfillTypes: ReadonlyArray<BackfillType> = [
  type("daily_activity", "activity"),
  type("sleep", "sleep"),
  type("daily_sleep", "sleep"),
  type("workout", "workouts"),
  type("heartrate", "heartrate", 30),
  type("session", "heartrate"),
  type("daily_readiness", "body_temperature_delta"),
  type("daily_spo2", "blood_oxygen"),
  type("daily_stress", "stress_level"),
  type("vo2_max", "vo2_max")
]
const known: ReadonlySet<string> = new Set(backfillTypes.map((t) => t.type))

const ListPage = Schema.Struct({
  data: Schema.Array(Schema.Unknown),
  next_token: Schema.optional(Schema.NullOr(Schema.String))
})

const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/** A heart-rate batch's UTC day (of its earliest row): records are keyed by UTC day. */
const utcDayOf = (batch: unknown) => timeOf(batch)?.slice(0, 10)

/** The day an item's data is from: its document's `day`, or a heart-rate batch's UTC day. */
const itemDayOf = (item: NotificationItem) => (item.key === "heartrate" ? utcDayOf(item.raw) : dayOf(item.raw))

/** The UTC days whose midnight lies in the range (start inclusive, end exclusive), as epoch ms of their midnights. */
export const daysOf = (range: TimeRange): ReadonlyArray<number> => {
  const days: Array<number> = []
  for (let day = Math.ceil(range.start.getTime() / DAY_MS) * DAY_MS; day < range.end.getTime(); day += DAY_MS) days.push(day)
  return days
}

/** A request's failure, as the answer the chain acts on. */
type Failed = Extract<BackfillAnswer, { _tag: "Forbidden" | "Rejected" | "RateLimited" | "Unavailable" }>

const failedOn = (status: number, retryAfter: string | undefined): Failed => {
  if (status === 401) return { _tag: "Forbidden", status, message: "Oura refused the access token (401): the user must reconnect" }
  if (status === 403) return { _tag: "Rejected", status, message: "Oura refused (403): a scope is missing or the user's membership lapsed" }
  if (status === 426) return { _tag: "Rejected", status, message: "Oura refused (426): the user's Oura app is too old to share this data type" }
  if (status === 429) {
    const seconds = retryAfter === undefined ? Number.NaN : Number(retryAfter)
    return { _tag: "RateLimited", retryAfter: Number.isFinite(seconds) && seconds >= 0 ? Duration.seconds(Math.min(seconds, 3600)) : undefined }
  }
  if (status >= 500) return { _tag: "Unavailable", message: `Oura answered ${status}` }
  return { _tag: "Rejected", status, message: `Oura answered ${status} to the history request` }
}

export const makeBackfill = (client: HttpClient.HttpClient, config: OuraConfig, budget: RequestBudget): ProviderBackfill => {
  /** One list request, once the shared budget has room; its page, or why not. */
  const listPage = (credentials: Credentials, url: URL): Effect.Effect<typeof ListPage.Type, Failed> =>
    Effect.gen(function* () {
      const wait = yield* turn(budget)
      if (wait !== undefined) return yield* Effect.fail<Failed>({ _tag: "RateLimited", retryAfter: wait })
      const request = HttpClientRequest.get(url).pipe(HttpClientRequest.acceptJson, HttpClientRequest.bearerToken(credentials.bearer!))
      const response = yield* client.execute(request).pipe(
        Effect.timeoutFail({ duration: TIMEOUT, onTimeout: (): Failed => ({ _tag: "Unavailable", message: "Oura did not answer in time" }) }),
        Effect.catchTags({
          RequestError: (e) => Effect.fail<Failed>({ _tag: "Unavailable", message: `could not reach Oura (${e.reason})` }),
          ResponseError: (e) => Effect.fail<Failed>({ _tag: "Unavailable", message: `Oura's answer could not be read (${e.reason})` })
        })
      )
      if (response.status !== 200) return yield* Effect.fail(failedOn(response.status, response.headers["retry-after"]))
      return yield* response.json.pipe(
        Effect.flatMap(Schema.decodeUnknown(ListPage)),
        Effect.mapError((): Failed => ({ _tag: "Unavailable", message: "Oura's list answer could not be read" }))
      )
    }).pipe(Effect.scoped)

  /** Every page of a listing, in order, each handed to `onPage` as it comes. */
  const listAll = <E>(credentials: Credentials, url: URL, onPage: (data: ReadonlyArray<unknown>) => Effect.Effect<void, E>) =>
    Effect.gen(function* () {
      let next: URL | undefined = url
      for (let n = 0; next !== undefined; n++) {
        if (n >= MAX_PAGES) return yield* Effect.fail<Failed>({ _tag: "Unavailable", message: `Oura's listing did not end after ${MAX_PAGES} pages` })
        const page: typeof ListPage.Type = yield* listPage(credentials, next)
        yield* onPage(page.data)
        // The token is passed with the original parameters (Oura takes it either way).
        next = page.next_token ? new URL(url) : undefined
        next?.searchParams.set("next_token", page.next_token!)
      }
    })

  const commitFailed = { _tag: "Unavailable", message: "a page of the history could not be stored" } as const

  /** Documents of the window's days, page by page; the number of pages committed. */
  const documents = (credentials: Credentials, dataType: string, days: ReadonlyArray<number>, pages: HistoryPages) =>
    Effect.gen(function* () {
      const wanted = new Set(days.map(isoDate))
      const url = apiUrlOf(config.apiUrl, `/v2/usercollection/${collectionPath(dataType)}`)
      url.searchParams.set("start_date", isoDate(days[0]! - DAY_MS))
      url.searchParams.set("end_date", isoDate(days[days.length - 1]! + DAY_MS))
      const seen = new Set<string>()
      let committed = 0
      yield* listAll(credentials, url, (data) => {
        const kept = data.filter((document) => {
          const day = dayOf(document)
          if (day === undefined || !wanted.has(day)) return false
          const id = (document as { readonly id?: unknown }).id
          if (typeof id !== "string") return true
          if (seen.has(id)) return false
          seen.add(id)
          return true
        })
        if (kept.length === 0) return Effect.void
        const body = JSON.stringify({ [dataType]: [pageOf(dataType, pages.providerUserId, kept)] })
        return pages.commit(committed++, { kind: PAGE_KIND, body, itemCount: kept.length }).pipe(Effect.mapError((): Failed => commitFailed))
      })
      return committed
    })

  /** Heart-rate rows of the window's UTC days, one page per day with rows. */
  const heartRate = (credentials: Credentials, days: ReadonlyArray<number>, pages: HistoryPages) =>
    Effect.gen(function* () {
      const byDay = new Map<string, Array<unknown>>(days.map((day) => [isoDate(day), []]))
      const url = apiUrlOf(config.apiUrl, "/v2/usercollection/heartrate")
      url.searchParams.set("start_datetime", new Date(days[0]!).toISOString())
      url.searchParams.set("end_datetime", new Date(days[days.length - 1]! + DAY_MS).toISOString())
      yield* listAll(credentials, url, (data) => {
        for (const row of data) {
          const day = utcDayOf({ data: [row] })
          if (day !== undefined) byDay.get(day)?.push(row)
        }
        return Effect.void
      })
      let committed = 0
      for (const rows of byDay.values()) {
        if (rows.length === 0) continue
        const body = JSON.stringify({ heartrate: [pageOf("heartrate", pages.providerUserId, rows)] })
        yield* pages.commit(committed++, { kind: PAGE_KIND, body, itemCount: 1 }).pipe(Effect.mapError((): Failed => commitFailed))
      }
      return committed
    })

  const request: ProviderBackfill["request"] = (credentials, dataType, range, pages) =>
    Effect.gen(function* () {
      if (!known.has(dataType)) return { _tag: "Rejected", status: 0, message: "not an Oura history type" } satisfies BackfillAnswer
      if (credentials.bearer === undefined) return { _tag: "Forbidden", status: 401, message: "the Oura connection has no access token" } satisfies BackfillAnswer
      const days = daysOf(range)
      if (days.length === 0) return { _tag: "Fetched", pages: 0 } satisfies BackfillAnswer
      const committed = dataType === "heartrate" ? yield* heartRate(credentials, days, pages) : yield* documents(credentials, dataType, days, pages)
      return { _tag: "Fetched", pages: committed } satisfies BackfillAnswer
    }).pipe(
      Effect.catchAll((failed: Failed) => Effect.succeed<BackfillAnswer>(failed)),
      Effect.withSpan("Oura.backfill", { attributes: { type: dataType } })
    )

  return {
    types: backfillTypes,
    request,
    // The UTC midnight of the item's day: the instant that places a day in one window.
    itemTime: (item: NotificationItem) => {
      const day = item.carries === "record" ? itemDayOf(item) : undefined
      return day === undefined ? undefined : new Date(`${day}T00:00:00Z`)
    },
    forbiddenHint: "the user must reconnect Oura (the access token was refused)"
  }
}
