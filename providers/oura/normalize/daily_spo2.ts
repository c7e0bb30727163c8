/**
 * `daily_spo2` → one `blood_oxygen` sample: the night's average SpO2 (%), dated by the day.
 * The document has no time of day and no offset, so the sample sits at midnight UTC of `day`
 * (the `date` convention) with `timezone_offset` null, as Garmin's daily VO2 max does.
 * `breathing_disturbance_index` has no place in the normalized schema.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DocumentId, Finite, LocalDate, dayStartMs, discreteSeries, opt, positive, ringSource } from "./shared.ts"

export const RawDailySpo2 = Schema.Struct({
  id: DocumentId,
  day: LocalDate,
  spo2_percentage: opt(Schema.Struct({ average: opt(Finite) })),
  breathing_disturbance_index: opt(Finite)
})
export type RawDailySpo2 = typeof RawDailySpo2.Type

const toRecords = (raw: RawDailySpo2): ReadonlyArray<NormalizedRecord> => {
  const average = raw.spo2_percentage?.average
  // An average of zero or below is not a reading.
  const points = average != null && positive(average) ? [[dayStartMs(raw.day), average] as const] : []
  return discreteSeries("blood_oxygen", raw.id, ringSource(), null, points)
}

const decode = decodeRecord(RawDailySpo2)

export const normalizeDailySpo2: Normalizer = (raw) => Either.map(decode(raw), toRecords)
