/**
 * `bloodPressures` → one `blood_pressure` sample {systolic, diastolic} in mmHg, plus a
 * `heartrate` sample from `pulse` when present.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { Resources, type Source } from "@wearflow/core/schema"
import { timestampFromEpochSeconds } from "@wearflow/core/time"
import { EpochSeconds, Finite, OffsetSeconds, discreteSeries, opt, positive } from "./shared.ts"

export const RawBloodPressure = Schema.Struct({
  summaryId: Schema.String,
  measurementTimeInSeconds: EpochSeconds,
  measurementTimeOffsetInSeconds: opt(OffsetSeconds),
  // Required: a reading without both values is not a blood pressure.
  systolic: Finite,
  diastolic: Finite,
  pulse: opt(Finite),
  sourceType: opt(Schema.String)
})
export type RawBloodPressure = typeof RawBloodPressure.Type

/** `MANUAL` readings are typed into Garmin Connect; `DEVICE` ones come from a cuff (Index BPM). */
const sourceOf = (raw: RawBloodPressure): Source => ({
  provider: "garmin",
  type: raw.sourceType === "MANUAL" ? "app" : raw.sourceType === "DEVICE" ? "cuff" : "unknown",
  device_id: null,
  app_id: null
})

const toRecords = (raw: RawBloodPressure): ReadonlyArray<NormalizedRecord> => {
  const source = sourceOf(raw)
  const at = raw.measurementTimeInSeconds
  const offset = raw.measurementTimeOffsetInSeconds ?? null
  const pressure: Array<NormalizedRecord> =
    positive(raw.systolic) && positive(raw.diastolic)
      ? [
          {
            kind: "timeseries",
            resource: "blood_pressure",
            sourceId: raw.summaryId,
            data: {
              source,
              data: [
                {
                  timestamp: timestampFromEpochSeconds(at),
                  timezone_offset: offset,
                  type: source.type,
                  unit: Resources.blood_pressure.unit,
                  systolic: raw.systolic,
                  diastolic: raw.diastolic
                }
              ]
            }
          }
        ]
      : []
  const pulse = raw.pulse != null && positive(raw.pulse) ? [[at, raw.pulse] as const] : []
  return [...pressure, ...discreteSeries("heartrate", raw.summaryId, source, offset, pulse)]
}

const decode = decodeRecord(RawBloodPressure)

export const normalizeBloodPressure: Normalizer = (raw) => Either.map(decode(raw), toRecords)
