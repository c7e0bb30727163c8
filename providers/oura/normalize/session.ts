/**
 * `session` (a guided or unguided Moment: breathing, meditation, nap, relaxation, rest, body
 * status) → a `heartrate` and an `hrv` batch from its samples, keyed by the session's id. The
 * normalized schema has no mindfulness resource, so the session itself (type, mood, span) and
 * its `motion_count` samples are not mapped; a session without heart data gives no records.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import { DocumentId, LocalDate, LocalizedDateTime, RawSampleSeries, discreteSeries, instantOf, opt, pointsOf, positive, ringSource } from "./shared.ts"

export const RawSession = Schema.Struct({
  id: DocumentId,
  day: opt(LocalDate),
  start_datetime: LocalizedDateTime,
  end_datetime: LocalizedDateTime,
  type: opt(Schema.String),
  mood: opt(Schema.String),
  heart_rate: opt(RawSampleSeries),
  heart_rate_variability: opt(RawSampleSeries),
  motion_count: opt(RawSampleSeries)
})
export type RawSession = typeof RawSession.Type

const endsBeforeStart = new ItemError({ message: "end_datetime is before start_datetime" })

const toRecords = (raw: RawSession): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  const start = instantOf(raw.start_datetime)
  if (instantOf(raw.end_datetime).ms < start.ms) return Either.left(endsBeforeStart)
  const source = ringSource()
  return Either.right([
    ...discreteSeries("heartrate", raw.id, source, start.offset, pointsOf(raw.heart_rate, positive)),
    ...discreteSeries("hrv", raw.id, source, start.offset, pointsOf(raw.heart_rate_variability, positive))
  ])
}

const decode = decodeRecord(RawSession)

export const normalizeSession: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
