/**
 * Fetching Withings data as the pages the plugin stores, shared by the poll (sync.ts: what
 * changed since `lastupdate`) and history (backfill.ts: a date range). Two shapes:
 *
 * - lists (getmeas, getactivity, getworkouts, sleep getsummary): asked by `lastupdate` or by a
 *   range, paged by `offset` while `more` says so (getmeas answers `more: 1` and leaves both
 *   out on its last page, v2 lists answer a boolean); each non-empty answer is one page;
 * - day windows (getintradayactivity, sleep get): one whole UTC day each (00:00–24:00; the
 *   normalizers key their records by the window, and Withings answers 24 h at most), stored
 *   with the window asked for and the user's timezone.
 *
 * Every request goes through `call`; each asks for the `data_fields` the normalizers read.
 */
import type { HistoryPage, PageCommitError } from "@wearflow/core/provider"
import { Effect, type Redacted } from "effect"
import type { PageKind } from "./items.ts"
import { offsetAt } from "./normalize.ts"
import { type Call, WithingsError } from "./rpc.ts"

export const DAY_S = 86_400

type Json = Readonly<Record<string, unknown>>

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

/** Who a request is for: the token, and the Withings user id its pages name (and its budget is drawn for). */
export interface Who {
  readonly bearer: Redacted.Redacted<string> | undefined
  readonly userid: string
}

export type ListKind = "getmeas" | "getactivity" | "getworkouts" | "getsummary"

export interface ListFamily {
  readonly kind: ListKind
  readonly path: string
  readonly action: string
  /** The scope Withings checks for it. */
  readonly scope: string
  /** Where the answer holds its documents. */
  readonly list: string
  /** Fields asked for on every request. */
  readonly fields: Readonly<Record<string, string | number>>
}

/** What each normalizer reads (normalize/*.ts): without `data_fields` Withings sends a default set. */
const ACTIVITY_FIELDS = "steps,distance,elevation,soft,moderate,intense,calories,totalcalories,hr_average,hr_min,hr_max"
const WORKOUT_FIELDS = "calories,manual_calories,distance,manual_distance,hr_average,hr_max,pause_duration,algo_pause_duration"
const SUMMARY_FIELDS =
  "total_sleep_time,asleepduration,lightsleepduration,deepsleepduration,remsleepduration,wakeupduration,sleep_latency,durationtosleep,sleep_efficiency,sleep_score,hr_average,hr_min,rr_average"
const INTRADAY_FIELDS = "steps,calories,distance,duration,heart_rate,spo2_auto,rmssd,rr"
const SLEEP_SERIES_FIELDS = "hr,rr,rmssd"

export const FAMILIES: Readonly<Record<ListKind, ListFamily>> = {
  // Category 1: real measures (2 would be the user's goals).
  getmeas: { kind: "getmeas", path: "/measure", action: "getmeas", scope: "user.metrics", list: "measuregrps", fields: { category: 1 } },
  getactivity: { kind: "getactivity", path: "/v2/measure", action: "getactivity", scope: "user.activity", list: "activities", fields: { data_fields: ACTIVITY_FIELDS } },
  getworkouts: { kind: "getworkouts", path: "/v2/measure", action: "getworkouts", scope: "user.activity", list: "series", fields: { data_fields: WORKOUT_FIELDS } },
  getsummary: { kind: "getsummary", path: "/v2/sleep", action: "getsummary", scope: "user.activity", list: "series", fields: { data_fields: SUMMARY_FIELDS } }
}

/** The scope of the day windows (intraday activity and sleep series). */
export const WINDOW_SCOPE = "user.activity"

/**
 * Which documents a list request asks for: changed since `lastupdate`; taken on days
 * `first`..`last` (v2 lists, by their `date`); or taken between two instants (getmeas, both
 * ends inclusive). Withings takes `lastupdate` or a range, never both.
 */
export type Selection =
  | { readonly _tag: "Since"; readonly lastupdate: number }
  | { readonly _tag: "Days"; readonly first: string; readonly last: string }
  | { readonly _tag: "Between"; readonly startdate: number; readonly enddate: number }

const selectionFields = (selection: Selection): Record<string, string | number> => {
  switch (selection._tag) {
    case "Since":
      return { lastupdate: selection.lastupdate }
    case "Days":
      return { startdateymd: selection.first, enddateymd: selection.last }
    case "Between":
      return { startdate: selection.startdate, enddate: selection.enddate }
  }
}

/** One answer of a list, as the page to store and where the list goes on. */
export interface ListPage {
  readonly page: HistoryPage | undefined
  readonly documents: ReadonlyArray<Json>
  /** The offset of the next page; undefined on the last. */
  readonly next: number | undefined
  /** The account's timezone, when the answer names it (getmeas). */
  readonly userTimezone: string | undefined
  /** The first timezone the documents name (where the user was). */
  readonly timezone: string | undefined
}

const malformed = (what: string) => new WithingsError({ outcome: "unavailable", message: `Withings' answer to ${what} could not be read` })

/** A zone name as Withings sends it (`Europe/Paris`); anything else is not kept. */
export const zoneOf = (value: unknown): string | undefined =>
  typeof value === "string" && /^[A-Za-z0-9_+\-/]{1,64}$/.test(value) ? value : undefined

/** Fetches one page of a list. */
export const listPage = (call: Call, who: Who, family: ListFamily, selection: Selection, offset: number, extra: Readonly<Record<string, string | number>> = {}) =>
  Effect.gen(function* () {
    const fields = { ...family.fields, ...extra, ...selectionFields(selection), ...(offset > 0 ? { offset } : {}) }
    const body = yield* call({ path: family.path, action: family.action, fields, bearer: who.bearer, user: who.userid })
    const list = body[family.list] ?? []
    if (!Array.isArray(list)) return yield* malformed(family.action)
    const documents = list.filter(isObject)
    const more = body["more"] === true || body["more"] === 1
    const nextOffset = body["offset"]
    // A page that does not move the offset on would be asked for forever.
    if (more && !(typeof nextOffset === "number" && Number.isSafeInteger(nextOffset) && nextOffset > offset)) return yield* malformed(family.action)
    const userTimezone = zoneOf(body["timezone"])
    const timezone = documents.map((d) => zoneOf(d["timezone"])).find((z) => z !== undefined)
    const stored: Json = family.kind === "getmeas" ? { userid: who.userid, timezone: userTimezone ?? null, measuregrps: documents } : { userid: who.userid, [family.list]: documents }
    const page = documents.length === 0 ? undefined : { kind: family.kind, body: JSON.stringify(stored), itemCount: documents.length }
    return { page, documents, next: more ? (nextOffset as number) : undefined, userTimezone, timezone } satisfies ListPage
  })

export type WindowKind = Extract<PageKind, "intraday" | "sleep">

/** Epoch seconds of a UTC day's midnight. */
export const midnightOf = (day: string): number => Date.parse(`${day}T00:00:00Z`) / 1000

/** The UTC day of an epoch second. */
export const utcDayOf = (seconds: number): string => new Date(seconds * 1000).toISOString().slice(0, 10)

const isDay = (value: unknown): value is string =>
  typeof value === "string" && /^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(`${value}T00:00:00Z`))

/** The UTC days a span of epoch seconds `[start, end)` touches (a bounded number: a span is a night or a day). */
export const utcDaysTouched = (start: number, end: number): ReadonlyArray<string> => {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) return []
  const days: Array<string> = []
  for (let at = Math.floor(start / DAY_S) * DAY_S; at < Math.max(end, start + 1) && days.length < 3; at += DAY_S) days.push(utcDayOf(at))
  return days
}

/** The UTC days a user's local day `date` (in `timezone`; UTC without one) touches. */
export const utcDaysOfLocalDay = (date: unknown, timezone: unknown): ReadonlyArray<string> => {
  if (!isDay(date)) return []
  const midnight = midnightOf(date)
  const start = midnight - (offsetAt(zoneOf(timezone), midnight + DAY_S / 2) ?? 0)
  return utcDaysTouched(start, start + DAY_S)
}

/** The UTC days a document of a list touches, for its day windows: activity days and nights. */
export const windowDaysOf = (kind: ListKind, document: Json): ReadonlyArray<string> => {
  if (kind === "getactivity") return utcDaysOfLocalDay(document["date"], document["timezone"])
  if (kind === "getsummary") {
    const { enddate, startdate } = document
    return typeof startdate === "number" && typeof enddate === "number" ? utcDaysTouched(startdate, enddate) : []
  }
  return []
}

const hasEntries = (series: unknown): boolean => (Array.isArray(series) ? series.length > 0 : isObject(series) && Object.keys(series).length > 0)

/** One whole UTC day of intraday activity or sleep series, as Withings answers it; undefined when it has nothing for the day. */
export const windowSeries = (call: Call, who: Who, kind: WindowKind, day: string) =>
  Effect.gen(function* () {
    const startdate = midnightOf(day)
    const enddate = startdate + DAY_S
    const request = kind === "intraday"
      ? { path: "/v2/measure", action: "getintradayactivity", fields: { startdate, enddate, data_fields: INTRADAY_FIELDS } }
      : { path: "/v2/sleep", action: "get", fields: { startdate, enddate, data_fields: SLEEP_SERIES_FIELDS } }
    const body = yield* call({ ...request, bearer: who.bearer, user: who.userid })
    const series = body["series"] ?? []
    if (!Array.isArray(series) && !isObject(series)) return yield* malformed(request.action)
    return hasEntries(series) ? series : undefined
  })

/** A day window's page: the window asked for, the user's timezone and Withings' series. */
export const windowPageOf = (who: Who, kind: WindowKind, day: string, series: unknown, timezone: string | undefined): HistoryPage => {
  const startdate = midnightOf(day)
  const stored = { userid: who.userid, startdate, enddate: startdate + DAY_S, timezone: timezone ?? null, series }
  return { kind, body: JSON.stringify(stored), itemCount: 1 }
}

/**
 * Fetches one whole UTC day of intraday activity or sleep series; undefined when Withings
 * has nothing for it (an empty window would store nothing).
 */
export const windowPage = (call: Call, who: Who, kind: WindowKind, day: string, timezone: string | undefined) =>
  Effect.map(windowSeries(call, who, kind, day), (series) => (series === undefined ? undefined : windowPageOf(who, kind, day, series, timezone)))

/** The user's devices, as a `getdevice` page; undefined when there are none. */
export const devicePage = (call: Call, who: Who) =>
  Effect.gen(function* () {
    const body = yield* call({ path: "/v2/user", action: "getdevice", bearer: who.bearer, user: who.userid })
    const devices = body["devices"] ?? []
    if (!Array.isArray(devices)) return yield* malformed("getdevice")
    const kept = devices.filter(isObject)
    if (kept.length === 0) return undefined
    return { kind: "getdevice", body: JSON.stringify({ userid: who.userid, devices: kept }), itemCount: kept.length } satisfies HistoryPage
  })

/** Commits pages numbered 0, 1, … in the order given (the same order on a retry: the same numbers). */
export const numbered = (pages: { readonly commit: (page: number, content: HistoryPage) => Effect.Effect<boolean, PageCommitError> }) => {
  let next = 0
  const commit = (content: HistoryPage) => Effect.asVoid(pages.commit(next++, content))
  return { commit, count: () => next }
}
