/**
 * Building blocks shared by the Oura normalizers: raw field schemas that keep every later
 * conversion total (no `RangeError` from `Date`), Oura's sample objects, and the series
 * builders. Oura gives times as ISO strings with the user's offset; the normalized records
 * carry the instant in UTC and the offset in `timezone_offset`, as the Garmin ones do.
 */
import { Schema } from "effect"
import { CalendarDate, type Source } from "@wearflow/core/schema"
import { MAX_EPOCH_MS, type Reading as Point } from "@wearflow/core/series"

export { inRange, MAX_EPOCH_MS } from "@wearflow/core/series"

/** A point in time as Oura stated it: the instant, and the user's offset from UTC then. */
export interface Instant {
  readonly ms: number
  /** Seconds east of UTC. */
  readonly offset: number
}

const localizedPattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):?(\d{2}))$/

/**
 * Reads `2024-10-10T01:01:59.000+02:00` (Oura's LocalizedDateTime; `Z`, `+0200` and up to
 * nanoseconds accepted), or undefined for anything else: impossible dates (Feb 30), hours
 * past 23, offsets past ±18 h, or instants outside the 4-digit-year range.
 */
export const parseInstant = (text: string): Instant | undefined => {
  const m = localizedPattern.exec(text)
  if (m === null) return undefined
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number]
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined
  const local = Date.UTC(year, month - 1, day, hour, minute, second)
  const check = new Date(local)
  // Date.UTC maps years 0-99 to 1900-1999 and rolls Feb 30 over to March: both are refused.
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return undefined
  const millis = Math.floor(Number(`0.${m[7] ?? "0"}`) * 1000)
  const offsetHours = Number(m[10] ?? 0)
  const offsetMinutes = Number(m[11] ?? 0)
  if (offsetHours > 18 || offsetMinutes > 59) return undefined
  const offset = (m[9] === "-" ? -1 : 1) * (offsetHours * 3600 + offsetMinutes * 60)
  const ms = local + millis - offset * 1000
  return ms < 0 || ms > MAX_EPOCH_MS ? undefined : { ms, offset }
}

/** An Oura date-time string that names a representable instant. */
export const LocalizedDateTime = Schema.String.pipe(Schema.filter((s) => parseInstant(s) !== undefined))

/** The instant of a string `LocalizedDateTime` accepted (the fallback is unreachable after decoding). */
export const instantOf = (text: string): Instant => parseInstant(text) ?? { ms: 0, offset: 0 }

/** Epoch milliseconds → ISO 8601 UTC timestamp, the form every normalized timestamp takes. */
export const isoOf = (ms: number): string => new Date(ms).toISOString()


/** A `YYYY-MM-DD` that names a real day (no 2024-02-30), so date arithmetic and sinks accept it. */
export const LocalDate = CalendarDate.pipe(
  Schema.filter((s) => {
    const ms = Date.parse(`${s}T00:00:00Z`)
    return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === s
  })
)

/** Midnight UTC of a calendar date, Junction's `date` convention, in epoch milliseconds. */
export const dayStartMs = (calendarDate: string): number => Date.parse(`${calendarDate}T00:00:00Z`)

/** Midnight UTC of a calendar date as a timestamp. */
export const dateOf = (calendarDate: string): string => `${calendarDate}T00:00:00.000Z`

/** The user's local calendar date of an instant. */
export const localDateOf = (at: Instant): string => new Date(at.ms + at.offset * 1000).toISOString().slice(0, 10)

/** Any finite measurement; NaN/Infinity cannot come from JSON and would serialize as null. */
export const Finite = Schema.Number.pipe(Schema.finite())

/** A count that lands in an integer field of the normalized schema. */
export const Count = Schema.Int.pipe(Schema.nonNegative())

/** A duration in seconds; the upper bound (~31 years) only keeps date arithmetic finite. */
export const DurationSeconds = Schema.Number.pipe(Schema.finite(), Schema.between(0, 1e9))

/** Oura's scores: 1–100 (0 tolerated), or null. */
export const Score = Schema.Int.pipe(Schema.between(0, 100))

/** Oura's document ids: non-empty strings. */
export const DocumentId = Schema.String.pipe(Schema.minLength(1))

/**
 * An optional raw field. Oura sends `null` for what it did not measure and older documents
 * lack newer fields; both end up as `null` in the normalized record.
 */
export const opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

/** More items than a day of 1-second samples is not a sample object Oura sends. */
export const MAX_SAMPLE_ITEMS = 100_000

/**
 * Oura's sample object (`PublicSample`): `items[i]` was taken at `timestamp + i × interval`
 * seconds; `null` items are gaps. The interval is positive and at most a day, so a sample
 * never lands before its start or at a non-advancing time.
 */
export const RawSampleSeries = Schema.Struct({
  interval: Schema.Number.pipe(Schema.finite(), Schema.greaterThan(0), Schema.lessThanOrEqualTo(86_400)),
  items: Schema.Array(Schema.NullOr(Finite)).pipe(Schema.maxItems(MAX_SAMPLE_ITEMS)),
  timestamp: LocalizedDateTime
})
export type RawSampleSeries = typeof RawSampleSeries.Type

/** A reading at an instant (epoch milliseconds). */
export type { Point }

/** The measured items of a sample object as points, keeping only values `keep` accepts. */
export const pointsOf = (series: RawSampleSeries | null | undefined, keep: (value: number) => boolean): Array<Point> => {
  if (series == null) return []
  const start = instantOf(series.timestamp).ms
  return series.items.flatMap((value, i): Array<Point> =>
    value !== null && keep(value) ? [[Math.round(start + i * series.interval * 1000), value]] : []
  )
}

/** Heart rate, HRV, SpO2, VO2 max and breathing rate of zero or below are not readings. */
export const positive = (value: number): boolean => value > 0

/** The source of Oura data: the ring, named when the document names it (an empty id names none). */
export const ringSource = (ringId?: string | null): Source => ({
  provider: "oura",
  type: "ring",
  device_id: ringId == null || ringId === "" ? null : ringId,
  app_id: null
})

export { discreteSeries, type DiscreteResource, type IntervalReading as Interval, intervalSeries, type IntervalResource } from "@wearflow/core/series"
