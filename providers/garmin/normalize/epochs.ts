/**
 * `epochs` → `steps`, `calories_active` and `distance` interval samples for one 15-minute
 * slice. A partial epoch (duration under 900 s) is emitted too: the full epoch sent later
 * has the same start and activity type, so it replaces the partial one — the same record
 * (whatever its summaryId) and the same sample timestamps.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { Count, DurationSeconds, Finite, type IntervalResource, SummaryBase, intervalSeries, opt, watchSource } from "./shared.ts"

/** Garmin's epoch length: every epoch describes the slice [start, start + 900 s). */
export const EPOCH_SECONDS = 900

export const RawEpoch = Schema.Struct({
  ...SummaryBase,
  durationInSeconds: opt(DurationSeconds),
  activityType: opt(Schema.String),
  steps: opt(Count),
  distanceInMeters: opt(Finite),
  activeKilocalories: opt(Finite)
})
export type RawEpoch = typeof RawEpoch.Type

/**
 * The store key of an epoch: its slice and activity type, the pair Garmin revises (one record
 * per activity type per slice). Nothing promises that the full epoch keeps its partial's
 * summaryId (Garmin's ids often embed start and duration); with one key, the full epoch
 * updates the partial's record, and the store's inbox-order guard keeps a late partial from
 * overwriting it. Without an activity type, the summaryId.
 */
const epochSourceId = (raw: Pick<RawEpoch, "activityType" | "startTimeInSeconds" | "summaryId">): string =>
  raw.activityType == null ? raw.summaryId : `epoch:${raw.startTimeInSeconds}:${raw.activityType}`

const toRecords = (raw: RawEpoch): ReadonlyArray<NormalizedRecord> => {
  const start = raw.startTimeInSeconds
  const sourceId = epochSourceId(raw)
  // Garmin sends one epoch per activity type per slice, all with the same start: each is its
  // own record, so the store keeps every one's samples side by side (their sum is the slice's
  // total). A measured zero (a SEDENTARY slice) is a value too: the watch was worn.
  const series = (resource: IntervalResource, value: number | null | undefined) =>
    value == null
      ? []
      : intervalSeries(resource, sourceId, watchSource, raw.startTimeOffsetInSeconds, [{ start, end: start + EPOCH_SECONDS, value }])
  return [
    ...series("steps", raw.steps),
    ...series("calories_active", raw.activeKilocalories),
    ...series("distance", raw.distanceInMeters)
  ]
}

const decode = decodeRecord(RawEpoch)

export const normalizeEpoch: Normalizer = (raw) => Either.map(decode(raw), toRecords)
