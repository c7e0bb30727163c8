/**
 * Oura normalizers, one per data type (the webhook `data_type`, which is also the collection
 * name but for `vo2_max`, whose collection is `vO2_max`). Each is pure and total: a raw
 * document becomes normalized records or a value-free `ItemError`, never an exception.
 *
 * `heartrate` has no documents: its normalizer takes one stored batch `{ "data": [rows] }`
 * holding whole UTC days (see normalize/heartrate.ts). `personal_info` has no normalizer: the
 * normalized schema has no profile resource. The `storedOnly` types have no Junction
 * equivalent and are kept raw only.
 */
import { Schema } from "effect"
import type { Normalizer } from "@wearflow/core/normalizer"
import { normalizeDailyActivity } from "./normalize/daily_activity.ts"
import { normalizeDailyReadiness } from "./normalize/daily_readiness.ts"
import { normalizeDailySleep } from "./normalize/daily_sleep.ts"
import { normalizeDailySpo2 } from "./normalize/daily_spo2.ts"
import { normalizeDailyStress } from "./normalize/daily_stress.ts"
import { normalizeHeartRateBatch } from "./normalize/heartrate.ts"
import { normalizeSession } from "./normalize/session.ts"
import { normalizeSleep } from "./normalize/sleep.ts"
import { LocalDate, LocalizedDateTime, instantOf, isoOf, localDateOf } from "./normalize/shared.ts"
import { normalizeVo2Max } from "./normalize/vo2_max.ts"
import { normalizeWorkout } from "./normalize/workout.ts"

export { heartRateSourceId } from "./normalize/heartrate.ts"
export { sportOf } from "./normalize/workout.ts"

/** The Oura data types that have a normalizer. */
export type OuraDataType =
  | "daily_activity"
  | "sleep"
  | "daily_sleep"
  | "daily_readiness"
  | "heartrate"
  | "workout"
  | "session"
  | "daily_spo2"
  | "daily_stress"
  | "vo2_max"

export const normalizers: { readonly [K in OuraDataType]: Normalizer } = {
  daily_activity: normalizeDailyActivity,
  sleep: normalizeSleep,
  // Checked, but no records: the normalized schema has no place for a daily sleep score.
  daily_sleep: normalizeDailySleep,
  daily_readiness: normalizeDailyReadiness,
  heartrate: normalizeHeartRateBatch,
  workout: normalizeWorkout,
  session: normalizeSession,
  daily_spo2: normalizeDailySpo2,
  // Checked, but no records: durations in high stress are no stress_level samples.
  daily_stress: normalizeDailyStress,
  vo2_max: normalizeVo2Max
}

/** Data types Oura sends that have no Junction equivalent: stored raw, never normalized. */
export const storedOnly = [
  "daily_resilience",
  "daily_cardiovascular_age",
  "sleep_time",
  "tag",
  "enhanced_tag",
  "rest_mode_period",
  "ring_configuration"
] as const
export type StoredOnlyDataType = (typeof storedOnly)[number]

/** The collection path segment under `/v2/usercollection/` of a data type. */
export const collectionPath = (dataType: string): string => (dataType === "vo2_max" ? "vO2_max" : dataType)

const isLocalDate = Schema.is(LocalDate)
const isLocalizedDateTime = Schema.is(LocalizedDateTime)

const field = (raw: unknown, name: string): unknown =>
  typeof raw === "object" && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>)[name] : undefined

/** The fields that say when a document's data is from, in order of preference. */
const timeFields = ["timestamp", "start_datetime", "bedtime_start"] as const

const instantIn = (raw: unknown) => {
  for (const name of timeFields) {
    const value = field(raw, name)
    if (isLocalizedDateTime(value)) return instantOf(value)
  }
  // A heartrate batch: its earliest row.
  const rows = field(raw, "data")
  if (!Array.isArray(rows)) return undefined
  let earliest: ReturnType<typeof instantOf> | undefined
  for (const row of rows) {
    const value = field(row, "timestamp")
    if (!isLocalizedDateTime(value)) continue
    const at = instantOf(value)
    if (earliest === undefined || at.ms < earliest.ms) earliest = at
  }
  return earliest
}

/**
 * When a raw document's data is from, as a UTC timestamp: its `timestamp`, `start_datetime`
 * or `bedtime_start`, or a heartrate batch's earliest row; undefined when it has none.
 */
export const timeOf = (raw: unknown): string | undefined => {
  const at = instantIn(raw)
  return at === undefined ? undefined : isoOf(at.ms)
}

/**
 * The day a raw document belongs to, `YYYY-MM-DD`: its `day`, else the user's local date of
 * its time (the UTC date for heartrate rows); undefined when it has neither.
 */
export const dayOf = (raw: unknown): string | undefined => {
  const day = field(raw, "day")
  if (isLocalDate(day)) return day
  const at = instantIn(raw)
  return at === undefined ? undefined : localDateOf(at)
}
