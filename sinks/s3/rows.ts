/**
 * The rows of the ETL files: one per summary record or per timeseries sample, each with the
 * fields of the event it came from (so file and webhook consumers join on `event_id`) and the
 * resource's own fields, in the order of core's Schema; and the `deletions` dataset, one row
 * per record removed from the store (a deletion event), naming it, never its values. The JSON
 * Schema of each dataset's rows and the Parquet column types are both derived from one Schema.
 */
import { type Field, fieldsOf, type FieldType } from "@wearflow/core/field-types"
import { Resources, ResourceName, resourceOfDataEvent, resourceOfDeletedEvent, Source, Timestamp, USER_DELETED } from "@wearflow/core/schema"
import type { OutboxEvent } from "@wearflow/core/sink"
import { JSONSchema, Schema } from "effect"
import { createHash } from "node:crypto"

/** Fields every row takes from its event. */
const EventFields = {
  event_id: Schema.UUID.annotations({ description: "the outbox event id; webhooks send the same event" }),
  event_type: Schema.String.annotations({ description: "e.g. daily.data.sleep.created" }),
  // Not re-annotated: the Timestamp identifier is what types the column.
  emitted_at: Timestamp,
  historical: Schema.Boolean.annotations({ description: "the data answers a backfill request" }),
  team_id: Schema.UUID,
  user_id: Schema.UUID,
  client_user_id: Schema.String
}

/**
 * Fields renamed in files. `date` is the Hive partition key of the layout (the day a batch was
 * sealed); a column of that name would clash with it in Athena, Spark and DuckDB.
 */
export const renamedInFiles: Readonly<Record<string, string>> = { date: "record_date" }

/** Which stored record a sample belongs to (the event's record, like a summary's `id`). */
const RecordId = Schema.UUID.annotations({ description: "the stored record the sample came from; with timestamp, it identifies the sample" })

const renamed = (fields: Schema.Struct.Fields): Schema.Struct.Fields =>
  Object.fromEntries(Object.entries(fields).map(([name, field]) => [renamedInFiles[name] ?? name, field]))

const rowSchemaOf = (resource: ResourceName) => {
  const spec = Resources[resource]
  const fields = spec.kind === "summary"
    ? { ...EventFields, ...renamed(spec.schema.fields) }
    : { ...EventFields, source: Source, record_id: RecordId, ...renamed(spec.schema.fields) }
  return Schema.Struct(fields).annotations({
    identifier: `wearflow.etl.${resource}`,
    title: `${resource} rows`,
    description: spec.kind === "summary"
      ? `One ${resource} record per row, as of its event; a later event for the same id replaces it.`
      : `One ${resource} sample per row; (record_id, timestamp) identifies a sample and the latest event wins. Two provider records with a value at one instant (Garmin's epochs, one per activity type) are two samples.`
  })
}

/** The dataset of records removed from the store (`daily.data.<resource>.deleted`), beside the resources. */
export const DELETIONS = "deletions" as const
/** What a batch holds: one resource's rows, deletions, or deleted users. */
export type Dataset = ResourceName | typeof DELETIONS | typeof DELETED_USERS

const deletionsSchema = Schema.Struct({
  ...EventFields,
  record_id: Schema.UUID.annotations({
    description: "the stored record removed: the `id` of a summary, the `record_id` of samples; drop its rows from the resource's table"
  }),
  resource: ResourceName,
  provider: Schema.String,
  source_id: Schema.String.annotations({ description: "the provider's id of the record the user deleted" })
}).annotations({
  identifier: "wearflow.etl.deletions",
  title: "deletions rows",
  description:
    "One row per record removed from the store because the user deleted it at the provider (event daily.data.<resource>.deleted). A later created event for the same record id (in its resource's files) brings it back."
})

/**
 * The dataset of users whose data Wearflow erased (`user.deleted`): every row of theirs in the
 * other datasets should go too.
 */
export const DELETED_USERS = "deleted_users" as const

const deletedUsersSchema = Schema.Struct({
  ...EventFields,
  deleted_at: Timestamp,
  erased_at: Timestamp
}).annotations({
  identifier: "wearflow.etl.deleted_users",
  title: "deleted_users rows",
  description:
    "One row per user deleted through the API whose data Wearflow has erased (event user.deleted), after the grace period. Drop every row of the user_id from every dataset."
})

export interface ResourceRows {
  readonly resource: Dataset
  /** `deletion`: rows of the deletions dataset; `user_deletion`: of deleted_users. */
  readonly kind: "summary" | "timeseries" | "deletion" | "user_deletion"
  readonly fields: ReadonlyArray<Field>
  /** JSON Schema (draft-07) of one row. */
  readonly jsonSchema: JSONSchema.JsonSchema7Root
  /** First 12 hex digits of the JSON Schema's SHA-256: changes whenever the row shape does. */
  readonly schemaVersion: string
  /** DuckDB's `read_json` columns: name → type. */
  readonly duckColumns: string
}

const duckType = (type: FieldType): string => {
  switch (type._tag) {
    case "timestamp":
      return "TIMESTAMPTZ"
    case "date":
      return "DATE"
    case "integer":
      return "BIGINT"
    case "number":
      return "DOUBLE"
    case "boolean":
      return "BOOLEAN"
    case "struct":
      return `STRUCT(${type.fields.map((f) => `"${f.name}" ${duckType(f.type)}`).join(", ")})`
    case "array":
      return `${duckType(type.item)}[]`
    // UUIDs stay strings: Athena, BigQuery and Snowflake do not all read Parquet's UUID type.
    case "uuid":
    case "string":
    case "json":
      return "VARCHAR"
  }
}

const describe = (resource: Dataset): ResourceRows => {
  const schema: Schema.Schema.AnyNoContext = resource === DELETIONS ? deletionsSchema : resource === DELETED_USERS ? deletedUsersSchema : rowSchemaOf(resource)
  const fields = fieldsOf(schema)
  const jsonSchema = JSONSchema.make(schema)
  return {
    resource,
    kind: resource === DELETIONS ? "deletion" : resource === DELETED_USERS ? "user_deletion" : Resources[resource].kind,
    fields,
    jsonSchema,
    schemaVersion: createHash("sha256").update(JSON.stringify(jsonSchema)).digest("hex").slice(0, 12),
    duckColumns: `{${fields.map((f) => `'${f.name}': '${duckType(f.type)}'`).join(", ")}}`
  }
}

/** Every dataset's rows: each resource's, then deletions and deleted users. */
export const resourceRows: ReadonlyMap<Dataset, ResourceRows> = new Map(
  [...(Object.keys(Resources) as Array<Dataset>), DELETIONS, DELETED_USERS].map((r) => [r, describe(r)])
)

/**
 * The dataset an event's rows go to: its resource for a data event, deletions for a deletion
 * event, deleted_users for `user.deleted`; undefined for other events (connections, backfill notices).
 */
export const resourceOf = (eventType: string): ResourceRows | undefined => {
  const name = resourceOfDataEvent(eventType) ??
    (resourceOfDeletedEvent(eventType) !== undefined ? DELETIONS : eventType === USER_DELETED ? DELETED_USERS : undefined)
  return name === undefined ? undefined : resourceRows.get(name)
}

const sourceName: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(renamedInFiles).map(([from, to]) => [to, from]))

/** What an event's rows take from it: its outbox fields and, from its payload, the client user id and data. */
export interface RowSource {
  readonly eventId: string
  readonly eventType: string
  /** When the event was emitted, as `Date#toISOString` writes it. */
  readonly emittedAt: string
  readonly historical: boolean
  readonly teamId: string
  readonly userId: string
  readonly recordId: string | null
  readonly clientUserId: string | undefined
  readonly data: unknown
}

/** The rows of one event, with exactly the schema's fields (missing ones null). */
export const rowsOf = (rows: ResourceRows, event: OutboxEvent): ReadonlyArray<Record<string, unknown>> =>
  rowsFrom(rows, {
    eventId: event.eventId,
    eventType: event.eventType,
    emittedAt: event.createdAt.toISOString(),
    historical: event.historical,
    teamId: event.teamId,
    userId: event.userId,
    recordId: event.recordId,
    clientUserId: event.envelope.client_user_id,
    data: event.envelope.data
  })

/** The rows of one event as the writer reads it (batches.ts): what `rowsOf` makes of the whole event. */
export const rowsFrom = (rows: ResourceRows, event: RowSource): ReadonlyArray<Record<string, unknown>> => {
  const base: Record<string, unknown> = {
    event_id: event.eventId,
    event_type: event.eventType,
    emitted_at: event.emittedAt,
    historical: event.historical,
    team_id: event.teamId,
    user_id: event.userId,
    client_user_id: event.clientUserId
  }
  const project = (values: Record<string, unknown>) => {
    const row: Record<string, unknown> = {}
    for (const field of rows.fields) {
      row[field.name] = field.name in base ? base[field.name] : values[sourceName[field.name] ?? field.name] ?? null
    }
    return row
  }
  const data = (event.data ?? {}) as Record<string, unknown>
  if (rows.kind === "deletion") {
    return [project({ record_id: event.recordId ?? data.id, resource: resourceOfDeletedEvent(event.eventType), provider: data.provider, source_id: data.source_id })]
  }
  if (rows.kind === "user_deletion") return [project({ deleted_at: data.deleted_at, erased_at: data.erased_at })]
  if (rows.kind === "summary") return [project(data)]
  const samples = Array.isArray(data.data) ? (data.data as ReadonlyArray<Record<string, unknown>>) : []
  return samples.map((sample) => project({ ...sample, source: data.source, record_id: event.recordId }))
}
