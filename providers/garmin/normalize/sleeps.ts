/**
 * `sleeps` → one `sleep` summary for the main sleep, one `sleep` summary per nap
 * (`acknowledged_nap`, Junction's nap type), plus `respiratory_rate` and `blood_oxygen`
 * batches from the in-sleep samples.
 *
 * The night ends where its last stage in `sleepLevelsMap` ends: Garmin's `durationInSeconds`
 * stops at the last sleep stage and leaves out an awake stage after it.
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
  EpochSeconds,
  MAX_EPOCH_SECONDS,
  LocalDate,
  OffsetSeconds,
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

/** One stage of `sleepLevelsMap`; an entry without both times places nothing. */
export const RawSleepStage = Schema.Struct({
  startTimeInSeconds: opt(EpochSeconds),
  endTimeInSeconds: opt(EpochSeconds)
})

/** One nap of `naps[]`, reported with the night's record. */
export const RawNap = Schema.Struct({
  napStartTimeInSeconds: EpochSeconds,
  napDurationInSeconds: DurationSeconds,
  napOffsetInSeconds: opt(OffsetSeconds),
  napValidation: opt(Schema.String)
})
export type RawNap = typeof RawNap.Type

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
  timeOffsetSleepSpo2: opt(OffsetMap),
  // Stage name (deep, light, rem, awake, …) → its stretches.
  sleepLevelsMap: opt(Schema.Record({ key: Schema.String, value: Schema.NullOr(Schema.Array(RawSleepStage)) })),
  naps: opt(Schema.Array(RawNap))
})
export type RawSleep = typeof RawSleep.Type

/** A stage further than this past the start is not part of the night (bad data), so it is not followed. */
const LONGEST_NIGHT_SECONDS = 86_400

/** The stretches of the levels map with both times, in order, within a day of `start`. */
const stagesOf = (raw: RawSleep): Array<{ readonly level: string; readonly start: number; readonly end: number }> =>
  Object.entries(raw.sleepLevelsMap ?? {}).flatMap(([level, stretches]) =>
    (stretches ?? []).flatMap((s) =>
      s.startTimeInSeconds != null && s.endTimeInSeconds != null && s.endTimeInSeconds > s.startTimeInSeconds &&
        s.endTimeInSeconds <= raw.startTimeInSeconds + LONGEST_NIGHT_SECONDS
        ? [{ level, start: s.startTimeInSeconds, end: s.endTimeInSeconds }]
        : []
    )
  )

/**
 * Where the night ends, and how long the user lay awake: the end of its last stage when that
 * is later than start + durationInSeconds (an awake tail), and the awake stages of the map
 * when they add up to more than `awakeDurationInSeconds` (which can leave the tail out).
 */
const extentOf = (raw: RawSleep): { readonly stop: number; readonly awake: number | null } => {
  const stages = stagesOf(raw)
  const stop = stages.reduce((latest, s) => Math.max(latest, s.end), raw.startTimeInSeconds + raw.durationInSeconds)
  const awakeStages = stages.filter((s) => s.level === "awake")
  const mapped = awakeStages.length === 0 ? null : awakeStages.reduce((sum, s) => sum + Math.max(0, Math.min(s.end, stop) - Math.max(s.start, raw.startTimeInSeconds)), 0)
  const reported = raw.awakeDurationInSeconds ?? null
  return { stop, awake: mapped === null ? reported : Math.max(mapped, reported ?? 0) }
}

/** Percent of the session asleep; `null` for an empty session or unknown stages. */
const efficiency = (total: number | null, duration: number): number | null =>
  total === null || duration === 0 ? null : round1((total / duration) * 100)

/** Breaths per minute during the sleep; zero or below is not a reading. */
const respiration = (raw: RawSleep) => pointsFrom(raw.startTimeInSeconds, raw.timeOffsetSleepRespiration, positive)

const sleep = (raw: RawSleep): typeof SleepFields.Type => {
  const start = raw.startTimeInSeconds
  const { awake, stop } = extentOf(raw)
  const duration = stop - start
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
    duration,
    total,
    awake,
    light: raw.lightSleepDurationInSeconds ?? null,
    rem: raw.remSleepInSeconds ?? null,
    deep: raw.deepSleepDurationInSeconds ?? null,
    score: raw.overallSleepScore?.value ?? null,
    hr_lowest: null,
    hr_average: null,
    efficiency: efficiency(total, duration),
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

/**
 * A nap as a sleep session of its own, dated by its local start. Garmin gives only its span:
 * the nap is sleep (`total` = its length), its stages are not reported.
 */
const nap = (raw: RawSleep, n: RawNap): typeof SleepFields.Type => {
  const offset = n.napOffsetInSeconds ?? raw.startTimeOffsetInSeconds ?? null
  const calendarDate = calendarDateOf(null, n.napStartTimeInSeconds, offset)
  return {
    date: dateOf(calendarDate),
    calendar_date: calendarDate,
    bedtime_start: timestampFromEpochSeconds(n.napStartTimeInSeconds),
    bedtime_stop: timestampFromEpochSeconds(n.napStartTimeInSeconds + n.napDurationInSeconds),
    type: "acknowledged_nap",
    duration: n.napDurationInSeconds,
    total: n.napDurationInSeconds,
    awake: null,
    light: null,
    rem: null,
    deep: null,
    score: null,
    hr_lowest: null,
    hr_average: null,
    efficiency: null,
    latency: null,
    temperature_delta: null,
    average_hrv: null,
    respiratory_rate: null,
    timezone_offset: offset,
    source: watchSource
  }
}

/** A nap keeps its key when the night's record is revised: Garmin re-sends naps with it. */
const napSourceId = (n: RawNap): string => `nap:${n.napStartTimeInSeconds}`

const toRecords = (raw: RawSleep): ReadonlyArray<NormalizedRecord> => {
  const offset = raw.startTimeOffsetInSeconds
  const sourceId = sleepSourceId(raw)
  return [
    { kind: "summary", resource: "sleep", sourceId, data: sleep(raw) },
    ...(raw.naps ?? [])
      .filter((n) => n.napStartTimeInSeconds + n.napDurationInSeconds <= MAX_EPOCH_SECONDS)
      .map((n): NormalizedRecord => ({ kind: "summary", resource: "sleep", sourceId: napSourceId(n), data: nap(raw, n) })),
    ...discreteSeries("respiratory_rate", sourceId, watchSource, offset, respiration(raw)),
    // SpO2 of zero or below is Garmin's "no value".
    ...discreteSeries("blood_oxygen", sourceId, watchSource, offset, pointsFrom(raw.startTimeInSeconds, raw.timeOffsetSleepSpo2, positive))
  ]
}

const decode = decodeRecord(RawSleep)

export const normalizeSleep: Normalizer = (raw) => Either.map(decode(raw), toRecords)
