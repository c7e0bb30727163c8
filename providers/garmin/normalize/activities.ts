/** `activities` and `manuallyUpdatedActivities` → one `workouts` summary. */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { Source, WorkoutFields } from "@wearflow/core/schema"
import { localDateFromEpochSeconds, timestampFromEpochSeconds } from "@wearflow/core/time"
import { ActivityId, DurationSeconds, EpochSeconds, Finite, OffsetSeconds, opt } from "./shared.ts"

/** The fields of a Garmin activity summary, also found under `summary` in activityDetails. */
export const ActivitySummaryFields = {
  startTimeInSeconds: EpochSeconds,
  startTimeOffsetInSeconds: opt(OffsetSeconds),
  // Required: time_end and the sport are mandatory in the normalized workout.
  durationInSeconds: DurationSeconds,
  activityType: Schema.String.pipe(Schema.pattern(/[A-Za-z0-9]/)),
  activityId: opt(ActivityId),
  activityName: opt(Schema.String),
  movingDurationInSeconds: opt(DurationSeconds),
  averageHeartRateInBeatsPerMinute: opt(Finite),
  maxHeartRateInBeatsPerMinute: opt(Finite),
  distanceInMeters: opt(Finite),
  activeKilocalories: opt(Finite),
  totalElevationGainInMeters: opt(Finite),
  averageSpeedInMetersPerSecond: opt(Finite),
  maxSpeedInMetersPerSecond: opt(Finite),
  deviceName: opt(Schema.String),
  manual: opt(Schema.Boolean)
}

/** An activityDetails `summary`: the activity fields without the record's ids. */
export const RawActivitySummary = Schema.Struct(ActivitySummaryFields)
export type RawActivitySummary = typeof RawActivitySummary.Type

export const RawActivity = Schema.Struct({
  // Either id names the activity: some senders give only activityId.
  summaryId: opt(Schema.String),
  ...ActivitySummaryFields
})
export type RawActivity = typeof RawActivity.Type

type Sport = (typeof WorkoutFields.Type)["sport"]

/** `OPEN_WATER_SWIMMING` → name "Open Water Swimming", slug "open_water_swimming". */
export const sportOf = (activityType: string): Sport => {
  const words = activityType
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w.length > 0)
    .map((w) => w.toLowerCase())
  return {
    id: null,
    name: words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(" "),
    slug: words.join("_")
  }
}

/** Garmin marks hand-entered activities with `manual` and deviceName "unknown". */
export const activitySource = (raw: RawActivitySummary): Source => {
  const manual = raw.manual === true || raw.deviceName === "unknown"
  const device = raw.deviceName != null && raw.deviceName !== "unknown" ? raw.deviceName : null
  return { provider: "garmin", type: manual ? "app" : "watch", device_id: device, app_id: null }
}

/** The workout of an activity summary; `providerId` is the Garmin id customers see. */
export const workoutOf = (raw: RawActivitySummary, providerId: string): typeof WorkoutFields.Type => {
  const start = raw.startTimeInSeconds
  return {
    title: raw.activityName ?? null,
    calendar_date: localDateFromEpochSeconds(start, raw.startTimeOffsetInSeconds ?? 0),
    time_start: timestampFromEpochSeconds(start),
    time_end: timestampFromEpochSeconds(start + raw.durationInSeconds),
    sport: sportOf(raw.activityType),
    average_hr: raw.averageHeartRateInBeatsPerMinute ?? null,
    max_hr: raw.maxHeartRateInBeatsPerMinute ?? null,
    distance: raw.distanceInMeters ?? null,
    // Unlike in dailies, Garmin's activity activeKilocalories already includes BMR.
    calories: raw.activeKilocalories ?? null,
    // Elapsed duration includes pauses, so it is not a moving time.
    moving_time: raw.movingDurationInSeconds ?? null,
    total_elevation_gain: raw.totalElevationGainInMeters ?? null,
    elev_high: null,
    elev_low: null,
    average_speed: raw.averageSpeedInMetersPerSecond ?? null,
    max_speed: raw.maxSpeedInMetersPerSecond ?? null,
    // Activity summaries carry no power; it only appears in activityDetails samples.
    average_watts: null,
    max_watts: null,
    weighted_average_watts: null,
    provider_id: providerId,
    timezone_offset: raw.startTimeOffsetInSeconds ?? null,
    source: activitySource(raw)
  }
}

/**
 * The store key of an activity: its summaryId, else its activityId. Garmin's activity
 * summaryId is the activityId as text, so both forms of one activity share a record.
 */
export const activityKeyOf = (summaryId: string | null | undefined, activityId: number | string | null | undefined): string | undefined =>
  summaryId ?? (activityId == null ? undefined : String(activityId))

export const missingId = new ItemError({ message: "summaryId is missing and activityId is missing" })

const toRecords = (raw: RawActivity): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  const key = activityKeyOf(raw.summaryId, raw.activityId)
  if (key === undefined) return Either.left(missingId)
  return Either.right([{ kind: "summary", resource: "workouts", sourceId: key, data: workoutOf(raw, String(raw.activityId ?? key)) }])
}

const decode = decodeRecord(RawActivity)

export const normalizeActivity: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
