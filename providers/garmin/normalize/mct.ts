/**
 * `mct` (menstrual cycle tracking) → one `menstrual_cycle` summary per cycle. Garmin counts in
 * days from `periodStartDate`; end dates are derived as inclusive last days.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { MenstrualCycleFields, Source } from "@wearflow/core/schema"
import { timestampFromEpochSeconds } from "@wearflow/core/time"
import { Count, EpochSeconds, LocalDate, addDays, opt } from "./shared.ts"

export const RawPregnancy = Schema.Struct({
  title: opt(Schema.String),
  originalDueDate: opt(LocalDate),
  dueDate: opt(LocalDate),
  pregnancyCycleStartDate: opt(LocalDate),
  numOfBabies: opt(Schema.String)
})

export const RawCycle = Schema.Struct({
  summaryId: Schema.String,
  // Required: every other date of the cycle is counted from it.
  periodStartDate: LocalDate,
  dayInCycle: opt(Count),
  periodLength: opt(Count),
  currentPhase: opt(Count),
  currentPhaseType: opt(Schema.String),
  lengthOfCurrentPhase: opt(Count),
  daysUntilNextPhase: opt(Count),
  predictedCycleLength: opt(Count),
  isPredictedCycle: opt(Schema.Boolean),
  cycleLength: opt(Count),
  fertileWindowStart: opt(Count),
  lengthOfFertileWindow: opt(Count),
  lastUpdatedTimeInSeconds: opt(EpochSeconds),
  hasSpecifiedCycleLength: opt(Schema.Boolean),
  hasSpecifiedPeriodLength: opt(Schema.Boolean),
  pregnancySnapshot: opt(RawPregnancy)
})
export type RawCycle = typeof RawCycle.Type

/** Cycle data is logged and predicted in the Garmin Connect app. */
const appSource: Source = { provider: "garmin", type: "app", device_id: null, app_id: null }

/** The last day of a span of `days` days starting on `start`, or null without a positive length. */
const lastDay = (start: string, days: number | null | undefined): string | null =>
  days == null || days <= 0 ? null : addDays(start, days - 1)

type Cycle = typeof MenstrualCycleFields.Type

const pregnancy = (raw: RawCycle): Cycle["pregnancy"] => {
  const p = raw.pregnancySnapshot
  if (p == null) return null
  const data = {
    title: p.title ?? null,
    start_date: p.pregnancyCycleStartDate ?? null,
    due_date: p.dueDate ?? null,
    original_due_date: p.originalDueDate ?? null,
    number_of_babies: p.numOfBabies ?? null
  }
  // Garmin sends `pregnancySnapshot: {}` for cycles without a pregnancy.
  return Object.values(data).every((v) => v === null) ? null : data
}

const cycle = (raw: RawCycle): Cycle => ({
  period_start: raw.periodStartDate,
  period_end: lastDay(raw.periodStartDate, raw.periodLength),
  cycle_end: lastDay(raw.periodStartDate, raw.cycleLength),
  is_predicted: raw.isPredictedCycle ?? null,
  cycle_length: raw.cycleLength ?? null,
  predicted_cycle_length: raw.predictedCycleLength ?? null,
  period_length: raw.periodLength ?? null,
  day_in_cycle: raw.dayInCycle ?? null,
  current_phase: raw.currentPhase ?? null,
  current_phase_type: raw.currentPhaseType ?? null,
  length_of_current_phase: raw.lengthOfCurrentPhase ?? null,
  days_until_next_phase: raw.daysUntilNextPhase ?? null,
  fertile_window_start: raw.fertileWindowStart ?? null,
  fertile_window_length: raw.lengthOfFertileWindow ?? null,
  has_specified_cycle_length: raw.hasSpecifiedCycleLength ?? null,
  has_specified_period_length: raw.hasSpecifiedPeriodLength ?? null,
  pregnancy: pregnancy(raw),
  last_updated_at: raw.lastUpdatedTimeInSeconds == null ? null : timestampFromEpochSeconds(raw.lastUpdatedTimeInSeconds),
  timezone_offset: null,
  source: appSource
})

const toRecords = (raw: RawCycle): ReadonlyArray<NormalizedRecord> => [
  { kind: "summary", resource: "menstrual_cycle", sourceId: raw.summaryId, data: cycle(raw) }
]

const decode = decodeRecord(RawCycle)

export const normalizeCycle: Normalizer = (raw) => Either.map(decode(raw), toRecords)
