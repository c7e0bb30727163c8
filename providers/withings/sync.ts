/**
 * Polling Withings for what changed since a connection's cursor. One round:
 *
 * 1. when the connection's notification subscriptions are due a check (never checked, or
 *    longer ago than WITHINGS_NOTIFY_CHECK_INTERVAL), they are made right and the user's
 *    devices are fetched (a `getdevice` page);
 * 2. each list family the user's scopes allow — measures (getmeas), activity days,
 *    workouts, sleep nights (getsummary) — is asked what was created or modified since its
 *    own `lastupdate`, page by page;
 * 3. the whole UTC days of intraday activity and sleep series that changed are fetched:
 *    the days the changed activity days and nights touch, and every day from the intraday
 *    walk's last day up to today (today is fetched each round while it grows).
 *
 * Every page is committed (0, 1, … in the order fetched) before the answer, and the cursor
 * the answer carries is where the next round starts; core stores it only once the pages are
 * committed, so a failed or killed round is fetched again from the same cursor. A round
 * stops after WITHINGS_SYNC_MAX_PAGES requests (or a bounded number of day windows) and
 * hands over with `more`: the cursor then says where each family stopped.
 *
 * A quiet round for a user with every scope makes 5 requests (the four lists and today's
 * intraday window); one more per other UTC day today's changed activity day touches (east of
 * UTC: yesterday), two sleep windows after a night, and once per check interval the device
 * list plus what the subscriptions' upkeep asks.
 */
import type { Credentials, PollAnswer, ProviderSync, SyncPages } from "@wearflow/core/provider"
import { Data, Duration, Effect, Option, Schema } from "effect"
import type { WithingsConfig } from "./config.ts"
import { DAY_S, FAMILIES, type ListKind, listPage, numbered, utcDayOf, WINDOW_SCOPE, type WindowKind, windowDaysOf, windowPage, type Who, devicePage } from "./paging.ts"
import type { Call, WithingsError } from "./rpc.ts"
import { allows, stateOf } from "./state.ts"

/** What the poll asks of the notification side: the connection's subscriptions made right. */
export interface SubscriptionUpkeep {
  readonly ensure: (credentials: Credentials, userid: string) => Effect.Effect<void, WithingsError>
}

/**
 * How far before a round's start the next round's `lastupdate` is taken. Withings stamps
 * `modified` with its own clock when it writes a document, and a write may become visible a
 * little after its stamp: a document modified just before or during the round (after its
 * family was asked) has a stamp at or after `start − OVERLAP` as long as clocks and write
 * latency stay within it, so the next round sees it. What the overlap fetches again is
 * stored content-identical and deduplicated downstream by its content hash.
 */
export const OVERLAP_S = 300

/** Day windows (intraday and sleep together) one round fetches at most; the rest waits in the cursor. */
export const MAX_DAY_WINDOWS = 14

const LIST_KINDS: ReadonlyArray<ListKind> = ["getmeas", "getactivity", "getworkouts", "getsummary"]
const Day = Schema.String.pipe(Schema.pattern(/^\d{4}-\d{2}-\d{2}$/))
const Seconds = Schema.Int.pipe(Schema.nonNegative())

/** One list family's place: its `lastupdate`, and while a paging was handed over, where it stopped. */
const FamilyCursor = Schema.Struct({
  since: Seconds,
  /** The offset the next round resumes paging at (with `since` unchanged). */
  offset: Schema.optional(Seconds),
  /** The `lastupdate` to take once that paging ends: from the round that began it. */
  next: Schema.optional(Seconds)
})
type FamilyCursor = typeof FamilyCursor.Type

const Cursor = Schema.Struct({
  v: Schema.Literal(1),
  families: Schema.Struct({ getmeas: FamilyCursor, getactivity: FamilyCursor, getworkouts: FamilyCursor, getsummary: FamilyCursor }),
  /** The last UTC day the intraday walk fetched (fetched again next round: it may have grown). */
  intraday: Day,
  /** Day windows due but not fetched yet (a round's bound). */
  pending: Schema.Struct({ intraday: Schema.Array(Day), sleep: Schema.Array(Day) }),
  /**
   * While a round handed over: what it had not finished (families, then the day windows).
   * The next round does only these, so a small page budget still gets through everything.
   */
  unfinished: Schema.optional(Schema.Array(Schema.Literal("getmeas", "getactivity", "getworkouts", "getsummary", "windows"))),
  /** When the subscriptions were last made right (unix seconds). */
  checked: Schema.optional(Seconds),
  /** The user's timezone, as Withings' answers last named it (day windows carry it). */
  timezone: Schema.optional(Schema.String)
})
type Cursor = typeof Cursor.Type

const CursorJson = Schema.parseJson(Cursor)
const decodeCursor = Schema.decodeUnknownOption(CursorJson)
const encodeCursor = Schema.encodeSync(CursorJson)

const initialCursor = (now: number, lookback: number): Cursor => {
  const from = Math.max(0, now - lookback)
  const family = { since: from }
  return {
    v: 1,
    families: { getmeas: family, getactivity: family, getworkouts: family, getsummary: family },
    // The day before the first: the walk starts at the lookback's first day.
    intraday: utcDayOf(Math.max(0, from - DAY_S)),
    pending: { intraday: [], sleep: [] }
  }
}

/** The UTC days after `from` up to `to` (both `YYYY-MM-DD`), `from` included when `inclusive`. */
const daysBetween = (from: string, to: string): Array<string> => {
  const days: Array<string> = []
  const end = Date.parse(`${to}T00:00:00Z`) / 1000
  for (let at = Date.parse(`${from}T00:00:00Z`) / 1000; at <= end && days.length < 400; at += DAY_S) days.push(utcDayOf(at))
  return days
}

/** The connection cannot be polled as it is (no user id or token): it must be connected again. */
class Refused extends Data.TaggedError("Refused")<{ readonly message: string }> {}

const answerOf = (error: WithingsError | Refused | { readonly _tag: "PageCommitError" }): PollAnswer => {
  if (error._tag === "Refused") return { _tag: "Forbidden", message: error.message }
  if (error._tag === "PageCommitError") return { _tag: "Unavailable", message: "a page of the poll could not be stored" }
  switch (error.outcome) {
    case "invalid_token":
      return { _tag: "Forbidden", message: `Withings refused the access token (status ${error.status ?? "unknown"}): the user must reconnect` }
    case "rate_limited":
      return { _tag: "RateLimited", retryAfter: error.retryAfter }
    default:
      // rpc.ts's messages name the action and the status only.
      return { _tag: "Unavailable", message: error.message }
  }
}

export const makeSync = (call: Call, config: WithingsConfig, subscriptions: SubscriptionUpkeep): ProviderSync => {
  const lookback = Math.floor(Duration.toSeconds(config.sync.lookback))
  const checkEvery = Math.floor(Duration.toSeconds(config.notify.checkInterval))

  const round = (credentials: Credentials, cursorText: string | undefined, pages: SyncPages) =>
    Effect.gen(function* () {
      // The user is the connection's provider user id; the state adds the scopes granted (all
      // are tried when it has none, e.g. tokens linked without them: Withings' answers decide).
      const userid = stateOf(credentials)?.userid ?? pages.providerUserId
      if (credentials.bearer === undefined) return yield* Effect.fail(new Refused({ message: "the connection holds no Withings access token: it must be connected again" }))
      // Bodies name the provider user core routes by.
      const who: Who = { bearer: credentials.bearer, userid: pages.providerUserId }
      const start = Math.floor(Date.now() / 1000)
      const today = utcDayOf(start)
      const decoded = cursorText === undefined ? Option.none() : decodeCursor(cursorText)
      if (cursorText !== undefined && Option.isNone(decoded)) {
        yield* Effect.logWarning("the Withings poll's cursor could not be read; the poll starts again from its lookback")
      }
      const cursor = Option.getOrElse(decoded, () => initialCursor(start, lookback))
      const { commit } = numbered(pages)
      let requestsLeft = config.sync.maxPages
      let more = false
      let timezone = cursor.timezone
      const due = { intraday: new Set(cursor.pending.intraday), sleep: new Set(cursor.pending.sleep) }
      /** A scope the user did not grant (Withings said so): that family is left alone this round. */
      const unauthorized = <A, R>(effect: Effect.Effect<A, WithingsError, R>) =>
        Effect.catchIf(effect, (e): e is WithingsError => e.outcome === "unauthorized", () => Effect.succeed("unauthorized" as const))

      // 1. Subscriptions and devices, on their own schedule.
      let checked = cursor.checked
      if (checked === undefined || start - checked >= checkEvery) {
        const ensured = yield* subscriptions.ensure(credentials, userid).pipe(
          Effect.as(true),
          Effect.catchAll((e) =>
            e.outcome === "invalid_token"
              ? Effect.fail(e)
              : Effect.logWarning("Withings notification subscriptions could not be made right; tried again next round").pipe(
                Effect.annotateLogs({ outcome: e.outcome, status: e.status ?? "none" }),
                Effect.as(false)
              ))
        )
        const devices = yield* unauthorized(devicePage(call, who))
        requestsLeft--
        if (devices !== undefined && devices !== "unauthorized") yield* commit(devices)
        if (ensured) checked = start
      }

      // 2. The list families, each from its own lastupdate.
      const families: Record<ListKind, FamilyCursor> = { ...cursor.families }
      const stages = cursor.unfinished ?? [...LIST_KINDS, "windows"]
      const unfinished: Array<ListKind | "windows"> = []
      for (const kind of LIST_KINDS) {
        if (!stages.includes(kind)) continue
        const family = FAMILIES[kind]
        const place = cursor.families[kind]
        if (!allows(credentials, family.scope)) continue
        const startedAt = place.offset ?? 0
        let offset = startedAt
        const next = place.next ?? Math.max(0, start - OVERLAP_S)
        for (;;) {
          if (requestsLeft <= 0) {
            more = true
            unfinished.push(kind)
            families[kind] = { since: place.since, offset, next }
            break
          }
          const page = yield* unauthorized(listPage(call, who, family, { _tag: "Since", lastupdate: place.since }, offset))
          requestsLeft--
          if (page === "unauthorized") break
          if (page.page !== undefined) yield* commit(page.page)
          // The account's timezone (getmeas names it) wins; documents' only fill in for want of it.
          timezone = page.userTimezone ?? timezone ?? page.timezone
          for (const document of page.documents) {
            // A day after today (a local day west of UTC ends tomorrow) is fetched by the walk once it is today.
            for (const day of windowDaysOf(kind, document)) if (day <= today) (kind === "getactivity" ? due.intraday : due.sleep).add(day)
          }
          if (page.next === undefined) {
            families[kind] = { since: next }
            break
          }
          // Handing over, the next round asks this page again: documents before it that change
          // meanwhile move to the end of Withings' changelog and shift the rest towards the start.
          offset = requestsLeft > 0 || page.next - page.documents.length <= startedAt ? page.next : page.next - page.documents.length
        }
      }

      // 3. Whole UTC days of intraday activity and sleep series.
      let walked = cursor.intraday
      const windows = allows(credentials, WINDOW_SCOPE) && stages.includes("windows")
      if (windows) {
        const floor = utcDayOf(Math.max(0, start - lookback))
        for (const day of daysBetween(walked < floor ? floor : walked, today)) due.intraday.add(day)
        walked = today
      }
      let windowsLeft = MAX_DAY_WINDOWS
      for (const kind of ["intraday", "sleep"] as ReadonlyArray<WindowKind>) {
        if (!windows) break
        for (const day of [...due[kind]].sort()) {
          if (windowsLeft <= 0 || requestsLeft <= 0) {
            more = true
            if (!unfinished.includes("windows")) unfinished.push("windows")
            break
          }
          const page = yield* unauthorized(windowPage(call, who, kind, day, timezone))
          windowsLeft--
          requestsLeft--
          if (page === "unauthorized") {
            // Not granted: nothing of this kind can be fetched, so nothing waits for it.
            due[kind].clear()
            break
          }
          if (page !== undefined) yield* commit(page)
          due[kind].delete(day)
        }
      }

      // Days the unfinished families bring wait for the windows after them.
      if (unfinished.length > 0 && !unfinished.includes("windows")) unfinished.push("windows")
      const nextCursor: Cursor = {
        v: 1,
        families,
        intraday: walked,
        pending: { intraday: [...due.intraday].sort(), sleep: [...due.sleep].sort() },
        ...(unfinished.length === 0 ? {} : { unfinished }),
        ...(checked === undefined ? {} : { checked }),
        ...(timezone === undefined ? {} : { timezone })
      }
      return { _tag: "Polled", cursor: encodeCursor(nextCursor), more } satisfies PollAnswer
    })

  return {
    interval: config.sync.interval,
    poll: (credentials, cursor, pages) =>
      round(credentials, cursor, pages).pipe(
        Effect.catchAll((error) => Effect.succeed(answerOf(error))),
        Effect.withSpan("Withings.poll")
      )
  }
}
