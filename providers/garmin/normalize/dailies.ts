/**
 * `dailies` → one `activity` summary, plus a `heartrate` batch when the day has samples and a
 * `stress_level` batch when it has stress values.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { ActivityFields } from "@wearflow/core/schema"
import {
  Count,
  DurationSeconds,
  Finite,
  LocalDate,
  OffsetMap,
  type Point,
  SummaryBase,
  calendarDateOf,
  dateOf,
  discreteSeries,
  mean1,
  minutes,
  nonNegative,
  opt,
  pointsFrom,
  positive,
  sumBoth,
  watchSource
} from "./shared.ts"

export const RawDaily = Schema.Struct({
  ...SummaryBase,
  calendarDate: opt(LocalDate),
  activeKilocalories: opt(Finite),
  bmrKilocalories: opt(Finite),
  steps: opt(Count),
  pushes: opt(Count),
  distanceInMeters: opt(Finite),
  moderateIntensityDurationInSeconds: opt(DurationSeconds),
  vigorousIntensityDurationInSeconds: opt(DurationSeconds),
  floorsClimbed: opt(Count),
  minHeartRateInBeatsPerMinute: opt(Finite),
  maxHeartRateInBeatsPerMinute: opt(Finite),
  restingHeartRateInBeatsPerMinute: opt(Finite),
  timeOffsetHeartRateSamples: opt(OffsetMap),
  // 3-minute stress levels (present in some dailies); negative values are status codes.
  timeOffsetStressLevelValues: opt(OffsetMap)
})
export type RawDaily = typeof RawDaily.Type

type HeartRate = (typeof ActivityFields.Type)["heart_rate"]

/**
 * The day's heart-rate figures. `avg_bpm` is the mean of the day's samples because Garmin's
 * `averageHeartRateInBeatsPerMinute` is a 7-day average. `null` when Garmin sent no HR at all.
 */
const heartRate = (raw: RawDaily, samples: ReadonlyArray<Point>): HeartRate => {
  const hr = {
    avg_bpm: mean1(samples.map(([, bpm]) => bpm)),
    min_bpm: raw.minHeartRateInBeatsPerMinute ?? null,
    max_bpm: raw.maxHeartRateInBeatsPerMinute ?? null,
    resting_bpm: raw.restingHeartRateInBeatsPerMinute ?? null,
    avg_walking_bpm: null
  }
  return Object.values(hr).every((v) => v === null) ? null : hr
}

const activity = (raw: RawDaily, samples: ReadonlyArray<Point>): typeof ActivityFields.Type => {
  const calendarDate = calendarDateOf(raw.calendarDate, raw.startTimeInSeconds, raw.startTimeOffsetInSeconds)
  const pushes = raw.pushes ?? null
  return {
    date: dateOf(calendarDate),
    calendar_date: calendarDate,
    // Garmin's activeKilocalories excludes BMR in dailies, so the total adds it back.
    calories_total: sumBoth(raw.activeKilocalories, raw.bmrKilocalories),
    calories_active: raw.activeKilocalories ?? null,
    steps: raw.steps ?? null,
    daily_movement: raw.distanceInMeters ?? null,
    // Garmin reports no low-intensity duration; the sedentary remainder is not "low".
    low: null,
    medium: minutes(raw.moderateIntensityDurationInSeconds),
    high: minutes(raw.vigorousIntensityDurationInSeconds),
    floors_climbed: raw.floorsClimbed ?? null,
    heart_rate: heartRate(raw, samples),
    // Pushes are only counted in Garmin's wheelchair mode; zero or absent says nothing.
    wheelchair_use: pushes !== null && pushes > 0 ? true : null,
    wheelchair_push: pushes,
    timezone_offset: raw.startTimeOffsetInSeconds ?? null,
    source: watchSource
  }
}

const toRecords = (raw: RawDaily): ReadonlyArray<NormalizedRecord> => {
  const start = raw.startTimeInSeconds
  const offset = raw.startTimeOffsetInSeconds
  // A bpm of zero or below is not a reading.
  const samples = pointsFrom(start, raw.timeOffsetHeartRateSamples, positive)
  const summary: NormalizedRecord = {
    kind: "summary",
    resource: "activity",
    sourceId: raw.summaryId,
    data: activity(raw, samples)
  }
  return [
    summary,
    ...discreteSeries("heartrate", raw.summaryId, watchSource, offset, samples),
    ...discreteSeries("stress_level", raw.summaryId, watchSource, offset, pointsFrom(start, raw.timeOffsetStressLevelValues, nonNegative))
  ]
}

const decode = decodeRecord(RawDaily)

export const normalizeDaily: Normalizer = (raw) => Either.map(decode(raw), toRecords)
