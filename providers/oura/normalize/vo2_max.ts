/**
 * `vo2_max` (collection `vO2_max`) → one `vo2_max` sample (mL/kg/min) at the estimate's
 * `timestamp`, or at midnight UTC of `day` without an offset when the timestamp is absent.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DocumentId, Finite, LocalDate, LocalizedDateTime, dayStartMs, discreteSeries, instantOf, opt, positive, ringSource } from "./shared.ts"

export const RawVo2Max = Schema.Struct({
  id: DocumentId,
  day: LocalDate,
  timestamp: opt(LocalizedDateTime),
  vo2_max: opt(Finite)
})
export type RawVo2Max = typeof RawVo2Max.Type

const toRecords = (raw: RawVo2Max): ReadonlyArray<NormalizedRecord> => {
  const at = raw.timestamp == null ? null : instantOf(raw.timestamp)
  const value = raw.vo2_max
  const points = value != null && positive(value) ? [[at?.ms ?? dayStartMs(raw.day), value] as const] : []
  return discreteSeries("vo2_max", raw.id, ringSource(), at?.offset ?? null, points)
}

const decode = decodeRecord(RawVo2Max)

export const normalizeVo2Max: Normalizer = (raw) => Either.map(decode(raw), toRecords)
