/**
 * Building blocks shared by the Garmin normalizers: raw field schemas that keep every
 * later conversion total (no `RangeError` from `Date`), and small numeric helpers.
 */
import { Schema } from "effect"
import type { Source } from "@wearflow/core/schema"
import { localDateFromEpochSeconds } from "@wearflow/core/time"

/** Latest epoch second whose ISO form still has a 4-digit year (9999-12-31T23:59:59Z). */
const MAX_EPOCH_SECONDS = 253_402_300_799

/** Epoch seconds, bounded so `timestampFromEpochSeconds` never throws and matches `Timestamp`. */
export const EpochSeconds = Schema.Int.pipe(Schema.between(0, MAX_EPOCH_SECONDS))

/** Device-local offset from UTC; real offsets lie within ±14 h, a day is a generous bound. */
export const OffsetSeconds = Schema.Int.pipe(Schema.between(-86_400, 86_400))

/** A duration in seconds; the upper bound (~31 years) only keeps date arithmetic finite. */
export const DurationSeconds = Schema.Number.pipe(Schema.finite(), Schema.between(0, 1e9))

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

/** Fields every Garmin summary record carries. */
export const SummaryBase = {
  userId: Schema.String,
  summaryId: Schema.String,
  startTimeInSeconds: EpochSeconds,
  startTimeOffsetInSeconds: opt(OffsetSeconds)
}

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
