/**
 * `pulseox` → one `blood_oxygen` batch. All-day and on-demand readings (`onDemand: true`, a
 * summary of its own) map the same way. Zero or negative SpO2 is "no value" and is dropped.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DurationSeconds, LocalDate, OffsetMap, SummaryBase, discreteSeries, opt, pointsFrom, positive, watchSource } from "./shared.ts"

export const RawPulseOx = Schema.Struct({
  ...SummaryBase,
  calendarDate: opt(LocalDate),
  durationInSeconds: opt(DurationSeconds),
  timeOffsetSpo2Values: opt(OffsetMap),
  onDemand: opt(Schema.Boolean)
})
export type RawPulseOx = typeof RawPulseOx.Type

const toRecords = (raw: RawPulseOx): ReadonlyArray<NormalizedRecord> =>
  discreteSeries(
    "blood_oxygen",
    raw.summaryId,
    watchSource,
    raw.startTimeOffsetInSeconds,
    pointsFrom(raw.startTimeInSeconds, raw.timeOffsetSpo2Values, positive)
  )

const decode = decodeRecord(RawPulseOx)

export const normalizePulseOx: Normalizer = (raw) => Either.map(decode(raw), toRecords)
