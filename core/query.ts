/**
 * Reads for the data API: summaries by calendar date or start time, timeseries samples by
 * time. Bounds are `YYYY-MM-DD` (whole local days, inclusive) or ISO 8601 date-times.
 */
import { SqlClient } from "@effect/sql"
import { Data, Effect, Either } from "effect"
import type { Schema } from "effect"
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

export class DataQuery extends Effect.Service<DataQuery>()("wearflow/DataQuery", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /** Summaries of one resource, oldest first, with created_at / updated_at. */
    const summaries = Effect.fn("DataQuery.summaries")(function* <R extends SummaryResource>(userId: string, resource: R, range: DateRange) {
      const lower = range.start._tag === "Day" ? sql`calendar_date >= ${range.start.day}::date` : sql`start_at >= ${range.start.at}`
      const upper = range.end === undefined
        ? sql`true`
        : range.end._tag === "Day" ? sql`calendar_date <= ${range.end.day}::date` : sql`start_at <= ${range.end.at}`
      const rows = yield* sql<{ data: Record<string, unknown>; created_at: Date; updated_at: Date }>`
        select data, created_at, updated_at from records
        where user_id = ${userId} and resource = ${resource} and ${lower} and ${upper}
        order by calendar_date, start_at, id`
      return rows.map((r) => ({ ...r.data, created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString() }) as unknown as SummaryOf<R>)
    })

    /**
     * Samples of one timeseries resource, oldest first, in Junction's sample shape. Every
     * provider record's samples are there: two records with a value at one instant (e.g. one
     * epoch per activity type per slice) are two entries, whose sum is the slice's total.
     */
    const samples = Effect.fn("DataQuery.samples")(function* <R extends TimeseriesResource>(userId: string, resource: R, range: DateRange) {
      const to = range.end === undefined ? sql`true` : sql`ts < ${endInstant(range.end)}`
      const rows = yield* sql<{ ts: Date; timezone_offset: number | null; source_type: SourceType; unit: string; value: number | null; fields: Record<string, unknown> | null }>`
        select ts, timezone_offset, source_type, unit, value, fields from samples
        where user_id = ${userId} and resource = ${resource} and ts >= ${startInstant(range.start)} and ${to}
        order by ts, record_id`
      return rows.map((r) => ({
        timestamp: r.ts.toISOString(),
        ...r.fields,
        timezone_offset: r.timezone_offset,
        type: r.source_type,
        unit: r.unit,
        ...(r.value === null ? {} : { value: r.value })
      }) as unknown as SampleOf<R>)
    })

    return { summaries, samples } as const
  })
}) {}
