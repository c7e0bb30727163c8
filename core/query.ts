/**
 * Reads for the data API: summaries by calendar date or start time, timeseries samples by
 * time. Bounds are `YYYY-MM-DD` (whole local days, inclusive) or ISO 8601 date-times.
 */
import { SqlClient } from "@effect/sql"
import { Data, Effect, Either } from "effect"
import type { Schema } from "effect"
import { isInstantIdKey, isInstantText, isUuidText } from "./paging.ts"
import type { Resources, SampleOf, SourceType, SummaryResource, TimeseriesResource } from "./schema.ts"

/** The stored item of a summary resource, with its identity fields. */
export type SummaryOf<R extends SummaryResource> = Schema.Schema.Type<(typeof Resources)[R]["schema"]>

export type DateBound =
  | { readonly _tag: "Day"; readonly day: string }
  | { readonly _tag: "Instant"; readonly at: Date }

export class InvalidDateRange extends Data.TaggedError("InvalidDateRange")<{ readonly message: string }> {}

const DAY = /^\d{4}-\d{2}-\d{2}$/
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/

/** A real calendar day: 2016-02-30 would silently become March 1st. */
const isCalendarDay = (day: string) => {
  const date = new Date(`${day}T00:00:00Z`)
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === day
}

export const parseDateBound = (name: string, text: string): Either.Either<DateBound, InvalidDateRange> => {
  if (DAY.test(text) && isCalendarDay(text)) return Either.right({ _tag: "Day", day: text })
  if (DATE_TIME.test(text) && isCalendarDay(text.slice(0, 10))) {
    const at = new Date(text)
    if (!Number.isNaN(at.getTime())) return Either.right({ _tag: "Instant", at })
  }
  return Either.left(new InvalidDateRange({ message: `${name} must be YYYY-MM-DD or an ISO 8601 date-time` }))
}

export interface DateRange {
  readonly start: DateBound
  readonly end: DateBound | undefined
}

export const parseDateRange = (start: string, end: string | undefined): Either.Either<DateRange, InvalidDateRange> =>
  Either.gen(function* () {
    const range: DateRange = { start: yield* parseDateBound("start_date", start), end: end === undefined ? undefined : yield* parseDateBound("end_date", end) }
    const from = startInstant(range.start)
    const to = range.end && endInstant(range.end)
    if (to && to.getTime() < from.getTime()) return yield* Either.left(new InvalidDateRange({ message: "end_date is before start_date" }))
    return range
  })

const startInstant = (bound: DateBound) => (bound._tag === "Day" ? new Date(`${bound.day}T00:00:00Z`) : bound.at)
/** Exclusive upper instant: a day bound covers the whole day. */
const endInstant = (bound: DateBound) =>
  bound._tag === "Day" ? new Date(Date.parse(`${bound.day}T00:00:00Z`) + 86_400_000) : new Date(bound.at.getTime() + 1)

/** A page of a read: at most `limit` items after the sort key `after` (a decoded cursor). */
export interface PageRequest {
  readonly limit: number
  readonly after?: ReadonlyArray<string> | undefined
}

const DAY_KEY = /^(\d{4}-\d{2}-\d{2}|infinity)$/

/** Whether a decoded cursor is a sort key of summaries (day, start, id) or of samples (time, record). */
export const isSummaryKey = (key: ReadonlyArray<string>) =>
  key.length === 3 && DAY_KEY.test(key[0]!) && (key[0] === "infinity" || isCalendarDay(key[0]!)) &&
  (key[1] === "infinity" || isInstantText(key[1]!)) && isUuidText(key[2]!)
export const isSampleKey = isInstantIdKey

export class DataQuery extends Effect.Service<DataQuery>()("wearflow/DataQuery", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    // Summaries in (calendar day, start, id) order, a missing day or start last (as `nulls last` sorts them).
    const summaryOrder = sql`coalesce(calendar_date, 'infinity'::date), coalesce(start_at, 'infinity'::timestamptz), id`

    /**
     * Summaries of one resource, oldest first, with created_at / updated_at, and each one's sort
     * key. At most `page.limit` after `page.after`; without a page, all of them.
     */
    const summaryRows = <R extends SummaryResource>(userId: string, resource: R, range: DateRange, page?: PageRequest) =>
      Effect.gen(function* () {
        const lower = range.start._tag === "Day" ? sql`calendar_date >= ${range.start.day}::date` : sql`start_at >= ${range.start.at}`
        const upper = range.end === undefined
          ? sql`true`
          : range.end._tag === "Day" ? sql`calendar_date <= ${range.end.day}::date` : sql`start_at <= ${range.end.at}`
        const after = page?.after === undefined
          ? sql``
          : sql`and (${summaryOrder}) > (${page.after[0]}::date, ${page.after[1]}::timestamptz, ${page.after[2]}::uuid)`
        const rows = yield* sql<{ data: Record<string, unknown>; created_at: Date; updated_at: Date; k_day: string; k_start: string; k_id: string }>`
          select data, created_at, updated_at, coalesce(calendar_date, 'infinity'::date)::text as k_day,
                 coalesce(start_at, 'infinity'::timestamptz)::text as k_start, id::text as k_id
          from records
          where user_id = ${userId} and resource = ${resource} and ${lower} and ${upper} ${after}
          order by ${summaryOrder}
          ${page === undefined ? sql`` : sql`limit ${page.limit}`}`
        return rows.map((r) => ({
          item: { ...r.data, created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString() } as unknown as SummaryOf<R>,
          key: [r.k_day, r.k_start, r.k_id] as ReadonlyArray<string>
        }))
      })

    /** Summaries of one resource, oldest first, with created_at / updated_at. */
    const summaries = Effect.fn("DataQuery.summaries")(function* <R extends SummaryResource>(userId: string, resource: R, range: DateRange, page?: PageRequest) {
      return (yield* summaryRows(userId, resource, range, page)).map((r) => r.item)
    })

    /**
     * Samples of one timeseries resource, oldest first, in Junction's sample shape, with each
     * one's sort key (time, record). Every provider record's samples are there: two records
     * with a value at one instant (e.g. one epoch per activity type per slice) are two entries,
     * whose sum is the slice's total.
     */
    const sampleRows = <R extends TimeseriesResource>(userId: string, resource: R, range: DateRange, page?: PageRequest) =>
      Effect.gen(function* () {
        const to = range.end === undefined ? sql`true` : sql`ts < ${endInstant(range.end)}`
        const after = page?.after === undefined ? sql`` : sql`and (ts, record_id) > (${page.after[0]}::timestamptz, ${page.after[1]}::uuid)`
        const rows = yield* sql<{ ts: Date; timezone_offset: number | null; source_type: SourceType; unit: string; value: number | null; fields: Record<string, unknown> | null; k_ts: string; k_record: string }>`
          select ts, timezone_offset, source_type, unit, value, fields, ts::text as k_ts, record_id::text as k_record from samples
          where user_id = ${userId} and resource = ${resource} and ts >= ${startInstant(range.start)} and ${to} ${after}
          order by ts, record_id
          ${page === undefined ? sql`` : sql`limit ${page.limit}`}`
        return rows.map((r) => ({
          item: {
            timestamp: r.ts.toISOString(),
            ...r.fields,
            timezone_offset: r.timezone_offset,
            type: r.source_type,
            unit: r.unit,
            ...(r.value === null ? {} : { value: r.value })
          } as unknown as SampleOf<R>,
          key: [r.k_ts, r.k_record] as ReadonlyArray<string>
        }))
      })

    const samples = Effect.fn("DataQuery.samples")(function* <R extends TimeseriesResource>(userId: string, resource: R, range: DateRange, page?: PageRequest) {
      return (yield* sampleRows(userId, resource, range, page)).map((r) => r.item)
    })

    return { summaries, samples, summaryRows, sampleRows } as const
  })
}) {}
