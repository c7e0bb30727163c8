/**
 * Withings history, pulled: the same fetching as the poll (paging.ts), over a date range
 * instead of `lastupdate`, each page committed to the inbox as the poll commits it. One type
 * per resource whose `historical.data.<resource>` it makes truthful:
 *
 * - measures by `meastypes` (body composition, blood pressure, SpO2, VO2 max, body
 *   temperature), by the
 *   instant each group was taken;
 * - activity days, workouts and nights by their day (`startdateymd`..`enddateymd`), the
 *   days whose UTC midnight lies in the range (adjacent windows share no day, as Oura's);
 * - sleep series for the whole UTC days the range's nights touch;
 * - intraday activity (steps) for the range's UTC day (the activity days around it name the
 *   user's timezone).
 */
import type { BackfillAnswer, BackfillType, Credentials, HistoryPages, NotificationItem, ProviderBackfill, TimeRange } from "@wearflow/core/provider"
import { Effect } from "effect"
import type { WithingsConfig } from "./config.ts"
import { dayOf, timeOf } from "./normalize.ts"
import { DAY_S, FAMILIES, type ListKind, listPage, midnightOf, numbered, type Selection, utcDayOf, WINDOW_SCOPE, type WindowKind, windowDaysOf, windowPage, windowPageOf, windowSeries, type Who } from "./paging.ts"
import type { Call, WithingsError } from "./rpc.ts"
import { allows, stateOf } from "./state.ts"

const DAY_MS = DAY_S * 1000
/** More pages than this for one window means Withings' `more` does not end. */
const MAX_PAGES = 10_000

/** What one history type fetches. */
type Plan =
  | { readonly _tag: "Measures"; readonly meastypes: ReadonlyArray<number> }
  | { readonly _tag: "List"; readonly kind: Exclude<ListKind, "getmeas">; readonly windows?: WindowKind }
  | { readonly _tag: "Intraday" }

interface HistoryType extends BackfillType {
  readonly plan: Plan
}

const measures = (resource: string, meastypes: ReadonlyArray<number>): HistoryType => ({
  type: resource,
  resource,
  keys: ["measuregrp"],
  // Withings documents no range limit for getmeas; pages bound each answer.
  maxDays: 90,
  plan: { _tag: "Measures", meastypes }
})

/**
 * The types, each for the resource its records fill. Temperatures (12, 71, 73) are not
 * asked for: no normalized resource holds them, so no history of them could be stored.
 */
const historyTypes: ReadonlyArray<HistoryType> = [
  // Weight, fat-free mass, fat ratio, fat mass, muscle, hydration, bone, visceral fat; height for the BMI.
  measures("body", [1, 4, 5, 6, 8, 76, 77, 88, 170]),
  measures("blood_pressure", [9, 10, 11]),
  measures("blood_oxygen", [54]),
  measures("vo2_max", [123]),
  measures("body_temperature", [12, 71]),
  { type: "activity", resource: "activity", keys: ["activity"], maxDays: 30, plan: { _tag: "List", kind: "getactivity" } },
  { type: "workouts", resource: "workouts", keys: ["workout"], maxDays: 30, plan: { _tag: "List", kind: "getworkouts" } },
  // A night's series are fetched per UTC day it touches: two requests a night, so fewer nights a window.
  { type: "sleep", resource: "sleep", keys: ["sleep_summary", "sleep_series"], maxDays: 14, plan: { _tag: "List", kind: "getsummary", windows: "sleep" } },
  // Withings answers 24 h of intraday activity at most.
  { type: "steps", resource: "steps", keys: ["intraday"], maxDays: 1, plan: { _tag: "Intraday" } }
]
const byName: ReadonlyMap<string, HistoryType> = new Map(historyTypes.map((t) => [t.type, t]))

/** The UTC days whose midnight lies in the range (start inclusive, end exclusive). */
export const daysOf = (range: TimeRange): ReadonlyArray<string> => {
  const days: Array<string> = []
  for (let day = Math.ceil(range.start.getTime() / DAY_MS) * DAY_MS; day < range.end.getTime(); day += DAY_MS) days.push(utcDayOf(day / 1000))
  return days
}

const shiftDay = (day: string, by: number) => utcDayOf(midnightOf(day) + by * DAY_S)

type Failed = Extract<BackfillAnswer, { _tag: "Forbidden" | "Rejected" | "RateLimited" | "Unavailable" }>

const failedOf = (error: WithingsError | { readonly _tag: "PageCommitError" }): Failed => {
  if (error._tag === "PageCommitError") return { _tag: "Unavailable", message: "a page of the history could not be stored" }
  const status = error.status ?? 0
  switch (error.outcome) {
    case "invalid_token":
      return { _tag: "Forbidden", status, message: `Withings refused the access token (status ${status}): the user must reconnect` }
    case "unauthorized":
      return { _tag: "Rejected", status, message: `Withings refused (status ${status}): the user did not grant the scope this history needs` }
    case "rate_limited":
      return { _tag: "RateLimited", retryAfter: error.retryAfter }
    case "invalid":
      return { _tag: "Rejected", status, message: error.message }
    case "unavailable":
      return { _tag: "Unavailable", message: error.message }
  }
}

export const makeBackfill = (call: Call, _config: WithingsConfig): ProviderBackfill => {
  /** Every page of a list over `selection`, committed; the documents seen, for the day windows they touch. */
  const wholeList = (who: Who, kind: ListKind, selection: Selection, commit: ReturnType<typeof numbered>["commit"], extra?: Readonly<Record<string, string | number>>) =>
    Effect.gen(function* () {
      const documents: Array<Readonly<Record<string, unknown>>> = []
      let timezone: string | undefined
      let offset = 0
      for (let n = 0; ; n++) {
        if (n >= MAX_PAGES) return yield* Effect.fail<Failed>({ _tag: "Unavailable", message: `Withings' ${kind} listing did not end after ${MAX_PAGES} pages` })
        const page = yield* listPage(call, who, FAMILIES[kind], selection, offset, extra)
        if (page.page !== undefined) yield* commit(page.page)
        documents.push(...page.documents)
        timezone = page.userTimezone ?? timezone ?? page.timezone
        if (page.next === undefined) return { documents, timezone }
        offset = page.next
      }
    })

  /** The whole UTC days of `kind` among `days`, each committed when it holds data. */
  const dayWindows = (who: Who, kind: WindowKind, days: Iterable<string>, timezone: string | undefined, commit: ReturnType<typeof numbered>["commit"]) =>
    Effect.forEach([...new Set(days)].sort(), (day) =>
      Effect.flatMap(windowPage(call, who, kind, day, timezone), (page) => (page === undefined ? Effect.void : commit(page))), { discard: true })

  const fetchRange = (who: Who, plan: Plan, days: ReadonlyArray<string>, range: TimeRange, pages: HistoryPages) =>
    Effect.gen(function* () {
      const { commit, count } = numbered(pages)
      const first = days[0]!
      const last = days[days.length - 1]!
      switch (plan._tag) {
        case "Measures": {
          // getmeas takes both ends inclusive, in whole seconds: [start, end) is start..end-1.
          const selection: Selection = { _tag: "Between", startdate: Math.ceil(range.start.getTime() / 1000), enddate: Math.ceil(range.end.getTime() / 1000) - 1 }
          yield* wholeList(who, "getmeas", selection, commit, { meastypes: plan.meastypes.join(",") })
          break
        }
        case "List": {
          const { documents, timezone } = yield* wholeList(who, plan.kind, { _tag: "Days", first, last }, commit)
          if (plan.windows !== undefined) yield* dayWindows(who, plan.windows, documents.flatMap((d) => windowDaysOf(plan.kind, d)), timezone, commit)
          break
        }
        case "Intraday": {
          // Each UTC day of the range; a day with data asks the activity days around it for the user's timezone (once).
          let timezone: string | undefined
          let asked = false
          for (const day of days) {
            const series = yield* windowSeries(call, who, "intraday", day)
            if (series === undefined) continue
            if (!asked) {
              asked = true
              timezone = (yield* wholeList(who, "getactivity", { _tag: "Days", first: shiftDay(first, -1), last: shiftDay(last, 1) }, () => Effect.void)).timezone
            }
            yield* commit(windowPageOf(who, "intraday", day, series, timezone))
          }
          break
        }
      }
      return count()
    })

  const request = (credentials: Credentials, type: string, range: TimeRange, pages: HistoryPages) =>
    Effect.gen(function* () {
      const history = byName.get(type)
      if (history === undefined) return { _tag: "Rejected", status: 0, message: "not a Withings history type" } satisfies BackfillAnswer
      const state = stateOf(credentials)
      if (state === undefined || credentials.bearer === undefined) {
        return { _tag: "Forbidden", status: 0, message: "the connection holds no Withings user id or token: it must be connected again" } satisfies BackfillAnswer
      }
      const scope = history.plan._tag === "Measures" ? FAMILIES.getmeas.scope : WINDOW_SCOPE
      if (!allows(credentials, scope)) return { _tag: "Rejected", status: 0, message: `the user did not grant ${scope}` } satisfies BackfillAnswer
      const days = daysOf(range)
      if (history.plan._tag !== "Measures" && days.length === 0) return { _tag: "Fetched", pages: 0 } satisfies BackfillAnswer
      // Bodies name the provider user core routes by (the same Withings user the state names).
      const who: Who = { bearer: credentials.bearer, userid: pages.providerUserId }
      const committed = yield* fetchRange(who, history.plan, days, range, pages)
      return { _tag: "Fetched", pages: committed } satisfies BackfillAnswer
    }).pipe(
      Effect.catchAll((error) => Effect.succeed<BackfillAnswer>("outcome" in error || error._tag === "PageCommitError" ? failedOf(error) : error)),
      Effect.withSpan("Withings.backfill", { attributes: { type } })
    )

  return {
    types: historyTypes.map(({ plan: _plan, ...type }) => type),
    request,
    itemTime: (item: NotificationItem) => {
      if (item.carries !== "record") return undefined
      // Measures and day windows by their instant (a window's is its UTC midnight); days, workouts and nights by the UTC midnight of their day.
      if (item.key === "measuregrp" || item.key === "intraday" || item.key === "sleep_series") {
        const time = timeOf(item.raw)
        return time === undefined ? undefined : new Date(time)
      }
      if (item.key === "activity" || item.key === "workout" || item.key === "sleep_summary") {
        const day = dayOf(item.raw)
        return day === undefined ? undefined : new Date(`${day}T00:00:00Z`)
      }
      return undefined
    },
    forbiddenHint: "the user must reconnect Withings (the access token was refused)"
  }
}
