/**
 * The Postgres sink: writes every resource event into a typed table per resource
 * (`wearflow_data.activity`, `wearflow_data.heartrate`, ...) in this database or another.
 * Upserts on the record id (summaries) or the sample's record and timestamp (timeseries):
 * re-sent batches change nothing, and two records' samples at one instant are two rows. A
 * deletion event (`daily.data.<resource>.deleted`) removes the record's rows: its summary row
 * by id, or its samples by record id. Sharing the app's database, its writes commit with the
 * runner's cursor.
 *
 * Net permission: the host of SINK_POSTGRES_URL, none on the app's own database. The plugin
 * host cannot see a Postgres socket, so the sink checks its URL against what it declares itself.
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { NetPermissionDenied } from "@wearflow/core/host"
import { allowsHost, type Manifest, type Plugin } from "@wearflow/core/plugin"
import { type EventSink, type OutboxEvent, type Sink, sinkErrorFromSql } from "@wearflow/core/sink"
import { resourceOfDataEvent, resourceOfDeletedEvent } from "@wearflow/core/schema"
import { Config, Context, Effect, Layer, Option, Redacted } from "effect"
import { type Column, ddlOf, quote, type Table, tables, UNKNOWN_RECORD } from "./tables.ts"

export interface PostgresSinkConfig {
  /** Another database to write to; by default the app's own. */
  readonly url: Option.Option<Redacted.Redacted<string>>
  readonly schema: string
}

const url = Config.option(Config.redacted("SINK_POSTGRES_URL"))

/**
 * Where the URL connects: its `host` parameter when it has one (it overrides the authority, as
 * in libpq), else its host (`host:port` as written). An unparsable URL is the driver's to refuse.
 */
const targetOf = (url: Redacted.Redacted<string>) => {
  const text = Redacted.value(url)
  if (!URL.canParse(text)) return undefined
  const parsed = new URL(text)
  return parsed.searchParams.get("host") ?? parsed.host
}

export const manifest: Manifest<PostgresSinkConfig> = {
  id: "postgres",
  kind: "sink",
  version: "0.1.0",
  permissions: {
    net: url.pipe(Config.map((u) => Option.toArray(Option.flatMap(u, (value) => Option.fromNullable(targetOf(value)))))),
    env: ["SINK_POSTGRES_*"]
  },
  config: Config.all({
    url,
    schema: Config.string("SINK_POSTGRES_SCHEMA").pipe(
      Config.withDefault("wearflow_data"),
      Config.validate({ message: "SINK_POSTGRES_SCHEMA must be a plain identifier", validation: (s) => /^[a-z_][a-z0-9_]*$/.test(s) })
    )
  })
}

export class PostgresSink extends Context.Tag("wearflow/sinks/PostgresSink")<PostgresSink, Sink>() {}

const CHUNK = 1000

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const classify = sinkErrorFromSql("postgres")

const cell = (column: Column, value: unknown) =>
  value === undefined || value === null ? null : column.type === "jsonb" ? JSON.stringify(value) : value

/** Columns every row carries besides the resource's own fields. */
const bookkeeping = (event: OutboxEvent, provider: string | undefined): Record<string, unknown> => ({
  user_id: event.userId,
  provider: provider ?? "unknown",
  team_id: event.teamId,
  client_user_id: event.envelope.client_user_id,
  event_id: event.eventId,
  synced_at: new Date()
})

const rowOf = (table: Table, fields: Record<string, unknown>, extra: Record<string, unknown>) =>
  Object.fromEntries(table.columns.map((c) => [c.name, cell(c, c.name in extra ? extra[c.name] : fields[c.name])]))

const summaryRow = (table: Table, event: OutboxEvent): Record<string, unknown> | undefined => {
  const data = event.envelope.data as Record<string, unknown> & { source?: { provider?: string } }
  if (typeof data !== "object" || data === null || typeof data.id !== "string") return undefined
  return rowOf(table, data, bookkeeping(event, data.source?.provider))
}

const sampleRows = (table: Table, event: OutboxEvent): Array<Record<string, unknown>> => {
  const batch = event.envelope.data as { source?: { provider?: string }; data?: ReadonlyArray<Record<string, unknown>> }
  const extra = { ...bookkeeping(event, batch.source?.provider), record_id: event.recordId ?? UNKNOWN_RECORD }
  return (batch.data ?? []).map((sample) => rowOf(table, sample, extra))
}

/** Keeps the last row per primary key: one statement cannot upsert the same row twice. */
const lastPerKey = (table: Table, rows: ReadonlyArray<Record<string, unknown>>) => {
  const byKey = new Map<string, Record<string, unknown>>()
  for (const row of rows) byKey.set(table.primaryKey.map((k) => String(row[k])).join("\u0000"), row)
  return [...byKey.values()]
}

export const make = (sql: SqlClient.SqlClient, schema: string) =>
  Effect.gen(function* () {
    // Replicas starting together would race on the same DDL ("if not exists" does not
    // serialize catalog inserts): one creates the tables while the others wait.
    yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`select pg_advisory_xact_lock(hashtextextended(${`wearflow:sink-postgres:${schema}`}, 0))`
        yield* sql.unsafe(`create schema if not exists "${schema}"`)
        for (const table of tables) {
          for (const statement of ddlOf(schema, table)) yield* sql.unsafe(statement)
        }
      })
    )
    const byResource = new Map(tables.map((t) => [t.resource as string, t]))

    const upsert = (table: Table, rows: ReadonlyArray<Record<string, unknown>>) => {
      const updates = table.columns
        .filter((c) => !table.primaryKey.includes(c.name))
        .map((c) => `${quote(c.name)} = excluded.${quote(c.name)}`)
        .join(", ")
      return Effect.forEach(
        chunks(lastPerKey(table, rows), CHUNK),
        (chunk) =>
          sql`insert into ${sql(schema)}.${sql(table.name)} ${sql.insert(chunk)}
              on conflict (${sql.literal(table.primaryKey.map(quote).join(", "))})
              do update set ${sql.literal(updates)}`,
        { discard: true }
      )
    }

    /** A record's rows: the summary row with its id, or every sample of the record. */
    const removeRecord = (table: Table, recordId: string) =>
      sql`delete from ${sql(schema)}.${sql(table.name)} where ${sql(table.kind === "summary" ? "id" : "record_id")} = ${recordId}`

    /**
     * Writes a batch's rows a chunk at a time, in event order: only one chunk of rows per table
     * is held at once, however many samples the batch's events carry. Statements run in order,
     * so a key repeated across chunks ends with its last row, as within one; a deletion first
     * writes its table's pending rows, so it removes what came before it and nothing after.
     */
    const deliver = (batch: ReadonlyArray<OutboxEvent>) =>
      Effect.gen(function* () {
        const pending = new Map<Table, Array<Record<string, unknown>>>()
        for (const event of batch) {
          const gone = byResource.get(resourceOfDeletedEvent(event.eventType) ?? "")
          if (gone) {
            const recordId = event.recordId ?? (event.envelope.data as { id?: unknown } | null)?.id
            if (typeof recordId !== "string" || !UUID.test(recordId)) continue
            const rows = pending.get(gone)
            if (rows !== undefined) {
              pending.delete(gone)
              yield* upsert(gone, rows)
            }
            yield* removeRecord(gone, recordId)
            continue
          }
          const table = byResource.get(resourceOfDataEvent(event.eventType) ?? "")
          if (!table) continue
          const produced = table.kind === "summary" ? [summaryRow(table, event)].filter((r) => r !== undefined) : sampleRows(table, event)
          let rows = pending.get(table)
          if (rows === undefined) pending.set(table, rows = [])
          for (const row of produced) rows.push(row)
          if (rows.length >= CHUNK) {
            pending.delete(table)
            yield* upsert(table, rows)
          }
        }
        for (const [table, rows] of pending) yield* upsert(table, rows)
      }).pipe(Effect.mapError(classify))

    const health = sql`select 1`.pipe(Effect.asVoid, Effect.mapError(classify))

    return { id: manifest.id, deliver, health } satisfies EventSink
  })

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * Runs `deliver` outside the caller's transaction. @effect/sql finds the open transaction
 * through one context tag shared by every client, so a sink on another database would
 * otherwise send its statements down the runner's connection to the app's database.
 */
const outsideCallerTransaction = (sink: EventSink): EventSink => ({
  ...sink,
  deliver: (batch) => Effect.mapInputContext(sink.deliver(batch), Context.omit(SqlClient.TransactionConnection))
})

/** Fails unless the URL's host is among `declared` (hosts as the manifest's `net` lists them). */
const checkDeclared = (declared: ReadonlyArray<string>, url: Redacted.Redacted<string>) => {
  const target = targetOf(url)
  if (target === undefined) return Effect.void
  const parsed = new URL(Redacted.value(url))
  const allowed = parsed.searchParams.has("host") ? declared.includes(target) : allowsHost(declared, parsed)
  return allowed ? Effect.void : Effect.fail(new NetPermissionDenied({ plugin: manifest.id, host: target }))
}

/**
 * The sink on the app's database (SqlClient), or on SINK_POSTGRES_URL when set, whose host
 * must be among `declared` (the manifest's `net`): checked before connecting.
 */
export const layerDeclaring = (declared: Config.Config<ReadonlyArray<string>>) => Layer.scoped(
  PostgresSink,
  Effect.gen(function* () {
    const config = yield* manifest.config
    if (Option.isNone(config.url)) return yield* make(yield* SqlClient.SqlClient, config.schema)
    yield* checkDeclared(yield* declared, config.url.value)
    const own = yield* PgClient.make({ url: config.url.value, applicationName: "wearflow-sink-postgres" }).pipe(
      Effect.provide(Reactivity.layer)
    )
    return outsideCallerTransaction(yield* make(own, config.schema))
  })
)

export const layer = layerDeclaring(manifest.permissions.net)

export const plugin = { manifest, layer, sink: { tag: PostgresSink } } satisfies Plugin
