/**
 * `stressDetails` → one `stress_level` batch from the 3-minute stress values. Negative values
 * are Garmin status codes (−1 off wrist, −2 large motion, −3 not enough data, −4 recovering
 * from exercise, −5 unidentified), not stress levels, and produce no sample. Body battery
 * is validated but not mapped: the normalized schema has no body-battery resource.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DurationSeconds, LocalDate, OffsetMap, SummaryBase, discreteSeries, nonNegative, opt, pointsFrom, watchSource } from "./shared.ts"

export const RawStressDetail = Schema.Struct({
  ...SummaryBase,
  calendarDate: opt(LocalDate),
  durationInSeconds: opt(DurationSeconds),
  timeOffsetStressLevelValues: opt(OffsetMap),
  timeOffsetBodyBatteryValues: opt(OffsetMap)
})
export type RawStressDetail = typeof RawStressDetail.Type

const toRecords = (raw: RawStressDetail): ReadonlyArray<NormalizedRecord> =>
  discreteSeries(
    "stress_level",
    raw.summaryId,
    watchSource,
    raw.startTimeOffsetInSeconds,
    pointsFrom(raw.startTimeInSeconds, raw.timeOffsetStressLevelValues, nonNegative)
  )

const decode = decodeRecord(RawStressDetail)

export const normalizeStressDetail: Normalizer = (raw) => Either.map(decode(raw), toRecords)
