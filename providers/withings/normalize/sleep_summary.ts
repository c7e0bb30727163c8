/**
 * `sleep_summary` (one night of sleep getsummary `body.series`) → one `sleep` summary keyed
 * `sleep:<id>` (Withings revises a night under the same id).
 *
 * Type: Withings does not tell naps from nights; a span of 3 h or more is `long_sleep`, a
 * shorter one `short_sleep` (Junction's type for detected sleep under 3 h). Efficiency is a
 * 0–1 ratio at Withings and a percentage in the schema. `-1` is "no value".
 *
 * Not mapped, for want of a field: wake-up count and latency, WASO, REM episode and
 * out-of-bed counts, HR and breathing maxima and minima (but the lowest heart rate), breathing
 * disturbances and apnea–hypopnea index, snoring, night events, the HRV start/end averages
 * (`average_hrv` would be neither), movement and chest-movement figures, core body temperature.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { SleepFields } from "@wearflow/core/schema"
import { DeviceId, EpochSeconds, Finite, LocalDate, WithingsId, ZoneName, dateOf, isoOf, localDateOf, measured, offsetAt, opt, present, round2, sourceOf } from "./shared.ts"

/** The record key of a night. */
export const sleepSourceId = (id: number | string): string => `sleep:${id}`

export const RawSleepSummary = Schema.Struct({
  id: WithingsId,
  timezone: opt(ZoneName),
  // 16 a tracker, 32 a sleep monitor; model_id names the device.
  model: opt(Schema.Int),
  model_id: opt(Schema.Int),
  hash_deviceid: opt(DeviceId),
  startdate: EpochSeconds,
  enddate: EpochSeconds,
  // The night's day (the wake-up day).
  date: opt(LocalDate),
  data: opt(
    Schema.Struct({
      total_sleep_time: opt(Finite),
      // The asleep time of nights from other sources, which have no stages.
      asleepduration: opt(Finite),
      lightsleepduration: opt(Finite),
      deepsleepduration: opt(Finite),
      remsleepduration: opt(Finite),
      wakeupduration: opt(Finite),
      sleep_latency: opt(Finite),
      // The deprecated name of sleep_latency.
      durationtosleep: opt(Finite),
      sleep_efficiency: opt(Finite),
      sleep_score: opt(Schema.Int),
      hr_average: opt(Finite),
      hr_min: opt(Finite),
      rr_average: opt(Finite)
    })
  )
})
export type RawSleepSummary = typeof RawSleepSummary.Type

/** Junction's line between a night and a short sleep. */
const LONG_SLEEP_SECONDS = 3 * 3600

const endsBeforeStart = new ItemError({ message: "enddate is before startdate" })

const toRecords = (raw: RawSleepSummary): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  if (raw.enddate < raw.startdate) return Either.left(endsBeforeStart)
  const d = raw.data ?? {}
  const offset = offsetAt(raw.timezone, raw.startdate)
  const calendarDate = raw.date ?? localDateOf(raw.enddate, offset)
  const duration = raw.enddate - raw.startdate
  const efficiency = present(d.sleep_efficiency)
  const score = present(d.sleep_score)
  const data: typeof SleepFields.Type = {
    date: dateOf(calendarDate),
    calendar_date: calendarDate,
    bedtime_start: isoOf(raw.startdate),
    bedtime_stop: isoOf(raw.enddate),
    type: duration >= LONG_SLEEP_SECONDS ? "long_sleep" : "short_sleep",
    duration,
    total: present(d.total_sleep_time) ?? present(d.asleepduration),
    awake: present(d.wakeupduration),
    light: present(d.lightsleepduration),
    rem: present(d.remsleepduration),
    deep: present(d.deepsleepduration),
    score: score !== null && score <= 100 ? score : null,
    hr_lowest: measured(d.hr_min),
    hr_average: measured(d.hr_average),
    efficiency: efficiency === null || efficiency > 1 ? null : round2(efficiency * 100),
    latency: present(d.sleep_latency) ?? present(d.durationtosleep),
    temperature_delta: null,
    average_hrv: null,
    respiratory_rate: measured(d.rr_average),
    timezone_offset: offset,
    source: sourceOf(raw.model_id, raw.hash_deviceid)
  }
  return Either.right([{ kind: "summary", resource: "sleep", sourceId: sleepSourceId(raw.id), data }])
}

const decode = decodeRecord(RawSleepSummary)

export const normalizeSleepSummary: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
