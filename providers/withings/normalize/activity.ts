/**
 * `activity` (one day of getactivity `body.activities`) → one `activity` summary. Withings
 * rewrites today's row as the day goes, and a day can have one row per source (a Withings
 * tracker, Google Fit, …), so the record key is the day and the source:
 * `activity:<date>:<device id, else model-<modelid>>`.
 *
 * Not mapped, for want of a field: `active` (moderate + intense, derivable), the heart-rate
 * zone durations (`hr_zone_0..3`), `brand`, and the goals.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { ActivityFields } from "@wearflow/core/schema"
import { DeviceId, Finite, LocalDate, ZoneName, dateOf, deviceKey, measured, minutes, offsetAt, opt, present, sourceOf } from "./shared.ts"

/** The record key of one source's activity day. */
export const activitySourceId = (date: string, deviceId: string | null | undefined, modelId: number | null | undefined): string =>
  `activity:${date}:${deviceKey(deviceId, modelId)}`

export const RawActivity = Schema.Struct({
  // Required: the activity day is the record's only date.
  date: LocalDate,
  timezone: opt(ZoneName),
  deviceid: opt(DeviceId),
  hash_deviceid: opt(DeviceId),
  brand: opt(Schema.Int),
  is_tracker: opt(Schema.Boolean),
  modelid: opt(Schema.Int),
  model_id: opt(Schema.Int),
  steps: opt(Schema.Int),
  distance: opt(Finite),
  elevation: opt(Finite),
  soft: opt(Finite),
  moderate: opt(Finite),
  intense: opt(Finite),
  calories: opt(Finite),
  totalcalories: opt(Finite),
  hr_average: opt(Finite),
  hr_min: opt(Finite),
  hr_max: opt(Finite)
})
export type RawActivity = typeof RawActivity.Type

/** Withings' brand for data from outside its own devices and app (Google Fit, HealthKit, …). */
const EXTERNAL = 18

const toRecords = (raw: RawActivity): ReadonlyArray<NormalizedRecord> => {
  const modelId = raw.modelid ?? raw.model_id
  const deviceId = raw.deviceid ?? raw.hash_deviceid
  const source = sourceOf(modelId, deviceId, raw.brand === EXTERNAL ? "app" : raw.is_tracker === true ? "watch" : undefined)
  const [avg, min, max] = [measured(raw.hr_average), measured(raw.hr_min), measured(raw.hr_max)]
  const steps = present(raw.steps)
  const floors = present(raw.elevation)
  const data: typeof ActivityFields.Type = {
    date: dateOf(raw.date),
    calendar_date: raw.date,
    calories_total: present(raw.totalcalories),
    calories_active: present(raw.calories),
    steps,
    daily_movement: present(raw.distance),
    low: minutes(present(raw.soft)),
    medium: minutes(present(raw.moderate)),
    high: minutes(present(raw.intense)),
    // Withings counts floors as a number; the normalized field holds whole floors.
    floors_climbed: floors === null ? null : Math.round(floors),
    heart_rate: avg === null && min === null && max === null ? null : { avg_bpm: avg, min_bpm: min, max_bpm: max, resting_bpm: null, avg_walking_bpm: null },
    wheelchair_use: null,
    wheelchair_push: null,
    // The zone's offset at midday UTC of the day: a day has one offset but on DST change days.
    timezone_offset: offsetAt(raw.timezone, Date.parse(`${raw.date}T12:00:00Z`) / 1000),
    source
  }
  return [{ kind: "summary", resource: "activity", sourceId: activitySourceId(raw.date, deviceId, modelId), data }]
}

const decode = decodeRecord(RawActivity)

export const normalizeActivity: Normalizer = (raw) => Either.map(decode(raw), toRecords)
