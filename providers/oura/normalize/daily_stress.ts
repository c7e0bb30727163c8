/**
 * `daily_stress` → no records. Oura gives the day's time in high stress and in high recovery
 * (seconds) and a summary word; a `stress_level` sample is a stress score (0–100) at an
 * instant, which neither figure is, so mapping them would make up values. The document is
 * still checked, so a malformed one is reported like any other.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DocumentId, DurationSeconds, LocalDate, opt } from "./shared.ts"

export const RawDailyStress = Schema.Struct({
  id: DocumentId,
  day: LocalDate,
  stress_high: opt(DurationSeconds),
  recovery_high: opt(DurationSeconds),
  day_summary: opt(Schema.String)
})
export type RawDailyStress = typeof RawDailyStress.Type

const toRecords = (_raw: RawDailyStress): ReadonlyArray<NormalizedRecord> => []

const decode = decodeRecord(RawDailyStress)

export const normalizeDailyStress: Normalizer = (raw) => Either.map(decode(raw), toRecords)
