/**
 * Timeseries records built from readings, for normalizers: one batch per source record and
 * resource, or no record at all when no reading survives. Readings outside the range an ISO
 * timestamp with a 4-digit year can hold are dropped, so a batch always matches the sample
 * schema and building it never throws.
 */
import type { NormalizedRecord } from "./normalizer.ts"
import { Resources, type Source, type SourceType } from "./schema.ts"

/** The latest instant whose ISO form still has a 4-digit year (9999-12-31T23:59:59.999Z). */
export const MAX_EPOCH_MS = 253_402_300_799_999

export const inRange = (ms: number): boolean => Number.isFinite(ms) && ms >= 0 && ms <= MAX_EPOCH_MS

/** Timeseries whose samples are `{timestamp, timezone_offset, type, unit, value}`. */
export type DiscreteResource = "heartrate" | "hrv" | "stress_level" | "blood_oxygen" | "respiratory_rate" | "body_temperature" | "vo2_max" | "weight" | "fat"
/** Timeseries whose samples also carry `start` and `end`. */
export type IntervalResource = "steps" | "calories_active" | "distance" | "body_temperature_delta"

/** A reading at an instant (epoch milliseconds). */
export type Reading = readonly [ms: number, value: number]

/** A value over `[start, end)` epoch milliseconds. */
export interface IntervalReading {
  readonly start: number
  readonly end: number
  readonly value: number
}

const iso = (ms: number) => new Date(ms).toISOString()

/** One batch of discrete samples; `type` is the source's unless a reading came from elsewhere. */
export const discreteSeries = (
  resource: DiscreteResource,
  sourceId: string,
  source: Source,
  timezoneOffset: number | null,
  readings: ReadonlyArray<Reading>,
  type: SourceType = source.type
): Array<NormalizedRecord> => {
  const data = readings
    .filter(([at]) => inRange(at))
    .map(([at, value]) => ({ timestamp: iso(at), timezone_offset: timezoneOffset, type, unit: Resources[resource].unit, value }))
  return data.length === 0 ? [] : [{ kind: "timeseries", resource, sourceId, data: { source, data } }]
}

/** One batch of interval samples (`timestamp` = `start`); intervals ending before they start are dropped. */
export const intervalSeries = (
  resource: IntervalResource,
  sourceId: string,
  source: Source,
  timezoneOffset: number | null,
  intervals: ReadonlyArray<IntervalReading>
): Array<NormalizedRecord> => {
  const data = intervals
    .filter(({ end, start }) => inRange(start) && inRange(end) && end >= start)
    .map(({ end, start, value }) => ({
      timestamp: iso(start),
      start: iso(start),
      end: iso(end),
      timezone_offset: timezoneOffset,
      type: source.type,
      unit: Resources[resource].unit,
      value
    }))
  return data.length === 0 ? [] : [{ kind: "timeseries", resource, sourceId, data: { source, data } }]
}
