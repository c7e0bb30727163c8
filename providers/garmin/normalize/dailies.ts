/** `dailies` → one `activity` summary, plus a `heartrate` batch when the day has samples. */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { CalendarDate, type ActivityFields } from "@wearflow/core/schema"
import { timestampFromEpochSeconds } from "@wearflow/core/time"
import {
  Count,
  DurationSeconds,
  Finite,
  OffsetMap,
  SummaryBase,
  calendarDateOf,
  dateOf,
  mean1,
  minutes,
  offsetEntries,
  opt,
  sumBoth,
  watchSource
} from "./shared.ts"

export const RawDaily = Schema.Struct({
  ...SummaryBase,
  calendarDate: opt(CalendarDate),
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
  timeOffsetHeartRateSamples: opt(OffsetMap)
})
export type RawDaily = typeof RawDaily.Type

type HeartRate = (typeof ActivityFields.Type)["heart_rate"]

/**
 * The day's heart-rate figures. `avg_bpm` is the mean of the day's samples because Garmin's
 * `averageHeartRateInBeatsPerMinute` is a 7-day average. `null` when Garmin sent no HR at all.
 */
const heartRate = (raw: RawDaily, samples: ReadonlyArray<[number, number]>): HeartRate => {
  const hr = {
    avg_bpm: mean1(samples.map(([, bpm]) => bpm)),
    min_bpm: raw.minHeartRateInBeatsPerMinute ?? null,
    max_bpm: raw.maxHeartRateInBeatsPerMinute ?? null,
    resting_bpm: raw.restingHeartRateInBeatsPerMinute ?? null,
    avg_walking_bpm: null
  }
  return Object.values(hr).every((v) => v === null) ? null : hr
}

const activity = (raw: RawDaily, samples: ReadonlyArray<[number, number]>): typeof ActivityFields.Type => {
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

/** One `heartrate` batch from the 15-second samples, keyed like the summary. */
const heartRateSeries = (raw: RawDaily, samples: ReadonlyArray<[number, number]>): NormalizedRecord => ({
  kind: "timeseries",
  resource: "heartrate",
  sourceId: raw.summaryId,
  data: {
    source: watchSource,
    data: samples.map(([offset, bpm]) => ({
      timestamp: timestampFromEpochSeconds(raw.startTimeInSeconds + offset),
      timezone_offset: raw.startTimeOffsetInSeconds ?? null,
      type: "watch" as const,
      unit: "bpm",
      value: bpm
    }))
  }
})

const toRecords = (raw: RawDaily): ReadonlyArray<NormalizedRecord> => {
  const samples = offsetEntries(raw.timeOffsetHeartRateSamples)
  const summary: NormalizedRecord = {
    kind: "summary",
    resource: "activity",
    sourceId: raw.summaryId,
    data: activity(raw, samples)
  }
  return samples.length === 0 ? [summary] : [summary, heartRateSeries(raw, samples)]
}

const decode = decodeRecord(RawDaily)

export const normalizeDaily: Normalizer = (raw) => Either.map(decode(raw), toRecords)
