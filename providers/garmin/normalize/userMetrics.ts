/**
 * `userMetrics` → one `vo2_max` sample per calendar day. Garmin gives only the date, so the
 * sample sits at `${calendarDate}T00:00:00.000Z` (the `date` convention) with no offset.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { Finite, LocalDate, dateOf, discreteSeries, opt, positive, watchSource } from "./shared.ts"

export const RawUserMetrics = Schema.Struct({
  summaryId: Schema.String,
  // Required: the metric's only time reference.
  calendarDate: LocalDate,
  vo2Max: opt(Finite),
  enhanced: opt(Schema.Boolean),
  fitnessAge: opt(Finite)
})
export type RawUserMetrics = typeof RawUserMetrics.Type

const toRecords = (raw: RawUserMetrics): ReadonlyArray<NormalizedRecord> => {
  const at = Date.parse(dateOf(raw.calendarDate)) / 1000
  const points = raw.vo2Max != null && positive(raw.vo2Max) ? [[at, raw.vo2Max] as const] : []
  return discreteSeries("vo2_max", raw.summaryId, watchSource, null, points)
}

const decode = decodeRecord(RawUserMetrics)

export const normalizeUserMetrics: Normalizer = (raw) => Either.map(decode(raw), toRecords)
