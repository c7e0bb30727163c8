/**
 * Assertions on normalized records, for a plugin's normalizer tests and the conformance kit:
 * every record's data satisfies its resource's schema exactly (no extra fields), and small
 * readers for what a test checks (an error's message, a summary, a batch's samples).
 */
import { Either, Schema } from "effect"
import { expect } from "vitest"
import type { NormalizedRecord } from "../normalizer.ts"
import { Resources, TimeseriesBatchOf } from "../schema.ts"

/** The schema one record's data must satisfy: the summary's fields, or a batch of its sample shape. */
const schemaOf = (record: NormalizedRecord): Schema.Schema.AnyNoContext =>
  record.kind === "summary" ? Resources[record.resource].fields : TimeseriesBatchOf(Resources[record.resource].schema)

/** Decodes every record's data with its resource schema, rejecting extra fields, and checks nothing changed. */
export const validated = (records: ReadonlyArray<NormalizedRecord>): ReadonlyArray<NormalizedRecord> => {
  for (const record of records) {
    const decoded = Schema.decodeUnknownSync(schemaOf(record), { onExcessProperty: "error" })(record.data)
    expect(decoded).toEqual(record.data)
  }
  return records
}

/** The message of a normalizer's ItemError; a normalizer that succeeded fails the test. */
export const errorOf = (result: Either.Either<unknown, { message: string }>): string =>
  Either.match(result, {
    onLeft: (e) => e.message,
    onRight: () => {
      throw new Error("expected Left")
    }
  })

/** What records a normalizer gave: kind, resource and source id each. */
export const shape = (records: ReadonlyArray<NormalizedRecord>) => records.map((r) => [r.kind, r.resource, r.sourceId])

export const summaryOf = (records: ReadonlyArray<NormalizedRecord>, resource: string): unknown => {
  const record = records.find((r) => r.kind === "summary" && r.resource === resource)
  if (record === undefined) throw new Error(`no ${resource} record`)
  return record.data
}

export const samplesOf = (records: ReadonlyArray<NormalizedRecord>, resource: string, sourceId?: string) => {
  const record = records.find((r) => r.kind === "timeseries" && r.resource === resource && (sourceId === undefined || r.sourceId === sourceId))
  if (record === undefined || record.kind !== "timeseries") throw new Error(`no ${resource} batch`)
  return record.data.data as ReadonlyArray<Record<string, unknown>>
}
