/**
 * `activityDetails` → the activity's `workouts` summary (from `summary`, completed from the
 * samples), one `workout_stream` with the sampled streams, and a `heartrate` batch.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { WorkoutFields, WorkoutStreamFields } from "@wearflow/core/schema"
import { RawActivitySummary, activityKeyOf, activitySource, missingId, workoutOf } from "./activities.ts"
import { ActivityId, DurationSeconds, EpochSeconds, Finite, discreteSeries, mean1, opt, positive } from "./shared.ts"

/** One point of `samples[]` (up to one per second). */
export const RawDetailSample = Schema.Struct({
  // Required: a point without a time cannot be placed in the stream.
  startTimeInSeconds: EpochSeconds,
  latitudeInDegree: opt(Finite),
  longitudeInDegree: opt(Finite),
  elevationInMeters: opt(Finite),
  // Garmin's spelling is "Celcius"; the correct spelling is accepted too.
  airTemperatureCelcius: opt(Finite),
  airTemperatureCelsius: opt(Finite),
  heartRate: opt(Finite),
  speedMetersPerSecond: opt(Finite),
  stepsPerMinute: opt(Finite),
  bikeCadenceInRPM: opt(Finite),
  swimCadenceInStrokesPerMinute: opt(Finite),
  wheelChairCadenceInPushesPerMinute: opt(Finite),
  powerInWatts: opt(Finite),
  totalDistanceInMeters: opt(Finite),
  clockDurationInSeconds: opt(DurationSeconds),
  timerDurationInSeconds: opt(DurationSeconds),
  movingDurationInSeconds: opt(DurationSeconds)
})
export type RawDetailSample = typeof RawDetailSample.Type

export const RawActivityDetail = Schema.Struct({
  // Either id names the details: some senders give only activityId.
  summaryId: opt(Schema.String),
  activityId: opt(ActivityId),
  summary: RawActivitySummary,
  samples: opt(Schema.Array(RawDetailSample))
})
export type RawActivityDetail = typeof RawActivityDetail.Type

/** Garmin names the details of activity `X` `X-detail`; the workout is the activity's own. */
const activitySummaryId = (summaryId: string): string => summaryId.replace(/-detail$/, "")

/**
 * The store keys of the details (stream, samples) and of their activity's workout: from the
 * summaryId, else from the activityId, the summary's first. Real pushes have been seen where
 * the top-level activityId differs from the summary's, and the summary's is the one the
 * summaryId carries.
 */
const keysOf = (raw: RawActivityDetail): { readonly detail: string; readonly activity: string } | undefined => {
  if (raw.summaryId != null) return { detail: raw.summaryId, activity: activitySummaryId(raw.summaryId) }
  const activity = activityKeyOf(undefined, raw.summary.activityId ?? raw.activityId)
  return activity === undefined ? undefined : { detail: `${activity}-detail`, activity }
}

/**
 * The id of the workout: the summary's activityId (what `activities` reports), else the
 * record's, else the activity's key.
 */
const providerIdOf = (raw: RawActivityDetail, activityKey: string): string =>
  String(raw.summary.activityId ?? raw.activityId ?? activityKey)

const present = (values: ReadonlyArray<number | null | undefined>): Array<number> => values.filter((v): v is number => v != null)

// Reductions rather than Math.max(...values): a day-long stream would overflow the call stack.
const maxOf = (values: ReadonlyArray<number>): number | null => (values.length === 0 ? null : values.reduce((a, b) => (b > a ? b : a)))
const minOf = (values: ReadonlyArray<number>): number | null => (values.length === 0 ? null : values.reduce((a, b) => (b < a ? b : a)))

/** The summary's workout, with elevation range and power taken from the samples. */
const workout = (raw: RawActivityDetail, activityKey: string, samples: ReadonlyArray<RawDetailSample>): typeof WorkoutFields.Type => {
  const elevations = present(samples.map((s) => s.elevationInMeters))
  const watts = present(samples.map((s) => s.powerInWatts))
  return {
    ...workoutOf(raw.summary, providerIdOf(raw, activityKey)),
    elev_high: maxOf(elevations),
    elev_low: minOf(elevations),
    average_watts: mean1(watts),
    max_watts: maxOf(watts)
  }
}

const cadenceOf = (s: RawDetailSample): number | null =>
  s.stepsPerMinute ?? s.bikeCadenceInRPM ?? s.swimCadenceInStrokesPerMinute ?? s.wheelChairCadenceInPushesPerMinute ?? null

const stream = (
  raw: RawActivityDetail,
  samples: ReadonlyArray<RawDetailSample>,
  data: typeof WorkoutFields.Type
): typeof WorkoutStreamFields.Type => {
  const start = raw.summary.startTimeInSeconds
  return {
    workout_id: data.provider_id,
    calendar_date: data.calendar_date,
    time_start: data.time_start,
    // Garmin's own elapsed wall-clock time since the start, else the difference of timestamps.
    time: samples.map((s) => s.clockDurationInSeconds ?? s.startTimeInSeconds - start),
    heartrate: samples.map((s) => (s.heartRate != null && positive(s.heartRate) ? s.heartRate : null)),
    lat: samples.map((s) => s.latitudeInDegree ?? null),
    lng: samples.map((s) => s.longitudeInDegree ?? null),
    altitude: samples.map((s) => s.elevationInMeters ?? null),
    velocity_smooth: samples.map((s) => s.speedMetersPerSecond ?? null),
    cadence: samples.map(cadenceOf),
    watts: samples.map((s) => s.powerInWatts ?? null),
    distance: samples.map((s) => s.totalDistanceInMeters ?? null),
    temperature: samples.map((s) => s.airTemperatureCelcius ?? s.airTemperatureCelsius ?? null),
    timezone_offset: data.timezone_offset,
    source: data.source
  }
}

const toRecords = (raw: RawActivityDetail): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  const keys = keysOf(raw)
  if (keys === undefined) return Either.left(missingId)
  const samples = [...(raw.samples ?? [])].sort((a, b) => a.startTimeInSeconds - b.startTimeInSeconds)
  const data = workout(raw, keys.activity, samples)
  const records: Array<NormalizedRecord> = [{ kind: "summary", resource: "workouts", sourceId: keys.activity, data }]
  if (samples.length === 0) return Either.right(records)
  return Either.right([
    ...records,
    { kind: "summary", resource: "workout_stream", sourceId: keys.detail, data: stream(raw, samples, data) },
    ...discreteSeries(
      "heartrate",
      keys.detail,
      activitySource(raw.summary),
      raw.summary.startTimeOffsetInSeconds,
      samples.flatMap((s) => (s.heartRate != null && positive(s.heartRate) ? [[s.startTimeInSeconds, s.heartRate] as const] : []))
    )
  ])
}

const decode = decodeRecord(RawActivityDetail)

export const normalizeActivityDetail: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
