/**
 * `intraday` (one getintradayactivity answer, stored with the window it was asked for:
 * `{ startdate, enddate, timezone?, series }`, `series` being Withings' `body.series`, an
 * object keyed by epoch second) → per device, `steps`, `calories_active` and `distance`
 * interval samples over `[t, t + duration)`, and `heartrate`, `blood_oxygen` (`spo2_auto`),
 * `hrv` (`rmssd`, ms) and `respiratory_rate` (`rr`) samples at `t`.
 *
 * Withings gives no id: a record is the window and the device,
 * `intraday:<startdate>:<device id, else model-<model_id>>`, and holds only samples inside
 * the window. A record replaces its earlier version whole, so the plugin asks for fixed
 * windows (whole UTC days; Withings answers at most 24 h): a later fetch of the same day
 * revises the same records. An entry without `duration` is an interval of no length.
 * Each sample carries the zone's offset at its own instant (a day across a DST change has two).
 *
 * Not mapped, for want of a resource: floors (`elevation`), strokes, pool laps, SDNN, HRV
 * quality, core body temperature, chest movement rate.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import {
  DeviceId,
  EpochKey,
  Finite,
  type Interval,
  type Point,
  WindowFields,
  deviceKey,
  discreteSeriesIn,
  intervalSeriesIn,
  offsetsIn,
  opt,
  positive,
  sourceOf
} from "./shared.ts"

/** The record key of one device's samples in a window. */
export const intradaySourceId = (startdate: number, device: string): string => `intraday:${startdate}:${device}`

export const RawIntradayEntry = Schema.Struct({
  deviceid: opt(DeviceId),
  model_id: opt(Schema.Int),
  steps: opt(Finite),
  calories: opt(Finite),
  distance: opt(Finite),
  // Seconds; a day bounds it.
  duration: opt(Schema.Number.pipe(Schema.finite(), Schema.between(0, 86_400))),
  heart_rate: opt(Finite),
  spo2_auto: opt(Finite),
  rmssd: opt(Finite),
  rr: opt(Finite)
})
export type RawIntradayEntry = typeof RawIntradayEntry.Type

export const RawIntraday = Schema.Struct({
  ...WindowFields,
  // Withings answers `[]` for a window without data.
  series: Schema.Union(Schema.Record({ key: EpochKey, value: RawIntradayEntry }), Schema.Tuple())
})
export type RawIntraday = typeof RawIntraday.Type

interface DeviceSamples {
  readonly deviceId: string | null
  readonly modelId: number | null
  readonly steps: Array<Interval>
  readonly calories: Array<Interval>
  readonly distance: Array<Interval>
  readonly heartrate: Array<Point>
  readonly spo2: Array<Point>
  readonly rmssd: Array<Point>
  readonly rr: Array<Point>
}

const endsBeforeStart = new ItemError({ message: "enddate is before startdate" })

const toRecords = (raw: RawIntraday): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  if (raw.enddate < raw.startdate) return Either.left(endsBeforeStart)
  const devices = new Map<string, DeviceSamples>()
  const entries = Object.entries(Array.isArray(raw.series) ? {} : raw.series)
    .map(([key, entry]) => [Number(key), entry] as const)
    .filter(([at]) => at >= raw.startdate && at < raw.enddate)
    .sort(([a], [b]) => a - b)
  for (const [at, entry] of entries) {
    const key = deviceKey(entry.deviceid, entry.model_id)
    let samples = devices.get(key)
    if (samples === undefined) {
      samples = { deviceId: entry.deviceid ?? null, modelId: entry.model_id ?? null, steps: [], calories: [], distance: [], heartrate: [], spo2: [], rmssd: [], rr: [] }
      devices.set(key, samples)
    }
    const end = at + (entry.duration ?? 0)
    if (entry.steps != null && entry.steps >= 0) samples.steps.push({ start: at, end, value: entry.steps })
    if (entry.calories != null && entry.calories >= 0) samples.calories.push({ start: at, end, value: entry.calories })
    if (entry.distance != null && entry.distance >= 0) samples.distance.push({ start: at, end, value: entry.distance })
    if (entry.heart_rate != null && positive(entry.heart_rate)) samples.heartrate.push([at, entry.heart_rate])
    if (entry.spo2_auto != null && positive(entry.spo2_auto)) samples.spo2.push([at, entry.spo2_auto])
    if (entry.rmssd != null && positive(entry.rmssd)) samples.rmssd.push([at, entry.rmssd])
    if (entry.rr != null && positive(entry.rr)) samples.rr.push([at, entry.rr])
  }
  const offsetOf = offsetsIn(raw.timezone, raw.startdate, raw.enddate)
  return Either.right(
    [...devices.keys()].sort().flatMap((key) => {
      const s = devices.get(key)!
      const id = intradaySourceId(raw.startdate, key)
      const source = sourceOf(s.modelId, s.deviceId)
      return [
        ...intervalSeriesIn("steps", id, source, offsetOf, s.steps),
        ...intervalSeriesIn("calories_active", id, source, offsetOf, s.calories),
        ...intervalSeriesIn("distance", id, source, offsetOf, s.distance),
        ...discreteSeriesIn("heartrate", id, source, offsetOf, s.heartrate),
        ...discreteSeriesIn("blood_oxygen", id, source, offsetOf, s.spo2),
        ...discreteSeriesIn("hrv", id, source, offsetOf, s.rmssd),
        ...discreteSeriesIn("respiratory_rate", id, source, offsetOf, s.rr)
      ]
    })
  )
}

const decode = decodeRecord(RawIntraday)

export const normalizeIntraday: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
