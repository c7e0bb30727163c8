/**
 * `daily_activity` → one `activity` summary for the day.
 *
 * Not mapped, for want of a field in the normalized activity: the activity `score` and its
 * contributors, targets, MET minutes, sedentary/resting/non-wear time, inactivity alerts, the
 * 1-minute `met` series and `class_5_min`. Oura has no intraday steps or calories, and Garmin's
 * dailies emit no daily-total `steps`/`calories_active` samples either, so neither does this.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { ActivityFields } from "@wearflow/core/schema"
import { Count, DocumentId, DurationSeconds, Finite, LocalDate, LocalizedDateTime, Score, dateOf, instantOf, opt, ringSource } from "./shared.ts"

export const RawDailyActivity = Schema.Struct({
  id: DocumentId,
  // Required: the activity day (it starts at 04:00 local), the record's only date.
  day: LocalDate,
  timestamp: opt(LocalizedDateTime),
  score: opt(Score),
  active_calories: opt(Finite),
  total_calories: opt(Finite),
  steps: opt(Count),
  equivalent_walking_distance: opt(Finite),
  low_activity_time: opt(DurationSeconds),
  medium_activity_time: opt(DurationSeconds),
  high_activity_time: opt(DurationSeconds)
})
export type RawDailyActivity = typeof RawDailyActivity.Type

/** Seconds → minutes, keeping "not measured" as `null`. */
const minutes = (seconds: number | null | undefined): number | null => (seconds == null ? null : seconds / 60)

const activity = (raw: RawDailyActivity): typeof ActivityFields.Type => ({
  date: dateOf(raw.day),
  calendar_date: raw.day,
  calories_total: raw.total_calories ?? null,
  calories_active: raw.active_calories ?? null,
  steps: raw.steps ?? null,
  // Oura's distance is the walking distance equivalent to the day's energy, its only daily
  // movement figure (there is no GPS distance).
  daily_movement: raw.equivalent_walking_distance ?? null,
  low: minutes(raw.low_activity_time),
  medium: minutes(raw.medium_activity_time),
  high: minutes(raw.high_activity_time),
  floors_climbed: null,
  heart_rate: null,
  wheelchair_use: null,
  wheelchair_push: null,
  // The day's timestamp (04:00 local) carries the user's offset.
  timezone_offset: raw.timestamp == null ? null : instantOf(raw.timestamp).offset,
  source: ringSource()
})

const toRecords = (raw: RawDailyActivity): ReadonlyArray<NormalizedRecord> => [
  { kind: "summary", resource: "activity", sourceId: raw.id, data: activity(raw) }
]

const decode = decodeRecord(RawDailyActivity)

export const normalizeDailyActivity: Normalizer = (raw) => Either.map(decode(raw), toRecords)
