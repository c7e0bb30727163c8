/** `allDayRespiration` → one `respiratory_rate` batch; zero or negative values are dropped. */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DurationSeconds, OffsetMap, SummaryBase, discreteSeries, opt, pointsFrom, positive, watchSource } from "./shared.ts"

export const RawRespiration = Schema.Struct({
  ...SummaryBase,
  durationInSeconds: opt(DurationSeconds),
  timeOffsetEpochToBreaths: opt(OffsetMap)
})
export type RawRespiration = typeof RawRespiration.Type

const toRecords = (raw: RawRespiration): ReadonlyArray<NormalizedRecord> =>
  discreteSeries(
    "respiratory_rate",
    raw.summaryId,
    watchSource,
    raw.startTimeOffsetInSeconds,
    pointsFrom(raw.startTimeInSeconds, raw.timeOffsetEpochToBreaths, positive)
  )

const decode = decodeRecord(RawRespiration)

export const normalizeRespiration: Normalizer = (raw) => Either.map(decode(raw), toRecords)
