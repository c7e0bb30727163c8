/**
 * Building blocks shared by the Withings normalizers: raw field schemas that keep every later
 * conversion total (no `RangeError` from `Date`), the user's offset from an IANA zone name,
 * the source of a record from Withings' model ids, and the series builders in epoch seconds.
 *
 * Withings gives instants as epoch seconds and the user's zone as a name (`Europe/Paris`);
 * the normalized records carry the instant in UTC and the zone's offset at that instant in
 * `timezone_offset`. `-1` and `0` stand for "no value" in many Withings figures.
 */
import { Schema } from "effect"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { CalendarDate, type Source, type SourceType } from "@wearflow/core/schema"
import * as Series from "@wearflow/core/series"
import type { DiscreteResource, IntervalResource } from "@wearflow/core/series"

/** Latest epoch second whose ISO form still has a 4-digit year (9999-12-31T23:59:59Z). */
export const MAX_EPOCH_SECONDS = 253_402_300_799

/** Epoch seconds, bounded so every timestamp built from it is valid. */
export const EpochSeconds = Schema.Int.pipe(Schema.between(0, MAX_EPOCH_SECONDS))

/** Epoch-second keys of Withings' `{ "<epoch>": value }` maps; other keys are dropped like unknown fields. */
export const EpochKey = Schema.String.pipe(Schema.pattern(/^\d{1,12}$/))

/** Any finite measurement; NaN/Infinity cannot come from JSON and would serialize as null. */
export const Finite = Schema.Number.pipe(Schema.finite())

/** A count that lands in an integer field of the normalized schema. */
export const Count = Schema.Int.pipe(Schema.nonNegative())

/**
 * Withings' ids are integers (grpid beyond 2^32); some clients see them quoted. Both name the
 * same record (`String(id)`).
 */
export const WithingsId = Schema.Union(Schema.Int.pipe(Schema.nonNegative()), Schema.String.pipe(Schema.pattern(/^\d{1,20}$/)))

/** An IANA zone name as Withings sends it; an unknown name only leaves the offset null. */
export const ZoneName = Schema.String.pipe(Schema.maxLength(64))

/** Withings' device ids: hex hashes. Limited to a plain word, since they are part of record keys. */
export const DeviceId = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-]{1,64}$/))

/** A `YYYY-MM-DD` that names a real day (no 2024-02-30), so date arithmetic and sinks accept it. */
export const LocalDate = CalendarDate.pipe(
  Schema.filter((s) => {
    const ms = Date.parse(`${s}T00:00:00Z`)
    return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === s
  })
)

/**
 * An optional raw field. Withings omits fields it was not asked for and sends `null` for what
 * it did not measure; both end up as `null` in the normalized record.
 */
export const opt = <A, I>(schema: Schema.Schema<A, I>) => Schema.optional(Schema.NullOr(schema))

/** The window the plugin fetched a day's series for (intraday, sleep series): whole UTC days, and the user's zone. */
export const WindowFields = {
  startdate: EpochSeconds,
  enddate: EpochSeconds,
  timezone: opt(ZoneName)
}

/** A figure where Withings writes `-1` (or another negative) for "no value". */
export const present = (value: number | null | undefined): number | null => (value != null && value >= 0 ? value : null)

/** Heart rate, SpO2, breathing rate and the like: zero or below is no reading. */
export const positive = (value: number): boolean => value > 0
export const measured = (value: number | null | undefined): number | null => (value != null && positive(value) ? value : null)

/** Rounds to two decimals (percentages Withings gives as ratios, so 0.86 → 86, not 86.00000000000001). */
export const round2 = (n: number): number => Math.round(n * 100) / 100
/** Rounds to one decimal, for shares computed from two masses. */
export const round1 = (n: number): number => Math.round(n * 10) / 10

/** Seconds → minutes, keeping "not measured" as `null`. */
export const minutes = (seconds: number | null): number | null => (seconds == null ? null : seconds / 60)

/** Epoch seconds → ISO 8601 UTC timestamp. */
export const isoOf = (seconds: number): string => new Date(seconds * 1000).toISOString()

/** Midnight UTC of a calendar date, Junction's `date` convention. */
export const dateOf = (calendarDate: string): string => `${calendarDate}T00:00:00.000Z`

/** The local calendar date of an instant; the UTC date when the offset is unknown. */
export const localDateOf = (seconds: number, offset: number | null): string => isoOf(seconds + (offset ?? 0)).slice(0, 10)

const formatters = new Map<string, Intl.DateTimeFormat | null>()
/** Valid zone names number in the hundreds; the cap only bounds what hostile names could add. */
const MAX_FORMATTERS = 2000

const formatterOf = (zone: string): Intl.DateTimeFormat | null => {
  const cached = formatters.get(zone)
  if (cached !== undefined) return cached
  let formatter: Intl.DateTimeFormat | null
  try {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric"
    })
  } catch {
    // An unknown zone name: Intl refuses it with a RangeError.
    formatter = null
  }
  if (formatters.size < MAX_FORMATTERS) formatters.set(zone, formatter)
  return formatter
}

/**
 * The offset from UTC, in seconds east, of the IANA zone `zone` at epoch second `seconds`
 * (DST included), from the runtime's time zone data: pure and deterministic. Null for no zone,
 * an unknown zone, or an answer no real offset has (beyond ±18 h).
 */
export const offsetAt = (zone: string | null | undefined, seconds: number): number | null => {
  if (zone == null || zone === "") return null
  const formatter = formatterOf(zone)
  if (formatter === null) return null
  const parts: Record<string, number> = {}
  for (const part of formatter.formatToParts(new Date(seconds * 1000))) parts[part.type] = Number(part.value)
  const { year, month, day, hour, minute, second } = parts
  if (year === undefined || month === undefined || day === undefined || hour === undefined || minute === undefined || second === undefined) return null
  const local = Date.UTC(year, month - 1, day, hour, minute, second) / 1000
  const offset = local - seconds
  return Number.isInteger(offset) && Math.abs(offset) <= 18 * 3600 ? offset : null
}

/** The kind of device of each Withings model id (the OpenAPI's model tables). */
const modelTypes: ReadonlyArray<readonly [SourceType, ReadonlyArray<number>]> = [
  // Scales: WBS01, WS30, Kid Scale, Smart Body Analyzer, Body+, Body Cardio, Body, Body Pro, Body Scan, WBS10, WBS11, Body+ (13), Body Comp.
  ["scale", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 18]],
  // Blood pressure monitors: V1–V3, BPM Core, Connect, Connect Pro, Pro 2, Vision.
  ["cuff", [41, 42, 43, 44, 45, 46, 47, 48]],
  // Activity trackers and watches: Pulse … ScanWatch Light.
  ["watch", [51, 52, 53, 54, 55, 58, 59, 90, 91, 92, 93, 94, 95]],
  // Phone step counters and health apps (HealthKit, Google Fit, Samsung Health, Health Connect, Huawei): Withings brand 18.
  ["app", [1051, 1052, 1053, 1054, 1055, 1056, 1057, 1058, 1059, 1060, 1062]],
  // The iGlucose glucometer.
  ["fingerprick", [1061]]
]
const typeOfModel = new Map(modelTypes.flatMap(([type, ids]) => ids.map((id) => [id, type] as const)))

/**
 * The source of a Withings record: the device kind from its model id (sleep monitors under the
 * mattress, thermometers, baby monitors and unknown models have no kind in the normalized
 * schema: `unknown`), and the device id Withings gives (a hash, not a serial number).
 */
export const sourceOf = (modelId: number | null | undefined, deviceId: string | null | undefined, type?: SourceType): Source => ({
  provider: "withings",
  type: type ?? (modelId == null ? undefined : typeOfModel.get(modelId)) ?? "unknown",
  device_id: deviceId == null || deviceId === "" ? null : deviceId,
  app_id: null
})

/** The part of a record key that tells devices apart: the device id, else the model id. */
export const deviceKey = (deviceId: string | null | undefined, modelId: number | null | undefined): string =>
  deviceId != null && deviceId !== "" ? deviceId : modelId != null ? `model-${modelId}` : "unknown"

/**
 * The zone's offset for each instant of a window. A window of a day holds at most one DST
 * change: when both ends agree (nearly always) every instant gets that offset without asking
 * Intl again; otherwise each instant is looked up.
 */
export const offsetsIn = (zone: string | null | undefined, start: number, end: number): ((seconds: number) => number | null) => {
  const first = offsetAt(zone, start)
  return first === offsetAt(zone, end) ? () => first : (seconds) => offsetAt(zone, seconds)
}

export type { DiscreteResource, IntervalResource } from "@wearflow/core/series"

/** A reading at an epoch second. */
export type Point = readonly [epochSeconds: number, value: number]

/** A value accumulated over `[start, end)` epoch seconds. */
export interface Interval {
  readonly start: number
  readonly end: number
  readonly value: number
}

/** Withings counts in epoch seconds; the series builders in core take milliseconds. */
export const discreteSeries = (
  resource: DiscreteResource,
  sourceId: string,
  source: Source,
  timezoneOffset: number | null,
  points: ReadonlyArray<Point>
): Array<NormalizedRecord> => Series.discreteSeries(resource, sourceId, source, timezoneOffset, points.map(([at, value]) => [at * 1000, value]))

export const intervalSeries = (
  resource: IntervalResource,
  sourceId: string,
  source: Source,
  timezoneOffset: number | null,
  intervals: ReadonlyArray<Interval>
): Array<NormalizedRecord> =>
  Series.intervalSeries(resource, sourceId, source, timezoneOffset, intervals.map(({ end, start, value }) => ({ start: start * 1000, end: end * 1000, value })))

/** Items grouped by the offset of their instant, in the order each offset first appears. */
const byOffset = <T>(items: ReadonlyArray<T>, instant: (item: T) => number, offsetOf: (seconds: number) => number | null): Array<[number | null, Array<T>]> => {
  const groups = new Map<number | null, Array<T>>()
  for (const item of items) {
    const offset = offsetOf(instant(item))
    const group = groups.get(offset)
    if (group === undefined) groups.set(offset, [item])
    else group.push(item)
  }
  return [...groups.entries()]
}

/** The batches the builders made for each offset, as one record of one source: its samples in time order. */
const merged = (records: Array<NormalizedRecord>): Array<NormalizedRecord> => {
  const [first, ...rest] = records
  if (first === undefined || rest.length === 0 || first.kind !== "timeseries") return records
  const data = records.flatMap((r) => (r.kind === "timeseries" ? [...r.data.data] : [])).sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp))
  return [{ ...first, data: { ...first.data, data } } as NormalizedRecord]
}

/** `discreteSeries` with each sample's own offset (a window across a DST change has two). */
export const discreteSeriesIn = (
  resource: DiscreteResource,
  sourceId: string,
  source: Source,
  offsetOf: (seconds: number) => number | null,
  points: ReadonlyArray<Point>
): Array<NormalizedRecord> =>
  merged(byOffset(points, ([at]) => at, offsetOf).flatMap(([offset, group]) => discreteSeries(resource, sourceId, source, offset, group)))

/** `intervalSeries` with each sample's own offset, from its start. */
export const intervalSeriesIn = (
  resource: IntervalResource,
  sourceId: string,
  source: Source,
  offsetOf: (seconds: number) => number | null,
  intervals: ReadonlyArray<Interval>
): Array<NormalizedRecord> =>
  merged(byOffset(intervals, ({ start }) => start, offsetOf).flatMap(([offset, group]) => intervalSeries(resource, sourceId, source, offset, group)))
