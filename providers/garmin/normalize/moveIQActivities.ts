/** `moveIQActivities` → one auto-detected `workouts` summary. */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { Source, WorkoutFields } from "@wearflow/core/schema"
import { timestampFromEpochSeconds } from "@wearflow/core/time"
import { sportOf } from "./activities.ts"
import { DurationSeconds, LocalDate, OffsetSeconds, SummaryBase, calendarDateOf, opt } from "./shared.ts"

export const RawMoveIQ = Schema.Struct({
  ...SummaryBase,
  // Move IQ names the device offset `offsetInSeconds`; `startTimeOffsetInSeconds` is accepted too.
  offsetInSeconds: opt(OffsetSeconds),
  calendarDate: opt(LocalDate),
  durationInSeconds: DurationSeconds,
  activityType: Schema.String.pipe(Schema.pattern(/[A-Za-z0-9]/)),
  activitySubType: opt(Schema.String)
})
export type RawMoveIQ = typeof RawMoveIQ.Type

/** Move IQ events are detected by the watch, not started by the user. */
const automatic: Source = { provider: "garmin", type: "automatic", device_id: null, app_id: null }

const workout = (raw: RawMoveIQ): typeof WorkoutFields.Type => {
  const start = raw.startTimeInSeconds
  const offset = raw.offsetInSeconds ?? raw.startTimeOffsetInSeconds ?? null
  return {
    title: null,
    calendar_date: calendarDateOf(raw.calendarDate, start, offset),
    time_start: timestampFromEpochSeconds(start),
    time_end: timestampFromEpochSeconds(start + raw.durationInSeconds),
    sport: sportOf(raw.activityType),
    average_hr: null,
    max_hr: null,
    distance: null,
    calories: null,
    moving_time: null,
    total_elevation_gain: null,
    elev_high: null,
    elev_low: null,
    average_speed: null,
    max_speed: null,
    average_watts: null,
    max_watts: null,
    weighted_average_watts: null,
    provider_id: raw.summaryId,
    timezone_offset: offset,
    source: automatic
  }
}

const toRecords = (raw: RawMoveIQ): ReadonlyArray<NormalizedRecord> => [
  { kind: "summary", resource: "workouts", sourceId: raw.summaryId, data: workout(raw) }
]

const decode = decodeRecord(RawMoveIQ)

export const normalizeMoveIQ: Normalizer = (raw) => Either.map(decode(raw), toRecords)
