/**
 * `healthSnapshot` → one batch per measured resource from a 2-minute Health Snapshot session:
 * `heart_rate` → `heartrate`, `respiration` → `respiratory_rate`, `stress` → `stress_level`,
 * `spo2` → `blood_oxygen`, `rmssd_hrv` → `hrv`. `sdrr_hrv` (SDRR, not RMSSD) and unknown types
 * are not mapped.
 */
import { Either, Schema } from "effect"
import { decodeRecord, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import {
  type DiscreteResource,
  DurationSeconds,
  Finite,
  LocalDate,
  OffsetMap,
  OffsetSeconds,
  type Point,
  SummaryBase,
  discreteSeries,
  nonNegative,
  opt,
  pointsFrom,
  positive,
  watchSource
} from "./shared.ts"

export const RawSnapshotSummary = Schema.Struct({
  summaryType: Schema.String,
  minValue: opt(Finite),
  maxValue: opt(Finite),
  avgValue: opt(Finite),
  epochSummaries: opt(OffsetMap)
})
export type RawSnapshotSummary = typeof RawSnapshotSummary.Type

export const RawHealthSnapshot = Schema.Struct({
  ...SummaryBase,
  // Garmin's spec spells the offset `offsetStartTimeInSeconds`; other sources use the
  // usual `startTimeOffsetInSeconds`. Both are accepted, the former wins.
  offsetStartTimeInSeconds: opt(OffsetSeconds),
  calendarDate: opt(LocalDate),
  durationInSeconds: opt(DurationSeconds),
  summaries: opt(Schema.Array(RawSnapshotSummary))
})
export type RawHealthSnapshot = typeof RawHealthSnapshot.Type

/** The resource of each mapped summaryType, with the values that count as readings. */
const mapping: Readonly<Record<string, { readonly resource: DiscreteResource; readonly keep: (v: number) => boolean }>> = {
  heart_rate: { resource: "heartrate", keep: positive },
  respiration: { resource: "respiratory_rate", keep: positive },
  stress: { resource: "stress_level", keep: nonNegative },
  spo2: { resource: "blood_oxygen", keep: positive },
  rmssd_hrv: { resource: "hrv", keep: positive }
}

/** The per-second values (`epochSummaries`, offsets from the start), else the average at the start. */
const pointsOf = (start: number, summary: RawSnapshotSummary, keep: (v: number) => boolean): Array<Point> => {
  const points = pointsFrom(start, summary.epochSummaries, keep)
  if (points.length > 0 || Object.keys(summary.epochSummaries ?? {}).length > 0) return points
  return summary.avgValue != null && keep(summary.avgValue) ? [[start, summary.avgValue]] : []
}

const toRecords = (raw: RawHealthSnapshot): ReadonlyArray<NormalizedRecord> => {
  const start = raw.startTimeInSeconds
  const offset = raw.offsetStartTimeInSeconds ?? raw.startTimeOffsetInSeconds
  const byResource = new Map<DiscreteResource, Array<Point>>()
  for (const summary of raw.summaries ?? []) {
    const target = Object.hasOwn(mapping, summary.summaryType) ? mapping[summary.summaryType] : undefined
    if (target === undefined) continue
    byResource.set(target.resource, [...(byResource.get(target.resource) ?? []), ...pointsOf(start, summary, target.keep)])
  }
  return [...byResource].flatMap(([resource, points]) =>
    discreteSeries(resource, raw.summaryId, watchSource, offset, [...points].sort(([a], [b]) => a - b))
  )
}

const decode = decodeRecord(RawHealthSnapshot)

export const normalizeHealthSnapshot: Normalizer = (raw) => Either.map(decode(raw), toRecords)
