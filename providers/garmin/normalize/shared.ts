/**
 * Building blocks shared by the Garmin normalizers: raw field schemas that keep every
 * later conversion total (no `RangeError` from `Date`), and small numeric helpers.
 */
import { Schema } from "effect"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { CalendarDate, type Source } from "@wearflow/core/schema"
import * as Series from "@wearflow/core/series"
import type { DiscreteResource, IntervalResource } from "@wearflow/core/series"
import { localDateFromEpochSeconds } from "@wearflow/core/time"

/** Latest epoch second whose ISO form still has a 4-digit year (9999-12-31T23:59:59Z). */
export const MAX_EPOCH_SECONDS = 253_402_300_799

/** Epoch seconds, bounded so `timestampFromEpochSeconds` never throws and matches `Timestamp`. */
export const EpochSeconds = Schema.Int.pipe(Schema.between(0, MAX_EPOCH_SECONDS))

/** Device-local offset from UTC; real offsets lie within ±14 h, a day is a generous bound. */
export const OffsetSeconds = Schema.Int.pipe(Schema.between(-86_400, 86_400))

/** A duration in seconds; the upper bound (~31 years) only keeps date arithmetic finite. */
export const DurationSeconds = Schema.Number.pipe(Schema.finite(), Schema.between(0, 1e9))

/** A `YYYY-MM-DD` that names a real day (no 2016-02-30), so date arithmetic and sinks accept it. */
export const LocalDate = CalendarDate.pipe(
  Schema.filter((s) => {
    const ms = Date.parse(`${s}T00:00:00Z`)
    return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === s
  })
)

/** Any finite measurement; NaN/Infinity cannot come from JSON and would serialize as null. */
export const Finite = Schema.Number.pipe(Schema.finite())

/** A count that lands in an integer field of the normalized schema. */
export const Count = Schema.Int.pipe(Schema.nonNegative())

/**
 * `{ "<offset seconds>": value }` maps (timeOffsetHeartRateSamples, timeOffsetSleepRespiration).
 * Keys that are not plain offsets are dropped like any unknown field; the 7-digit cap
 * (~115 days) keeps `start + offset` a valid date.
 */
export const OffsetMap = Schema.Record({
  key: Schema.String.pipe(Schema.pattern(/^\d{1,7}$/)),
  value: Finite
})

/**
 * An optional raw field. Garmin omits what it did not measure; an explicit `null` is
 * read the same way, since both end up as `null` in the normalized record.
 */
export const opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

/**
 * Fields every Garmin summary record carries. The user (`userId`, or `userAccessToken` in
 * OAuth 1.0a-era bodies) routes the item before it is normalized, so no normalizer needs it.
 */
export const SummaryBase = {
  summaryId: Schema.String,
  startTimeInSeconds: EpochSeconds,
  startTimeOffsetInSeconds: opt(OffsetSeconds)
}

/**
 * Garmin's activity ids are numbers; some senders quote them. Both forms name the same
 * activity (`String(id)`); anything else is not an activity id. The request path checks items
 * with the same schema, so what it accepts the normalizer reads.
 */
export const ActivityId = Schema.Union(Schema.Int.pipe(Schema.nonNegative()), Schema.String.pipe(Schema.pattern(/^\d{1,20}$/)))
export const isActivityId = Schema.is(ActivityId)

/** Rounds to one decimal, the precision of Garmin's own displays. */
export const round1 = (n: number): number => Math.round(n * 10) / 10

/** Arithmetic mean rounded to one decimal, or `null` for no values. */
export const mean1 = (values: ReadonlyArray<number>): number | null =>
  values.length === 0 ? null : round1(values.reduce((sum, v) => sum + v, 0) / values.length)

/** Sum of the values that were measured; `null` when none were. */
export const sumPresent = (values: ReadonlyArray<number | null | undefined>): number | null => {
  const present = values.filter((v): v is number => v != null)
  return present.length === 0 ? null : present.reduce((sum, v) => sum + v, 0)
}

/** `a + b` when both were measured, else `null` (a partial sum would understate). */
export const sumBoth = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a == null || b == null ? null : a + b

/** Seconds → minutes, keeping "not measured" as `null`. */
export const minutes = (seconds: number | null | undefined): number | null => (seconds == null ? null : seconds / 60)

/** An offset map as `[offsetSeconds, value]` pairs in time order. */
export const offsetEntries = (map: Readonly<Record<string, number>> | null | undefined): Array<[number, number]> =>
  Object.entries(map ?? {})
    .map(([offset, value]): [number, number] => [Number(offset), value])
    .sort(([a], [b]) => a - b)

/**
 * Garmin's `calendarDate` when given, else the device-local date of `epochSeconds`.
 * Without an offset the UTC date is the best available guess.
 */
export const calendarDateOf = (
  calendarDate: string | null | undefined,
  epochSeconds: number,
  offsetSeconds: number | null | undefined
): string => calendarDate ?? localDateFromEpochSeconds(epochSeconds, offsetSeconds ?? 0)

/** Midnight UTC of a calendar date, Junction's `date` convention. */
export const dateOf = (calendarDate: string): string => `${calendarDate}T00:00:00.000Z`

/** Source of Garmin health summaries: always the watch, device not named by Garmin. */
export const watchSource: Source = { provider: "garmin", type: "watch", device_id: null, app_id: null }

/** `calendarDate` plus `days`, or `null` when the result leaves the 4-digit-year range. */
export const addDays = (calendarDate: string, days: number): string | null => {
  const ms = Date.parse(`${calendarDate}T00:00:00Z`) + days * 86_400_000
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_EPOCH_SECONDS * 1000) return null
  return new Date(ms).toISOString().slice(0, 10)
}

/** Values Garmin uses for "no reading" are zero or negative (status codes) for most metrics. */
export const positive = (value: number): boolean => value > 0
/** Stress levels run 0–100; negative values are status codes (off wrist, motion, …). */
export const nonNegative = (value: number): boolean => value >= 0

export type { DiscreteResource, IntervalResource } from "@wearflow/core/series"

/** A reading at an epoch second. */
export type Point = readonly [epochSeconds: number, value: number]

/** A value accumulated over `[start, end)` epoch seconds. */
export interface Interval {
  readonly start: number
  readonly end: number
  readonly value: number
}

/** Garmin counts in epoch seconds; the series builders in core take milliseconds. */
export const discreteSeries = (
  resource: DiscreteResource,
  sourceId: string,
  source: Source,
  timezoneOffset: number | null | undefined,
  points: ReadonlyArray<Point>
): Array<NormalizedRecord> => Series.discreteSeries(resource, sourceId, source, timezoneOffset ?? null, points.map(([at, value]) => [at * 1000, value]))

export const intervalSeries = (
  resource: IntervalResource,
  sourceId: string,
  source: Source,
  timezoneOffset: number | null | undefined,
  intervals: ReadonlyArray<Interval>
): Array<NormalizedRecord> =>
  Series.intervalSeries(resource, sourceId, source, timezoneOffset ?? null, intervals.map(({ end, start, value }) => ({ start: start * 1000, end: end * 1000, value })))

/** Offset-map entries as points after `startSeconds`, keeping only values `keep` accepts. */
export const pointsFrom = (
  startSeconds: number,
  map: Readonly<Record<string, number>> | null | undefined,
  keep: (value: number) => boolean
): Array<Point> => offsetEntries(map).filter(([, value]) => keep(value)).map(([offset, value]) => [startSeconds + offset, value])
