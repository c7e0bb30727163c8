/**
 * `skinTemp` → one `body_temperature_delta` interval sample: the average deviation (°C) from
 * the user's baseline over [start, start + duration).
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DurationSeconds, Finite, LocalDate, SummaryBase, intervalSeries, opt, watchSource } from "./shared.ts"

export const RawSkinTemp = Schema.Struct({
  ...SummaryBase,
  calendarDate: opt(LocalDate),
  durationInSeconds: opt(DurationSeconds),
  avgDeviationCelsius: opt(Finite)
})
export type RawSkinTemp = typeof RawSkinTemp.Type

const toRecords = (raw: RawSkinTemp): ReadonlyArray<NormalizedRecord> => {
  const start = raw.startTimeInSeconds
  // A deviation of 0 °C is a real value (at baseline); only an absent one is skipped.
  return raw.avgDeviationCelsius == null
    ? []
    : intervalSeries("body_temperature_delta", raw.summaryId, watchSource, raw.startTimeOffsetInSeconds, [
        { start, end: start + Math.round(raw.durationInSeconds ?? 0), value: raw.avgDeviationCelsius }
      ])
}

const decode = decodeRecord(RawSkinTemp)

export const normalizeSkinTemp: Normalizer = (raw) => Either.map(decode(raw), toRecords)
