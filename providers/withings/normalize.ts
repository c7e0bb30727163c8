/**
 * Withings normalizers, one per item kind the plugin stores. Each is pure and total: a raw
 * item becomes normalized records or a value-free `ItemError`, never an exception.
 *
 * The items, and what the plugin puts in them:
 * - `measuregrp`: one group of getmeas `body.measuregrps`, with the answer's `timezone`
 *   copied onto it (a group has none of its own);
 * - `activity`: one day of getactivity `body.activities`, as Withings sends it;
 * - `intraday`: one getintradayactivity answer with the window asked for,
 *   `{ startdate, enddate, timezone, series: body.series }` (fixed windows: whole UTC days);
 * - `sleep_summary`: one night of sleep getsummary `body.series`, as Withings sends it;
 * - `sleep_series`: one sleep get answer with the window asked for,
 *   `{ startdate, enddate, timezone, series: body.series }` (fixed windows: whole UTC days);
 * - `workout`: one workout of getworkouts `body.series`, as Withings sends it.
 *
 * Record keys are Withings' ids, prefixed by the kind (`meas:<grpid>`, `workout:<id>`,
 * `sleep:<id>`, `activity:<date>:<device>`, and the windows for the id-less series): the
 * store remembers deletions by key alone, and Withings' id spaces (measure groups, workouts,
 * nights) overlap. The `*SourceId` helpers build the same keys for deletions.
 *
 * Devices (user getdevice) have no normalizer: they describe the connection, not data.
 */
import { Schema } from "effect"
import type { Normalizer } from "@wearflow/core/normalizer"
import { normalizeActivity } from "./normalize/activity.ts"
import { normalizeIntraday } from "./normalize/intraday.ts"
import { normalizeMeasureGroup } from "./normalize/measuregrp.ts"
import { EpochSeconds, LocalDate, ZoneName, isoOf, localDateOf, offsetAt } from "./normalize/shared.ts"
import { normalizeSleepSeries } from "./normalize/sleep_series.ts"
import { normalizeSleepSummary } from "./normalize/sleep_summary.ts"
import { normalizeWorkout } from "./normalize/workout.ts"

export { activitySourceId } from "./normalize/activity.ts"
export { intradaySourceId } from "./normalize/intraday.ts"
export { measureGroupSourceId, realValue } from "./normalize/measuregrp.ts"
export { offsetAt } from "./normalize/shared.ts"
export { sleepSeriesSourceId } from "./normalize/sleep_series.ts"
export { sleepSourceId } from "./normalize/sleep_summary.ts"
export { sportOf, workoutSourceId } from "./normalize/workout.ts"

/** The item kinds the Withings plugin stores, each with its normalizer. */
export type WithingsItemKind = "measuregrp" | "activity" | "intraday" | "sleep_summary" | "sleep_series" | "workout"

export const normalizers: { readonly [K in WithingsItemKind]: Normalizer } = {
  measuregrp: normalizeMeasureGroup,
  activity: normalizeActivity,
  intraday: normalizeIntraday,
  sleep_summary: normalizeSleepSummary,
  sleep_series: normalizeSleepSeries,
  workout: normalizeWorkout
}

const isEpochSeconds = Schema.is(EpochSeconds)
const isLocalDate = Schema.is(LocalDate)
const isZoneName = Schema.is(ZoneName)

const field = (raw: unknown, name: string): unknown =>
  typeof raw === "object" && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>)[name] : undefined

/** The epoch second an item's data starts at: `startdate` (nights, workouts, windows), else a measure group's `date`. */
const instantIn = (raw: unknown): number | undefined => {
  for (const name of ["startdate", "date"]) {
    const value = field(raw, name)
    if (isEpochSeconds(value)) return value
  }
  return undefined
}

/** When a raw item's data is from, as a UTC timestamp; undefined for an activity day (a date only) or no time. */
export const timeOf = (raw: unknown): string | undefined => {
  const at = instantIn(raw)
  return at === undefined ? undefined : isoOf(at)
}

/**
 * The day a raw item belongs to, `YYYY-MM-DD`: its `date` when it is a day (activity days,
 * nights, workouts), else the user's local date of its time in its `timezone` (the UTC date
 * without one); undefined when it has neither.
 */
export const dayOf = (raw: unknown): string | undefined => {
  const date = field(raw, "date")
  if (isLocalDate(date)) return date
  const at = instantIn(raw)
  if (at === undefined) return undefined
  const zone = field(raw, "timezone")
  return localDateOf(at, isZoneName(zone) ? offsetAt(zone, at) : null)
}
