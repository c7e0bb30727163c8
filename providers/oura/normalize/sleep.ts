/**
 * `sleep` (one sleep period; a day can have several) → one `sleep` summary, plus a `heartrate`
 * and an `hrv` batch from the period's 5-minute samples and one `respiratory_rate` sample.
 * Every record is keyed by the period's id: Oura revises a period under the same id.
 *
 * Types: `long_sleep` (> 3 h) is Junction's `long_sleep`; `sleep` (a nap of 15 min–3 h) and
 * `late_nap` (a nap counted for the next day) are `short_sleep`, Junction's type for detected
 * sleep under 3 h (`acknowledged_nap` is for naps the user confirmed, which Oura does not
 * say). `rest` (a detection Oura rejected) and `deleted` (the user deleted it) are no sleep
 * and give no records; a type Oura adds later maps to `unknown`.
 *
 * Not mapped, for want of a field: the phase strings (`sleep_phase_5_min`, `_30_sec`; the
 * normalized schema has no hypnogram), `movement_30_sec`, `restless_periods`, the readiness
 * score and contributors, the score deltas, `period`, `low_battery_alert`, and the
 * algorithm fields. The night's sleep score is a `daily_sleep` document, not this one.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { SleepFields } from "@wearflow/core/schema"
import {
  DocumentId,
  DurationSeconds,
  Finite,
  LocalDate,
  LocalizedDateTime,
  RawSampleSeries,
  type Instant,
  discreteSeries,
  instantOf,
  isoOf,
  localDateOf,
  dateOf,
  opt,
  pointsOf,
  positive,
  ringSource
} from "./shared.ts"

/** Only the type is read first: a rejected or deleted period needs nothing else. */
const RawSleepType = Schema.Struct({ id: DocumentId, type: Schema.String })

export const RawSleep = Schema.Struct({
  id: DocumentId,
  type: Schema.String,
  // The wake-up day; derived from bedtime_end when absent.
  day: opt(LocalDate),
  bedtime_start: LocalizedDateTime,
  bedtime_end: LocalizedDateTime,
  total_sleep_duration: opt(DurationSeconds),
  awake_time: opt(DurationSeconds),
  light_sleep_duration: opt(DurationSeconds),
  rem_sleep_duration: opt(DurationSeconds),
  deep_sleep_duration: opt(DurationSeconds),
  latency: opt(DurationSeconds),
  efficiency: opt(Finite),
  average_breath: opt(Finite),
  average_heart_rate: opt(Finite),
  lowest_heart_rate: opt(Finite),
  average_hrv: opt(Finite),
  heart_rate: opt(RawSampleSeries),
  hrv: opt(RawSampleSeries),
  readiness: opt(Schema.Struct({ temperature_deviation: opt(Finite) })),
  ring_id: opt(Schema.String)
})
export type RawSleep = typeof RawSleep.Type

type SleepType = (typeof SleepFields.Type)["type"]

/** Periods that are no sleep: Oura rejected the detection, or the user deleted it. */
const notSleep = new Set(["rest", "deleted"])

const sleepTypes: Readonly<Record<string, SleepType>> = { long_sleep: "long_sleep", sleep: "short_sleep", late_nap: "short_sleep" }

/** Oura reports 255 as the lowest heart rate of a period it measured no heart rate in. */
const heartRate = (bpm: number | null | undefined): number | null => (bpm != null && bpm > 0 && bpm < 255 ? bpm : null)

const sleep = (raw: RawSleep, start: Instant, end: Instant): typeof SleepFields.Type => {
  const calendarDate = raw.day ?? localDateOf(end)
  return {
    date: dateOf(calendarDate),
    calendar_date: calendarDate,
    bedtime_start: isoOf(start.ms),
    bedtime_stop: isoOf(end.ms),
    type: sleepTypes[raw.type] ?? "unknown",
    // time_in_bed is the same span; the instants are what bedtime_start/stop say.
    duration: (end.ms - start.ms) / 1000,
    total: raw.total_sleep_duration ?? null,
    awake: raw.awake_time ?? null,
    light: raw.light_sleep_duration ?? null,
    rem: raw.rem_sleep_duration ?? null,
    deep: raw.deep_sleep_duration ?? null,
    score: null,
    hr_lowest: heartRate(raw.lowest_heart_rate),
    hr_average: heartRate(raw.average_heart_rate),
    efficiency: raw.efficiency ?? null,
    latency: raw.latency ?? null,
    temperature_delta: raw.readiness?.temperature_deviation ?? null,
    average_hrv: raw.average_hrv ?? null,
    respiratory_rate: raw.average_breath ?? null,
    timezone_offset: start.offset,
    source: ringSource(raw.ring_id)
  }
}

const endsBeforeStart = new ItemError({ message: "bedtime_end is before bedtime_start" })

const toRecords = (raw: RawSleep): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  const start = instantOf(raw.bedtime_start)
  const end = instantOf(raw.bedtime_end)
  if (end.ms < start.ms) return Either.left(endsBeforeStart)
  const source = ringSource(raw.ring_id)
  const breath = raw.average_breath
  return Either.right([
    { kind: "summary", resource: "sleep", sourceId: raw.id, data: sleep(raw, start, end) },
    ...discreteSeries("heartrate", raw.id, source, start.offset, pointsOf(raw.heart_rate, positive)),
    ...discreteSeries("hrv", raw.id, source, start.offset, pointsOf(raw.hrv, positive)),
    // Oura gives only the period's average breathing rate: one sample at bedtime_start, the
    // start of the span it describes (the convention of interval samples).
    ...discreteSeries("respiratory_rate", raw.id, source, start.offset, breath != null && positive(breath) ? [[start.ms, breath]] : [])
  ])
}

const decodeType = decodeRecord(RawSleepType)
const decode = decodeRecord(RawSleep)

export const normalizeSleep: Normalizer = (raw) =>
  Either.flatMap(decodeType(raw), ({ type }) => (notSleep.has(type) ? Either.right([]) : Either.flatMap(decode(raw), toRecords)))
