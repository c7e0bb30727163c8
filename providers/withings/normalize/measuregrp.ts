/**
 * `measuregrp` (one group of getmeas `body.measuregrps`, with the answer's `timezone` copied
 * onto it by the plugin) → what the group's measures are, all keyed `meas:<grpid>` (Withings
 * revises a group under the same grpid):
 *
 * - weight (1), fat ratio (6), fat-free mass (5), muscle (76), hydration (77), bone (88),
 *   visceral fat (170), and height (4, only to compute the BMI when in the same group) → one
 *   `body` summary, plus `weight` and `fat` samples as Garmin's body compositions give;
 * - systolic (10) with diastolic (9) → one `blood_pressure` sample; pulse (11) → `heartrate`;
 *   SpO2 (54) → `blood_oxygen`; VO2 max (123) → `vo2_max`; body temperature (71, else the
 *   thermometer's 12) → `body_temperature`.
 *
 * A real value is `value × 10^unit`. Only whole-body measures count: no `position`, or 7 (whole
 * body); the segmental ones (173–175 per limb) have no place. Groups of user goals
 * (`category` 2) and groups Withings could not attribute to this user for sure (`attrib` 1:
 * maybe another person on the scale; 4: entered at sign-up) give no records.
 *
 * Not mapped, for want of a resource: skin temperature (73: not the body's), fat mass in kg
 * (8; `fat` is the ratio), extra/intracellular water
 * (168, 169), pulse wave velocity (91), vascular age (155), AFib and ECG intervals (130,
 * 135–139), nerve health and electrodermal activity (167, 196–198), BMR (226), metabolic age
 * (227), glucose (119).
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { type BodyFields, Resources } from "@wearflow/core/schema"
import {
  DeviceId,
  EpochSeconds,
  WithingsId,
  ZoneName,
  dateOf,
  discreteSeries,
  isoOf,
  localDateOf,
  measured,
  offsetAt,
  opt,
  round1,
  sourceOf
} from "./shared.ts"

/** The record key of a measure group. */
export const measureGroupSourceId = (grpid: number | string): string => `meas:${grpid}`

export const RawMeasure = Schema.Struct({
  value: Schema.Int,
  type: Schema.Int,
  // Powers of ten beyond ±20 are no unit Withings uses, and would overflow to 0 or Infinity.
  unit: Schema.Int.pipe(Schema.between(-20, 20)),
  position: opt(Schema.Int)
})
export type RawMeasure = typeof RawMeasure.Type

export const RawMeasureGroup = Schema.Struct({
  grpid: WithingsId,
  attrib: Schema.Int,
  // When the measures were taken.
  date: EpochSeconds,
  category: Schema.Int,
  deviceid: opt(DeviceId),
  hash_deviceid: opt(DeviceId),
  // `modelid` in real answers, `model_id` in the OpenAPI.
  modelid: opt(Schema.Int),
  model_id: opt(Schema.Int),
  measures: Schema.Array(RawMeasure).pipe(Schema.maxItems(10_000)),
  timezone: opt(ZoneName)
})
export type RawMeasureGroup = typeof RawMeasureGroup.Type

/** `value × 10^unit`, dividing for negative units so 118003 × 10^-3 is exactly 118.003. */
export const realValue = ({ unit, value }: RawMeasure): number => (unit < 0 ? value / 10 ** -unit : value * 10 ** unit)

/** Positions that mean the whole body (absent, or 7 on Body Scan). */
const wholeBody = (position: number | null | undefined): boolean => position == null || position === 7

/** Attributions that may not be this user's measures: ambiguous (1), entered at sign-up (4). */
const notTheUsers = new Set([1, 4])
/** Manual entries (2) were typed into the app, whatever device the group names. */
const MANUAL = 2
/** Category 1 holds real measures; 2 the user's goals. */
const REAL = 1

const MeasureType = {
  weight: 1,
  height: 4,
  fatFreeMass: 5,
  fatRatio: 6,
  diastolic: 9,
  systolic: 10,
  pulse: 11,
  temperature: 12,
  spo2: 54,
  bodyTemperature: 71,
  muscleMass: 76,
  hydration: 77,
  boneMass: 88,
  vo2Max: 123,
  visceralFat: 170
} as const

const bodyTypes: ReadonlyArray<number> = [1, 5, 6, 76, 77, 88, 170]

const percentOf = (part: number | null, whole: number | null): number | null =>
  part === null || whole === null ? null : round1((part / whole) * 100)

const toRecords = (raw: RawMeasureGroup): ReadonlyArray<NormalizedRecord> => {
  if (raw.category !== REAL || notTheUsers.has(raw.attrib)) return []
  // The first whole-body measure of each type (Body Scan repeats some identically).
  const values = new Map<number, number>()
  for (const measure of raw.measures) {
    if (!wholeBody(measure.position) || values.has(measure.type)) continue
    const value = realValue(measure)
    if (Number.isFinite(value)) values.set(measure.type, value)
  }
  const value = (type: number): number | null => measured(values.get(type))

  const sourceId = measureGroupSourceId(raw.grpid)
  const deviceId = raw.deviceid ?? raw.hash_deviceid
  const source = sourceOf(raw.modelid ?? raw.model_id, deviceId, raw.attrib === MANUAL ? "app" : undefined)
  const at = raw.date
  const offset = offsetAt(raw.timezone, at)
  const point = (v: number | null) => (v === null ? [] : [[at, v] as const])

  const records: Array<NormalizedRecord> = []
  if (bodyTypes.some((type) => values.has(type))) {
    const weight = value(MeasureType.weight)
    const height = value(MeasureType.height)
    const muscle = value(MeasureType.muscleMass)
    const bone = value(MeasureType.boneMass)
    const calendarDate = localDateOf(at, offset)
    const body: typeof BodyFields.Type = {
      date: dateOf(calendarDate),
      calendar_date: calendarDate,
      measured_at: isoOf(at),
      weight,
      fat: value(MeasureType.fatRatio),
      // Withings gives the body's water in kg.
      water_percentage: percentOf(value(MeasureType.hydration), weight),
      muscle_mass_kilogram: muscle,
      muscle_mass_percentage: percentOf(muscle, weight),
      bone_mass_kilogram: bone,
      bone_mass_percentage: percentOf(bone, weight),
      body_mass_index: weight === null || height === null ? null : round1(weight / (height * height)),
      lean_body_mass_kilogram: value(MeasureType.fatFreeMass),
      visceral_fat_index: value(MeasureType.visceralFat),
      waist_circumference_centimeters: null,
      timezone_offset: offset,
      source
    }
    records.push(
      { kind: "summary", resource: "body", sourceId, data: body },
      ...discreteSeries("weight", sourceId, source, offset, point(body.weight)),
      ...discreteSeries("fat", sourceId, source, offset, point(body.fat))
    )
  }
  const systolic = value(MeasureType.systolic)
  const diastolic = value(MeasureType.diastolic)
  if (systolic !== null && diastolic !== null) {
    records.push({
      kind: "timeseries",
      resource: "blood_pressure",
      sourceId,
      data: {
        source,
        data: [{ timestamp: isoOf(at), timezone_offset: offset, type: source.type, unit: Resources.blood_pressure.unit, systolic, diastolic }]
      }
    })
  }
  records.push(
    ...discreteSeries("heartrate", sourceId, source, offset, point(value(MeasureType.pulse))),
    ...discreteSeries("blood_oxygen", sourceId, source, offset, point(value(MeasureType.spo2))),
    ...discreteSeries("vo2_max", sourceId, source, offset, point(value(MeasureType.vo2Max))),
    ...discreteSeries("body_temperature", sourceId, source, offset, point(value(MeasureType.bodyTemperature) ?? value(MeasureType.temperature)))
  )
  return records
}

const decode = decodeRecord(RawMeasureGroup)

export const normalizeMeasureGroup: Normalizer = (raw) => Either.map(decode(raw), toRecords)
