/**
 * `sleep_series` (one sleep get answer, stored with the window it was asked for:
 * `{ startdate, enddate, timezone?, series }`, `series` being Withings' `body.series`, an
 * array of sleep-state segments with `{ "<epoch>": value }` maps) → per device, `heartrate`
 * (`hr`), `respiratory_rate` (`rr`) and `hrv` (`rmssd`, ms) samples.
 *
 * Withings gives no id: a record is the window and the device,
 * `sleep_series:<startdate>:<hash_deviceid, else model-<model_id>>`, and holds only samples
 * inside the window. A record replaces its earlier version whole, so the plugin asks for
 * fixed windows (whole UTC days; Withings answers at most 24 h).
 * Each sample carries the zone's offset at its own instant (a day across a DST change has two).
 *
 * Not mapped, for want of a place in the schema: the sleep states themselves (awake, light,
 * deep, REM: the normalized schema has no hypnogram or stage series), snoring, SDNN, HRV
 * quality, movement score, chest movement rate, Withings index, breathing sounds.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DeviceId, EpochKey, EpochSeconds, Finite, type Point, WindowFields, deviceKey, discreteSeriesIn, offsetsIn, opt, positive, sourceOf } from "./shared.ts"

/** The record key of one device's samples in a window. */
export const sleepSeriesSourceId = (startdate: number, device: string): string => `sleep_series:${startdate}:${device}`

const SampleMap = Schema.Record({ key: EpochKey, value: Finite })

export const RawSleepSegment = Schema.Struct({
  startdate: EpochSeconds,
  enddate: EpochSeconds,
  state: Schema.Int,
  model_id: opt(Schema.Int),
  hash_deviceid: opt(DeviceId),
  hr: opt(SampleMap),
  rr: opt(SampleMap),
  rmssd: opt(SampleMap)
})
export type RawSleepSegment = typeof RawSleepSegment.Type

export const RawSleepSeries = Schema.Struct({
  ...WindowFields,
  series: Schema.Array(RawSleepSegment).pipe(Schema.maxItems(100_000))
})
export type RawSleepSeries = typeof RawSleepSeries.Type

interface DeviceSamples {
  readonly deviceId: string | null
  readonly modelId: number | null
  // Keyed by epoch second: segments that share a boundary both list its sample.
  readonly hr: Map<number, number>
  readonly rr: Map<number, number>
  readonly rmssd: Map<number, number>
}

const endsBeforeStart = new ItemError({ message: "enddate is before startdate" })

const toRecords = (raw: RawSleepSeries): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  if (raw.enddate < raw.startdate) return Either.left(endsBeforeStart)
  const devices = new Map<string, DeviceSamples>()
  const collect = (into: Map<number, number>, map: Readonly<Record<string, number>> | null | undefined) => {
    for (const [key, value] of Object.entries(map ?? {})) {
      const at = Number(key)
      if (at >= raw.startdate && at < raw.enddate && positive(value)) into.set(at, value)
    }
  }
  for (const segment of raw.series) {
    const key = deviceKey(segment.hash_deviceid, segment.model_id)
    let samples = devices.get(key)
    if (samples === undefined) {
      samples = { deviceId: segment.hash_deviceid ?? null, modelId: segment.model_id ?? null, hr: new Map(), rr: new Map(), rmssd: new Map() }
      devices.set(key, samples)
    }
    collect(samples.hr, segment.hr)
    collect(samples.rr, segment.rr)
    collect(samples.rmssd, segment.rmssd)
  }
  const offsetOf = offsetsIn(raw.timezone, raw.startdate, raw.enddate)
  const points = (map: Map<number, number>): Array<Point> => [...map.entries()].sort(([a], [b]) => a - b)
  return Either.right(
    [...devices.keys()].sort().flatMap((key) => {
      const s = devices.get(key)!
      const id = sleepSeriesSourceId(raw.startdate, key)
      const source = sourceOf(s.modelId, s.deviceId)
      return [
        ...discreteSeriesIn("heartrate", id, source, offsetOf, points(s.hr)),
        ...discreteSeriesIn("respiratory_rate", id, source, offsetOf, points(s.rr)),
        ...discreteSeriesIn("hrv", id, source, offsetOf, points(s.rmssd))
      ]
    })
  )
}

const decode = decodeRecord(RawSleepSeries)

export const normalizeSleepSeries: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
