/**
 * `hrv` → one `hrv` batch of the 5-minute RMSSD values (ms). `lastNightAvg` and
 * `lastNight5MinHigh` are validated but not mapped: they are statistics of these same values,
 * and the night's `sleep` record (a different Garmin record) cannot be amended from here.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DurationSeconds, Finite, LocalDate, OffsetMap, SummaryBase, discreteSeries, opt, pointsFrom, positive, watchSource } from "./shared.ts"

export const RawHrv = Schema.Struct({
  ...SummaryBase,
  calendarDate: opt(LocalDate),
  durationInSeconds: opt(DurationSeconds),
  lastNightAvg: opt(Finite),
  lastNight5MinHigh: opt(Finite),
  hrvValues: opt(OffsetMap)
})
export type RawHrv = typeof RawHrv.Type

const toRecords = (raw: RawHrv): ReadonlyArray<NormalizedRecord> =>
  discreteSeries("hrv", raw.summaryId, watchSource, raw.startTimeOffsetInSeconds, pointsFrom(raw.startTimeInSeconds, raw.hrvValues, positive))

const decode = decodeRecord(RawHrv)

export const normalizeHrv: Normalizer = (raw) => Either.map(decode(raw), toRecords)
