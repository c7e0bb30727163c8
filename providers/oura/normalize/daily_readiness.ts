/**
 * `daily_readiness` → one `body_temperature_delta` interval sample: the skin-temperature
 * deviation (°C) from the user's baseline over the readiness day, [timestamp, +24 h) — the
 * day's local midnight as Oura states it (UTC midnight of `day` when the timestamp is absent).
 * The readiness score, its contributors and `temperature_trend_deviation` have no place in
 * the normalized schema.
 *
 * The same deviation also appears inside the main `sleep` period (`readiness`); that one fills
 * the sleep's `temperature_delta` field only, so each day has one sample, from here.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DocumentId, Finite, LocalDate, LocalizedDateTime, Score, dayStartMs, instantOf, intervalSeries, opt, ringSource } from "./shared.ts"

export const RawDailyReadiness = Schema.Struct({
  id: DocumentId,
  day: LocalDate,
  timestamp: opt(LocalizedDateTime),
  score: opt(Score),
  temperature_deviation: opt(Finite),
  temperature_trend_deviation: opt(Finite),
})
export type RawDailyReadiness = typeof RawDailyReadiness.Type

const DAY_MS = 86_400_000

const toRecords = (raw: RawDailyReadiness): ReadonlyArray<NormalizedRecord> => {
  const deviation = raw.temperature_deviation
  // A deviation of 0 °C is a real value (at baseline); only an absent one is skipped.
  if (deviation == null) return []
  const at = raw.timestamp == null ? null : instantOf(raw.timestamp)
  const start = at?.ms ?? dayStartMs(raw.day)
  return intervalSeries("body_temperature_delta", raw.id, ringSource(), at?.offset ?? null, [{ start, end: start + DAY_MS, value: deviation }])
}

const decode = decodeRecord(RawDailyReadiness)

export const normalizeDailyReadiness: Normalizer = (raw) => Either.map(decode(raw), toRecords)
