/**
 * `heartrate` → `heartrate` batches. The collection is a time series without ids: rows
 * `{timestamp, bpm, source}` (source awake, rest, sleep, workout, live, session). The plugin
 * stores what it fetched as one batch shaped like Oura's list envelope, `{ "data": [rows] }`,
 * and this splits the batch per UTC day and row source into one record each, keyed
 * `heartrate:<UTC day>:<source>`: the same rows always map to the same records.
 *
 * A record replaces its earlier version whole, so a batch must hold every row of the UTC days
 * it touches (fetch whole UTC days): a batch with part of a day replaces that day's samples
 * of each source it has. Workout rows stay heart-rate samples of source `workout`, a record of
 * their own per day; the workout they belong to is a separate Oura document.
 *
 * Rows are in UTC and carry no user offset, so `timezone_offset` is null.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { Finite, LocalizedDateTime, type Point, discreteSeries, instantOf, isoOf, opt, positive, ringSource } from "./shared.ts"

/** More rows than a month of 1-second samples is not a batch Oura's pages add up to. */
export const MAX_HEARTRATE_ROWS = 3_000_000

export const RawHeartRateRow = Schema.Struct({
  timestamp: LocalizedDateTime,
  // Absent in 2024 captures; `timestamp` says the same.
  timestamp_unix: opt(Schema.Number),
  bpm: Finite,
  // Part of the record key, so limited to a plain word.
  source: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_]{1,40}$/))
})
export type RawHeartRateRow = typeof RawHeartRateRow.Type

export const RawHeartRateBatch = Schema.Struct({
  data: Schema.Array(RawHeartRateRow).pipe(Schema.maxItems(MAX_HEARTRATE_ROWS))
})
export type RawHeartRateBatch = typeof RawHeartRateBatch.Type

/** The record key of a UTC day's rows of one source. */
export const heartRateSourceId = (day: string, source: string): string => `heartrate:${day}:${source}`

const toRecords = (raw: RawHeartRateBatch): ReadonlyArray<NormalizedRecord> => {
  const groups = new Map<string, Array<Point>>()
  for (const row of raw.data) {
    // A bpm of zero or below is not a reading.
    if (!positive(row.bpm)) continue
    const at = instantOf(row.timestamp).ms
    const key = heartRateSourceId(isoOf(at).slice(0, 10), row.source)
    const points = groups.get(key)
    if (points === undefined) groups.set(key, [[at, row.bpm]])
    else points.push([at, row.bpm])
  }
  return [...groups.keys()].sort().flatMap((key) => {
    const points = (groups.get(key) ?? []).sort(([a], [b]) => a - b)
    return discreteSeries("heartrate", key, ringSource(), null, points)
  })
}

const decode = decodeRecord(RawHeartRateBatch)

export const normalizeHeartRateBatch: Normalizer = (raw) => Either.map(decode(raw), toRecords)
