/**
 * `bodyComps` → one `body` summary, plus `weight` (kg) and `fat` (%) samples at the
 * measurement time. Garmin reports masses in grams.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { BodyFields, Source } from "@wearflow/core/schema"
import { localDateFromEpochSeconds, timestampFromEpochSeconds } from "@wearflow/core/time"
import { EpochSeconds, Finite, OffsetSeconds, dateOf, discreteSeries, opt, positive, round1 } from "./shared.ts"

export const RawBodyComp = Schema.Struct({
  userId: Schema.String,
  summaryId: Schema.String,
  measurementTimeInSeconds: EpochSeconds,
  measurementTimeOffsetInSeconds: opt(OffsetSeconds),
  weightInGrams: opt(Finite),
  muscleMassInGrams: opt(Finite),
  boneMassInGrams: opt(Finite),
  bodyWaterInPercent: opt(Finite),
  bodyFatInPercent: opt(Finite),
  bodyMassIndex: opt(Finite)
})
export type RawBodyComp = typeof RawBodyComp.Type

/** Garmin does not say whether a composition came from a scale, another app or manual entry. */
const bodySource: Source = { provider: "garmin", type: "unknown", device_id: null, app_id: null }

/** A measured quantity; zero or negative means Garmin had no value. */
const measured = (value: number | null | undefined): number | null => (value != null && positive(value) ? value : null)
const kilograms = (grams: number | null | undefined): number | null => {
  const g = measured(grams)
  return g === null ? null : g / 1000
}
const percentOf = (part: number | null, whole: number | null): number | null =>
  part === null || whole === null ? null : round1((part / whole) * 100)

const body = (raw: RawBodyComp): typeof BodyFields.Type => {
  const at = raw.measurementTimeInSeconds
  const calendarDate = localDateFromEpochSeconds(at, raw.measurementTimeOffsetInSeconds ?? 0)
  const weight = kilograms(raw.weightInGrams)
  const muscle = kilograms(raw.muscleMassInGrams)
  const bone = kilograms(raw.boneMassInGrams)
  return {
    date: dateOf(calendarDate),
    calendar_date: calendarDate,
    measured_at: timestampFromEpochSeconds(at),
    weight,
    fat: measured(raw.bodyFatInPercent),
    water_percentage: measured(raw.bodyWaterInPercent),
    muscle_mass_kilogram: muscle,
    muscle_mass_percentage: percentOf(muscle, weight),
    bone_mass_kilogram: bone,
    bone_mass_percentage: percentOf(bone, weight),
    body_mass_index: measured(raw.bodyMassIndex),
    lean_body_mass_kilogram: null,
    visceral_fat_index: null,
    waist_circumference_centimeters: null,
    timezone_offset: raw.measurementTimeOffsetInSeconds ?? null,
    source: bodySource
  }
}

const toRecords = (raw: RawBodyComp): ReadonlyArray<NormalizedRecord> => {
  const data = body(raw)
  const at = raw.measurementTimeInSeconds
  const point = (value: number | null) => (value === null ? [] : [[at, value] as const])
  return [
    { kind: "summary", resource: "body", sourceId: raw.summaryId, data },
    ...discreteSeries("weight", raw.summaryId, bodySource, data.timezone_offset, point(data.weight)),
    ...discreteSeries("fat", raw.summaryId, bodySource, data.timezone_offset, point(data.fat))
  ]
}

const decode = decodeRecord(RawBodyComp)

export const normalizeBodyComp: Normalizer = (raw) => Either.map(decode(raw), toRecords)
