/**
 * `daily_sleep` → no records. The document is the day's sleep score and its contributors; the
 * normalized `sleep.score` belongs to a sleep period, a different Oura document (`sleep`) that
 * cannot be amended from here, and no other resource holds a score. The day, time and score
 * are still checked, so a malformed document is reported like any other.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DocumentId, LocalDate, LocalizedDateTime, Score, opt } from "./shared.ts"

export const RawDailySleep = Schema.Struct({
  id: DocumentId,
  day: LocalDate,
  timestamp: opt(LocalizedDateTime),
  score: opt(Score),
})
export type RawDailySleep = typeof RawDailySleep.Type

const toRecords = (_raw: RawDailySleep): ReadonlyArray<NormalizedRecord> => []

const decode = decodeRecord(RawDailySleep)

export const normalizeDailySleep: Normalizer = (raw) => Either.map(decode(raw), toRecords)
