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

/** Body composition measurement (Junction `body`). Masses in kg, shares in percent. */
export const BodyFields = Schema.Struct({
  date: Timestamp,
  calendar_date: CalendarDate,
  measured_at: Timestamp,
  weight: Num.annotations({ description: "kg" }),
  fat: Num.annotations({ description: "body fat, percent" }),
  water_percentage: Num.annotations({ description: "body water, percent" }),
  muscle_mass_kilogram: Num.annotations({ description: "kg" }),
  muscle_mass_percentage: Num.annotations({ description: "muscle mass / weight, percent" }),
  bone_mass_kilogram: Num.annotations({ description: "kg" }),
  bone_mass_percentage: Num.annotations({ description: "bone mass / weight, percent" }),
  body_mass_index: Num.annotations({ description: "kg/m²" }),
  lean_body_mass_kilogram: Num.annotations({ description: "kg" }),
  visceral_fat_index: Num,
  waist_circumference_centimeters: Num.annotations({ description: "cm" }),
  timezone_offset: TimezoneOffset,
  source: Source
})
export const Body = Schema.Struct({ ...SummaryIdentity, ...BodyFields.fields }).annotations({
  identifier: "Body"
})
export type Body = typeof Body.Type

/** Pregnancy details a cycle record may carry. */
export const Pregnancy = Schema.Struct({
  title: Schema.NullOr(Schema.String),
  start_date: Schema.NullOr(CalendarDate),
  due_date: Schema.NullOr(CalendarDate),
  original_due_date: Schema.NullOr(CalendarDate),
  number_of_babies: Schema.NullOr(Schema.String)
})

/** One menstrual cycle (Junction `menstrual_cycle`). Lengths in days, end dates inclusive. */
export const MenstrualCycleFields = Schema.Struct({
  period_start: CalendarDate,
  period_end: Schema.NullOr(CalendarDate).annotations({ description: "last day of the period, inclusive" }),
  cycle_end: Schema.NullOr(CalendarDate).annotations({ description: "last day of the cycle, inclusive" }),
  is_predicted: Schema.NullOr(Schema.Boolean),
  cycle_length: Int.annotations({ description: "days" }),
  predicted_cycle_length: Int.annotations({ description: "days" }),
  period_length: Int.annotations({ description: "days" }),
  day_in_cycle: Int.annotations({ description: "1 = period_start" }),
  current_phase: Int,
  current_phase_type: Schema.NullOr(Schema.String),
  length_of_current_phase: Int.annotations({ description: "days" }),
  days_until_next_phase: Int.annotations({ description: "days" }),
  fertile_window_start: Int.annotations({ description: "day in cycle" }),
  fertile_window_length: Int.annotations({ description: "days" }),
  has_specified_cycle_length: Schema.NullOr(Schema.Boolean),
  has_specified_period_length: Schema.NullOr(Schema.Boolean),
  pregnancy: Schema.NullOr(Pregnancy),
  last_updated_at: Schema.NullOr(Timestamp),
  timezone_offset: TimezoneOffset,
  source: Source
})
export const MenstrualCycle = Schema.Struct({ ...SummaryIdentity, ...MenstrualCycleFields.fields }).annotations({
  identifier: "MenstrualCycle"
})
export type MenstrualCycle = typeof MenstrualCycle.Type

/** A stream column: one entry per point of `time`, `null` where not measured. */
const Stream = Schema.Array(Num)

/**
 * The sampled streams of one workout (Junction `workout_stream`): parallel arrays indexed
 * like `time`.
 */
export const WorkoutStreamFields = Schema.Struct({
  workout_id: Schema.String.annotations({ description: "provider_id of the workouts record" }),
  calendar_date: CalendarDate,
  time_start: Timestamp,
  time: Schema.Array(Schema.Number).annotations({ description: "seconds since time_start" }),
  heartrate: Stream.annotations({ description: "bpm" }),
  lat: Stream.annotations({ description: "degrees" }),
  lng: Stream.annotations({ description: "degrees" }),
  altitude: Stream.annotations({ description: "metres" }),
  velocity_smooth: Stream.annotations({ description: "metres per second" }),
  cadence: Stream.annotations({ description: "steps, revolutions or strokes per minute" }),
  watts: Stream.annotations({ description: "watts" }),
  distance: Stream.annotations({ description: "metres since start" }),
  temperature: Stream.annotations({ description: "°C" }),
  timezone_offset: TimezoneOffset,
  source: Source
})
export const WorkoutStream = Schema.Struct({ ...SummaryIdentity, ...WorkoutStreamFields.fields }).annotations({
  identifier: "WorkoutStream"
})
export type WorkoutStream = typeof WorkoutStream.Type

/** One timeseries point (Junction sample shape), for discrete resources. */
export const Sample = Schema.Struct({
  timestamp: Timestamp,
  timezone_offset: TimezoneOffset,
  type: SourceType,
  unit: Schema.String,
  value: Schema.Number
}).annotations({ identifier: "Sample" })
export type Sample = typeof Sample.Type

/** A value accumulated over `[start, end)`; `timestamp` is `start`. */
export const IntervalSample = Schema.Struct({
  timestamp: Timestamp,
  start: Timestamp,
  end: Timestamp,
  timezone_offset: TimezoneOffset,
  type: SourceType,
  unit: Schema.String,
  value: Schema.Number
}).annotations({ identifier: "IntervalSample" })
export type IntervalSample = typeof IntervalSample.Type

/** One blood-pressure reading: a pair of values, no single `value`. */
export const BloodPressureSample = Schema.Struct({
  timestamp: Timestamp,
  timezone_offset: TimezoneOffset,
  type: SourceType,
  unit: Schema.String,
  systolic: Schema.Number,
  diastolic: Schema.Number
}).annotations({ identifier: "BloodPressureSample" })
export type BloodPressureSample = typeof BloodPressureSample.Type

/** The data of a timeseries event: one source, many samples. */
export const TimeseriesBatchOf = <S extends Schema.Schema.AnyNoContext>(sample: S) =>
  Schema.Struct({ source: Source, data: Schema.Array(sample) })

/** A batch of discrete samples; `TimeseriesBatch<IntervalSample>` etc. for the other shapes. */
export const TimeseriesBatch = TimeseriesBatchOf(Sample)
export interface TimeseriesBatch<S = Sample> {
  readonly source: Source
  readonly data: ReadonlyArray<S>
}

/** Every resource Wearflow produces, with the schema of one stored item (one sample for timeseries). */
export const Resources = {
  activity: { kind: "summary", fields: ActivityFields, schema: Activity },
  sleep: { kind: "summary", fields: SleepFields, schema: Sleep },
  workouts: { kind: "summary", fields: WorkoutFields, schema: Workout },
  body: { kind: "summary", fields: BodyFields, schema: Body },
  menstrual_cycle: { kind: "summary", fields: MenstrualCycleFields, schema: MenstrualCycle },
  workout_stream: { kind: "summary", fields: WorkoutStreamFields, schema: WorkoutStream },
  heartrate: { kind: "timeseries", unit: "bpm", schema: Sample },
  hrv: { kind: "timeseries", unit: "ms", schema: Sample },
  stress_level: { kind: "timeseries", unit: "score", schema: Sample },
  blood_oxygen: { kind: "timeseries", unit: "%", schema: Sample },
  respiratory_rate: { kind: "timeseries", unit: "breaths/min", schema: Sample },
  blood_pressure: { kind: "timeseries", unit: "mmHg", schema: BloodPressureSample },
  body_temperature: { kind: "timeseries", unit: "°C", schema: Sample },
  body_temperature_delta: { kind: "timeseries", unit: "°C", schema: IntervalSample },
  vo2_max: { kind: "timeseries", unit: "mL/kg/min", schema: Sample },
  weight: { kind: "timeseries", unit: "kg", schema: Sample },
  fat: { kind: "timeseries", unit: "%", schema: Sample },
  steps: { kind: "timeseries", unit: "count", schema: IntervalSample },
  calories_active: { kind: "timeseries", unit: "kcal", schema: IntervalSample },
  distance: { kind: "timeseries", unit: "m", schema: IntervalSample }
} as const

export type ResourceName = keyof typeof Resources
export const SummaryResource = Schema.Literal("activity", "sleep", "workouts", "body", "menstrual_cycle", "workout_stream")
export type SummaryResource = typeof SummaryResource.Type
export const TimeseriesResource = Schema.Literal(
  "heartrate",
  "hrv",
  "stress_level",
  "blood_oxygen",
  "respiratory_rate",
  "blood_pressure",
  "body_temperature",
  "body_temperature_delta",
  "vo2_max",
  "weight",
  "fat",
  "steps",
  "calories_active",
  "distance"
)
export type TimeseriesResource = typeof TimeseriesResource.Type
export const ResourceName = Schema.Union(SummaryResource, TimeseriesResource)

/** The fields a normalizer fills for each summary resource (identity is added by the store). */
export interface SummaryFields {
  readonly activity: typeof ActivityFields.Type
  readonly sleep: typeof SleepFields.Type
  readonly workouts: typeof WorkoutFields.Type
  readonly body: typeof BodyFields.Type
  readonly menstrual_cycle: typeof MenstrualCycleFields.Type
  readonly workout_stream: typeof WorkoutStreamFields.Type
}

/** The sample shape of each timeseries resource. */
export type SampleOf<R extends TimeseriesResource> = Schema.Schema.Type<(typeof Resources)[R]["schema"]>

/** The canonical unit of each timeseries resource. */
export const unitOf = <R extends TimeseriesResource>(resource: R): (typeof Resources)[R]["unit"] => Resources[resource].unit

/** The event that ends a deleted user: their data is erased from every table Wearflow owns. */
export const USER_DELETED = "user.deleted"

/** What a `user.deleted` event's `data` holds: who, and when they were deleted and erased. */
export const DeletedUser = Schema.Struct({
  user_id: Schema.UUID,
  client_user_id: Schema.String,
  deleted_at: Timestamp,
  erased_at: Timestamp
}).annotations({ identifier: "DeletedUser" })
export type DeletedUser = typeof DeletedUser.Type

export const EventType = Schema.Union(
  Schema.TemplateLiteral(Schema.Literal("daily", "historical"), ".data.", ResourceName, ".", Schema.Literal("created", "updated")),
  // A record the user deleted at the provider, removed from the store.
  Schema.TemplateLiteral("daily.data.", ResourceName, ".deleted"),
  // A deleted user whose data Wearflow has erased: downstream copies should go too.
  Schema.Literal(USER_DELETED)
)
export type EventType = typeof EventType.Type

const resourceNamed = (name: string | undefined): ResourceName | undefined =>
  name !== undefined && Object.hasOwn(Resources, name) ? (name as ResourceName) : undefined

/**
 * The resource a data event carries (`daily.data.<resource>.created|updated`, which the store
 * emits for new and backfilled data alike); undefined for every other event, deletions and
 * backfill completion notices (`historical.data.*`, data-less) included.
 */
export const resourceOfDataEvent = (eventType: string): ResourceName | undefined =>
  resourceNamed(/^daily\.data\.([a-z0-9_]+)\.(?:created|updated)$/.exec(eventType)?.[1])

/**
 * The resource of a deletion event (`daily.data.<resource>.deleted`): the record `record_id`
 * names is gone from the store, and its copies should go too. Undefined for every other event.
 */
export const resourceOfDeletedEvent = (eventType: string): ResourceName | undefined =>
  resourceNamed(/^daily\.data\.([a-z0-9_]+)\.deleted$/.exec(eventType)?.[1])

/** What a deletion event's `data` holds: which record went, never its values. */
export const DeletedRecord = Schema.Struct({
  /** The stored record's id (the `id` of a summary, the `record_id` of samples). */
  id: Schema.UUID,
  user_id: Schema.UUID,
  provider: Schema.String,
  resource: ResourceName,
  /** The provider's id of the record it came from. */
  source_id: Schema.String,
  deleted_at: Timestamp
}).annotations({ identifier: "DeletedRecord" })
export type DeletedRecord = typeof DeletedRecord.Type

/** The envelope every outbound event uses (Junction's). */
export const EventEnvelope = Schema.Struct({
  event_type: Schema.String,
  data: Schema.Unknown,
  user_id: Schema.UUID,
  client_user_id: Schema.String,
  team_id: Schema.UUID
}).annotations({ identifier: "EventEnvelope" })
export type EventEnvelope = typeof EventEnvelope.Type
