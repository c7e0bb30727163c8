/**
 * Normalized schema v0: Junction-compatible resources every provider normalizes into.
 *
 * Field names and units follow Junction's client-facing objects so that customers moving
 * from Junction keep their parsers. Every field is present; a value the provider did not
 * measure is `null`, never a made-up zero.
 */
import { Schema } from "effect"

/** ISO 8601 date-time with an explicit offset, e.g. `2016-01-11T00:00:00+00:00`. */
export const Timestamp = Schema.String.pipe(
  Schema.pattern(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/),
  Schema.annotations({ identifier: "Timestamp", description: "ISO 8601 date-time with offset" })
)

/** A local calendar date, `YYYY-MM-DD`. */
export const CalendarDate = Schema.String.pipe(
  Schema.pattern(/^\d{4}-\d{2}-\d{2}$/),
  Schema.annotations({ identifier: "CalendarDate", description: "local calendar date YYYY-MM-DD" })
)

/** Seconds east of UTC of the device's local time when the record was taken. */
export const TimezoneOffset = Schema.NullOr(Schema.Int).annotations({
  description: "device-local offset from UTC in seconds"
})

export const SourceType = Schema.Literal(
  "unknown",
  "app",
  "multiple_sources",
  "watch",
  "phone",
  "ring",
  "chest_strap",
  "scale",
  "cuff",
  "manual_scan",
  "automatic",
  "fingerprick",
  "lab",
  "exercise_machine",
  "earphone"
)
export type SourceType = typeof SourceType.Type

/** Where a record came from. */
export const Source = Schema.Struct({
  provider: Schema.String,
  type: SourceType,
  device_id: Schema.NullOr(Schema.String),
  app_id: Schema.NullOr(Schema.String)
})
export type Source = typeof Source.Type

const Num = Schema.NullOr(Schema.Number)
const Int = Schema.NullOr(Schema.Int)

/** Fields the store adds to every summary: identity and bookkeeping. */
const SummaryIdentity = {
  id: Schema.UUID,
  user_id: Schema.UUID,
  created_at: Timestamp,
  updated_at: Timestamp
}

/** Daily activity summary (Junction `activity`). */
export const ActivityFields = Schema.Struct({
  date: Timestamp,
  calendar_date: CalendarDate,
  calories_total: Num.annotations({ description: "kcal, active + basal" }),
  calories_active: Num.annotations({ description: "kcal, excluding basal metabolism" }),
  steps: Int,
  daily_movement: Num.annotations({ description: "distance in metres" }),
  low: Num.annotations({ description: "minutes of low-intensity activity" }),
  medium: Num.annotations({ description: "minutes of moderate-intensity activity" }),
  high: Num.annotations({ description: "minutes of vigorous-intensity activity" }),
  floors_climbed: Int,
  heart_rate: Schema.NullOr(
    Schema.Struct({
      avg_bpm: Num,
      min_bpm: Num,
      max_bpm: Num,
      resting_bpm: Num,
      avg_walking_bpm: Num
    })
  ),
  wheelchair_use: Schema.NullOr(Schema.Boolean),
  wheelchair_push: Int,
  timezone_offset: TimezoneOffset,
  source: Source
})
export const Activity = Schema.Struct({ ...SummaryIdentity, ...ActivityFields.fields }).annotations({
  identifier: "Activity"
})
export type Activity = typeof Activity.Type

export const SleepType = Schema.Literal("long_sleep", "short_sleep", "acknowledged_nap", "unknown")

/** One sleep session (Junction `sleep`). Durations in seconds. */
export const SleepFields = Schema.Struct({
  date: Timestamp,
  calendar_date: CalendarDate,
  bedtime_start: Timestamp,
  bedtime_stop: Timestamp,
  type: SleepType,
  duration: Schema.Number.annotations({ description: "seconds from bedtime_start to bedtime_stop" }),
  total: Num.annotations({ description: "seconds asleep (light + deep + rem)" }),
  awake: Num,
  light: Num,
  rem: Num,
  deep: Num,
  score: Int.annotations({ description: "0-100" }),
  hr_lowest: Num,
  hr_average: Num,
  efficiency: Num.annotations({ description: "percent of the session asleep" }),
  latency: Num,
  temperature_delta: Num,
  average_hrv: Num,
  respiratory_rate: Num.annotations({ description: "breaths per minute, session average" }),
  timezone_offset: TimezoneOffset,
  source: Source
})
export const Sleep = Schema.Struct({ ...SummaryIdentity, ...SleepFields.fields }).annotations({
  identifier: "Sleep"
})
export type Sleep = typeof Sleep.Type

export const Sport = Schema.Struct({
  id: Int,
  name: Schema.String,
  slug: Schema.String
})

/** One workout (Junction `workouts`). */
export const WorkoutFields = Schema.Struct({
  title: Schema.NullOr(Schema.String),
  calendar_date: CalendarDate,
  time_start: Timestamp,
  time_end: Timestamp,
  sport: Sport,
  average_hr: Num,
  max_hr: Num,
  distance: Num.annotations({ description: "metres" }),
  calories: Num.annotations({ description: "kcal" }),
  moving_time: Num.annotations({ description: "seconds" }),
  total_elevation_gain: Num,
  elev_high: Num,
  elev_low: Num,
  average_speed: Num.annotations({ description: "metres per second" }),
  max_speed: Num,
  average_watts: Num,
  max_watts: Num,
  weighted_average_watts: Num,
  provider_id: Schema.String,
  timezone_offset: TimezoneOffset,
  source: Source
})
export const Workout = Schema.Struct({ ...SummaryIdentity, ...WorkoutFields.fields }).annotations({
  identifier: "Workout"
})
export type Workout = typeof Workout.Type

/** One timeseries point (Junction sample shape). */
export const Sample = Schema.Struct({
  timestamp: Timestamp,
  timezone_offset: TimezoneOffset,
  type: SourceType,
  unit: Schema.String,
  value: Schema.Number
}).annotations({ identifier: "Sample" })
export type Sample = typeof Sample.Type

/** The data of a timeseries event: one source, many samples. */
export const TimeseriesBatch = Schema.Struct({
  source: Source,
  data: Schema.Array(Sample)
})
export type TimeseriesBatch = typeof TimeseriesBatch.Type

/** Every resource Wearflow produces, with the schema of one stored item. */
export const Resources = {
  activity: { kind: "summary", fields: ActivityFields, schema: Activity },
  sleep: { kind: "summary", fields: SleepFields, schema: Sleep },
  workouts: { kind: "summary", fields: WorkoutFields, schema: Workout },
  heartrate: { kind: "timeseries", unit: "bpm", schema: Sample }
} as const

export type ResourceName = keyof typeof Resources
export const SummaryResource = Schema.Literal("activity", "sleep", "workouts")
export type SummaryResource = typeof SummaryResource.Type
export const TimeseriesResource = Schema.Literal("heartrate")
export type TimeseriesResource = typeof TimeseriesResource.Type
export const ResourceName = Schema.Union(SummaryResource, TimeseriesResource)

/** The fields a normalizer fills for each summary resource (identity is added by the store). */
export interface SummaryFields {
  readonly activity: typeof ActivityFields.Type
  readonly sleep: typeof SleepFields.Type
  readonly workouts: typeof WorkoutFields.Type
}

export const EventType = Schema.TemplateLiteral(
  Schema.Literal("daily", "historical"),
  ".data.",
  ResourceName,
  ".",
  Schema.Literal("created", "updated")
)
export type EventType = typeof EventType.Type

/** The envelope every outbound event uses (Junction's). */
export const EventEnvelope = Schema.Struct({
  event_type: Schema.String,
  data: Schema.Unknown,
  user_id: Schema.UUID,
  client_user_id: Schema.String,
  team_id: Schema.UUID
}).annotations({ identifier: "EventEnvelope" })
export type EventEnvelope = typeof EventEnvelope.Type
