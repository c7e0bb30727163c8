/**
 * `sleeps` → one `sleep` summary for the main sleep, plus `respiratory_rate` and
 * `blood_oxygen` batches from the in-sleep samples. Naps are not mapped yet.
 *
 * Garmin revises a night: a tentative sleep (AUTO_TENTATIVE, ENHANCED_TENTATIVE) is followed
 * by a final one (AUTO_FINAL, ENHANCED_FINAL) whose summaryId may differ, since it embeds the
 * start and duration, and the start may shift. All records of a night therefore share one
 * key, so the final one replaces the tentative one instead of adding a second sleep.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { SleepFields } from "@wearflow/core/schema"
import { timestampFromEpochSeconds } from "@wearflow/core/time"
import {
  DurationSeconds,
  LocalDate,
  OffsetMap,
  SummaryBase,
  calendarDateOf,
  dateOf,
  discreteSeries,
  mean1,
  opt,
  pointsFrom,
  positive,
  round1,
  sumPresent,
  watchSource
} from "./shared.ts"

export const RawSleep = Schema.Struct({
  ...SummaryBase,
  // Required: a sleep without a length has no bedtime_stop and no efficiency.
  durationInSeconds: DurationSeconds,
  calendarDate: opt(LocalDate),
  deepSleepDurationInSeconds: opt(DurationSeconds),
  lightSleepDurationInSeconds: opt(DurationSeconds),
  remSleepInSeconds: opt(DurationSeconds),
  awakeDurationInSeconds: opt(DurationSeconds),
  // Garmin spells this field two ways. Both are checked but neither is mapped: the
  // normalized schema has no slot for it, it is not sleep (not in `total`) and not awake.
  unmeasurableSleepInSeconds: opt(DurationSeconds),
  unmeasurableSleepDurationInSeconds: opt(DurationSeconds),
  overallSleepScore: opt(
    Schema.Struct({
      value: opt(Schema.Int.pipe(Schema.between(0, 100))),
      qualifierKey: opt(Schema.String)
    })
  ),
  timeOffsetSleepRespiration: opt(OffsetMap),
  timeOffsetSleepSpo2: opt(OffsetMap)
})
export type RawSleep = typeof RawSleep.Type

/** Percent of the session asleep; `null` for an empty session or unknown stages. */
const efficiency = (total: number | null, duration: number): number | null =>
  total === null || duration === 0 ? null : round1((total / duration) * 100)

/** Breaths per minute during the sleep; zero or below is not a reading. */
const respiration = (raw: RawSleep) => pointsFrom(raw.startTimeInSeconds, raw.timeOffsetSleepRespiration, positive)

const sleep = (raw: RawSleep): typeof SleepFields.Type => {
  const start = raw.startTimeInSeconds
  const stop = start + raw.durationInSeconds
  // Older devices have no REM stage, so the total is the sum of the stages reported.
  const total = sumPresent([raw.deepSleepDurationInSeconds, raw.lightSleepDurationInSeconds, raw.remSleepInSeconds])
  // Garmin dates a sleep by the morning it ends, so derive from the wake-up time.
  const calendarDate = calendarDateOf(raw.calendarDate, stop, raw.startTimeOffsetInSeconds)
  return {
    date: dateOf(calendarDate),
    calendar_date: calendarDate,
    bedtime_start: timestampFromEpochSeconds(start),
    bedtime_stop: timestampFromEpochSeconds(stop),
    type: "long_sleep",
    duration: raw.durationInSeconds,
    total,
    awake: raw.awakeDurationInSeconds ?? null,
    light: raw.lightSleepDurationInSeconds ?? null,
    rem: raw.remSleepInSeconds ?? null,
    deep: raw.deepSleepDurationInSeconds ?? null,
    score: raw.overallSleepScore?.value ?? null,
    hr_lowest: null,
    hr_average: null,
    efficiency: efficiency(total, raw.durationInSeconds),
    latency: null,
    temperature_delta: null,
    average_hrv: null,
    respiratory_rate: mean1(respiration(raw).map(([, breaths]) => breaths)),
    timezone_offset: raw.startTimeOffsetInSeconds ?? null,
    source: watchSource
  }
}

/**
 * The store key of a sleep and its samples: the night, as Garmin sends one main sleep per
 * user and `calendarDate`; the summaryId only when Garmin gave no date.
 */
const sleepSourceId = (raw: Pick<RawSleep, "calendarDate" | "summaryId">): string =>
  raw.calendarDate == null ? raw.summaryId : `sleep:${raw.calendarDate}`

const toRecords = (raw: RawSleep): ReadonlyArray<NormalizedRecord> => {
  const offset = raw.startTimeOffsetInSeconds
  const sourceId = sleepSourceId(raw)
  return [
    { kind: "summary", resource: "sleep", sourceId, data: sleep(raw) },
    ...discreteSeries("respiratory_rate", sourceId, watchSource, offset, respiration(raw)),
    // SpO2 of zero or below is Garmin's "no value".
    ...discreteSeries("blood_oxygen", sourceId, watchSource, offset, pointsFrom(raw.startTimeInSeconds, raw.timeOffsetSleepSpo2, positive))
  ]
}

const decode = decodeRecord(RawSleep)

export const normalizeSleep: Normalizer = (raw) => Either.map(decode(raw), toRecords)
