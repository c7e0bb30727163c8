/**
 * The Postgres sink: writes every resource event into a typed table per resource
 * (`wearflow_data.activity`, `wearflow_data.heartrate`, ...) in this database or another.
 * Upserts on the record id (summaries) or the sample's record and timestamp (timeseries):
 * re-sent batches change nothing, and two records' samples at one instant are two rows. A
 * deletion event (`daily.data.<resource>.deleted`) removes the record's rows: its summary row
 * by id, or its samples by record id. A deleted user's rows go when the user is erased
 * (`eraseUser`). Rows are made in SQL from the events' JSON. Sharing the
 * app's database, the sink reads the payloads straight from the outbox (they never travel to
 * the app and back) and its writes commit with the runner's cursor.
 *
 * Net permission: the host of SINK_POSTGRES_URL, none on the app's own database. The plugin
 * host cannot see a Postgres socket, so the sink checks its URL against what it declares itself.
 */
import { Reactivity } from "@effect/experimental"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { NetPermissionDenied } from "@wearflow/core/host"
import { allowsHost, type Manifest, type Plugin } from "@wearflow/core/plugin"
import { type EntrySink, type EventSink, type OutboxEntry, type OutboxEvent, type Sink, sinkErrorFromSql } from "@wearflow/core/sink"
import { resourceOfDataEvent, resourceOfDeletedEvent } from "@wearflow/core/schema"
import { retryWhileTransient } from "@wearflow/core/storage/errors"
import { Config, Context, Effect, Layer, Option, Redacted } from "effect"
import { type Column, ddlOf, isCurrent, quote, type Table, type TableInCatalog, tables, UNKNOWN_RECORD } from "./tables.ts"

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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const classify = sinkErrorFromSql("postgres")

/**
 * Events per statement: a statement holds its events' JSON and sorts its rows once (to keep the
 * last row per key), so both stay within Postgres' default work_mem (4 MB) for timeseries
 * events of 1,000 samples; past it they spill to disk (64 such events: 2.6 s for 64,000 rows,
 * against 16 events: 0.33 s for 16,000). A summary event is one row.
 */
const eventsPerStatement = (table: Table) => (table.kind === "summary" ? 1000 : 16)

/**
 * Where a statement reads its events from: the outbox itself, by position, when the sink shares
 * the app's database (the payloads never leave Postgres), or the events sent along as one array
 * per field when it writes to another database.
 */
type Events =
  | { readonly _tag: "Outbox"; readonly positions: ReadonlyArray<string> }
  | { readonly _tag: "Sent"; readonly events: ReadonlyArray<OutboxEvent> }

const isUuid = (value: unknown): value is string => typeof value === "string" && UUID.test(value)

export const make = (sql: SqlClient.SqlClient, schema: string) =>
  Effect.map(setUp(sql, schema), (writer): EntrySink => ({
    id: manifest.id,
    reads: "entries",
    health: writer.health,
    eraseUser: writer.eraseUser,
    deliver: (batch) =>
      writer.write(batch, (events) => ({ _tag: "Outbox", positions: events.map((e) => e.position) }), (entry) => entry.recordId)
  }))

/** The sink on another database: the events' payloads go along with the statements. */
export const makeSending = (sql: SqlClient.SqlClient, schema: string) =>
  Effect.map(setUp(sql, schema), (writer): EventSink => ({
    id: manifest.id,
    health: writer.health,
    eraseUser: writer.eraseUser,
    deliver: (batch) =>
      writer.write(batch, (events) => ({ _tag: "Sent", events }), (event) => event.recordId ?? (event.envelope.data as { id?: unknown } | null)?.id)
  }))

/** The typed tables of `schema` as the catalog has them; reading it takes no table lock. */
const catalogOf = (sql: SqlClient.SqlClient, schema: string) =>
  sql<{ name: string; columns: Array<string>; primary_key: Array<string>; indexed_by_user: boolean }>`
    select c.relname::text as name,
      array(select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
      array(select a.attname::text from pg_constraint k join pg_attribute a on a.attrelid = k.conrelid and a.attnum = any (k.conkey)
            where k.conrelid = c.oid and k.contype = 'p') as primary_key,
      exists (select 1 from pg_index x join pg_class i on i.oid = x.indexrelid
              where x.indrelid = c.oid and i.relname = c.relname || '_by_user') as indexed_by_user
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relkind in ('r', 'p')`.pipe(
    Effect.map((rows): ReadonlyArray<TableInCatalog> =>
      rows.map((r) => ({ name: r.name, columns: r.columns, primaryKey: r.primary_key, indexedByUser: r.indexed_by_user })))
  )

const setUp = (sql: SqlClient.SqlClient, schema: string) =>
  Effect.gen(function* () {
    // Replicas starting together would race on the same DDL ("if not exists" does not
    // serialize catalog inserts): one creates the tables while the others wait. Tables already
    // as they should be get no DDL at all: its locks would wait on (or deadlock with) another
    // process's deliveries.
    if (!isCurrent(tables, yield* catalogOf(sql, schema))) yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`select pg_advisory_xact_lock(hashtextextended(${`wearflow:sink-postgres:${schema}`}, 0))`
        yield* sql.unsafe(`create schema if not exists "${schema}"`)
        for (const table of tables) {
          for (const statement of ddlOf(schema, table)) yield* sql.unsafe(statement)
        }
      })
    ).pipe(retryWhileTransient("1 minute")) // a deadlock with a running replica's deliveries (40P01) passes on a retry
    const byResource = new Map(tables.map((t) => [t.resource as string, t]))
    const statements = new Map(tables.map((t) => [t, upsertOf(schema, t)]))

    /** The events as rows `e(n, event_id, user_id, team_id, record_id, envelope)`, `n` their order. */
    const eventRows = (events: Events) =>
      events._tag === "Outbox"
        ? sql`select b.n, o.event_id, o.user_id, o.team_id, o.record_id, o.payload as envelope
              from unnest(${events.positions}::bigint[]) with ordinality as b(position, n) join outbox o on o.position = b.position`
        : sql`select * from unnest(
                ${events.events.map((e) => e.eventId)}::uuid[], ${events.events.map((e) => e.userId)}::uuid[],
                ${events.events.map((e) => e.teamId)}::uuid[], ${events.events.map((e) => e.recordId)}::uuid[],
                ${events.events.map((e) => JSON.stringify(e.envelope))}::jsonb[]
              ) with ordinality as e(event_id, user_id, team_id, record_id, envelope, n)`

    // Each event's parts are taken out of its JSON once (`materialized`): evaluated per row,
    // every sample would read its whole event again.
    const upsert = (table: Table, events: Events) =>
      sql`with e as materialized (
            select n, event_id, user_id, team_id, record_id, envelope->>'client_user_id' as client_user_id,
                   coalesce(envelope->'data'->'source'->>'provider', 'unknown') as provider, envelope->'data' as data
            from (${eventRows(events)}) r
          ) ${sql.literal(statements.get(table)!)}`

    /** A record's rows: the summary row with its id, or every sample of the record. */
    const removeRecord = (table: Table, recordId: string) =>
      sql`delete from ${sql(schema)}.${sql(table.name)} where ${sql(table.kind === "summary" ? "id" : "record_id")} = ${recordId}`

    /**
     * Writes a batch in event order, a statement per table and run of events: a deletion first
     * writes its table's pending events, so it removes what came before it and nothing after.
     * Within a statement, the last row per key wins, as if each event were written in turn.
     */
    const write = <E extends OutboxEntry>(
      batch: ReadonlyArray<E>,
      source: (events: ReadonlyArray<E>) => Events,
      deletedRecord: (event: E) => unknown
    ) =>
      Effect.gen(function* () {
        const pending = new Map<Table, Array<E>>()
        const flush = (table: Table) => {
          const events = pending.get(table) ?? []
          pending.delete(table)
          return events.length === 0 ? Effect.void : upsert(table, source(events))
        }
        for (const event of batch) {
          const gone = byResource.get(resourceOfDeletedEvent(event.eventType) ?? "")
          if (gone) {
            const recordId = deletedRecord(event)
            if (!isUuid(recordId)) continue
            yield* flush(gone)
            yield* removeRecord(gone, recordId)
            continue
          }
          const table = byResource.get(resourceOfDataEvent(event.eventType) ?? "")
          if (!table) continue
          let events = pending.get(table)
          if (events === undefined) pending.set(table, events = [])
          events.push(event)
          if (events.length >= eventsPerStatement(table)) yield* flush(table)
        }
        for (const table of [...pending.keys()]) yield* flush(table)
      }).pipe(Effect.mapError(classify))

    const health = sql`select 1`.pipe(Effect.asVoid, Effect.mapError(classify))

    /** A deleted user's rows, from every resource's table. */
    const eraseUser = (userId: string) =>
      Effect.forEach(tables, (table) => sql`delete from ${sql(schema)}.${sql(table.name)} where user_id = ${userId}`, { discard: true }).pipe(
        Effect.mapError(classify)
      )

    return { write, health, eraseUser } as const
  })

/**
 * The upsert of `table`'s rows from events `e` (the CTE `upsert` puts in front), all in SQL:
 * a summary event is one row (its data, when it has a string id), a timeseries event one row
 * per sample. The record's fields come out of the JSON typed as their columns (whole nested
 * values as jsonb); the bookkeeping columns from the event. The last row per key wins: one
 * statement cannot upsert the same row twice.
 */
const upsertOf = (schema: string, table: Table): string => {
  const own = table.columns.filter((c) => !(c.name in bookkeepingOf(table)))
  // Integers read as numeric first: JSON may write one as 52.0.
  const definition = own.map((c) => `${quote(c.name)} ${c.type === "bigint" ? "numeric" : c.type}`).join(", ")
  const value = (c: Column) => bookkeepingOf(table)[c.name] ?? `s.${quote(c.name)}${c.type === "bigint" ? "::bigint" : ""}`
  const names = table.columns.map((c) => quote(c.name)).join(", ")
  const keys = table.primaryKey.map(quote).join(", ")
  const updates = table.columns
    .filter((c) => !table.primaryKey.includes(c.name))
    .map((c) => `${quote(c.name)} = excluded.${quote(c.name)}`)
    .join(", ")
  const data = "e.data"
  const rows = table.kind === "summary"
    ? `from e, jsonb_to_record(case when jsonb_typeof(${data}->'id') = 'string' then ${data} end) as s(${definition})
       where jsonb_typeof(${data}->'id') = 'string'
       order by ${keys}, e.n desc`
    : `from e, rows from (jsonb_to_recordset(case when jsonb_typeof(${data}->'data') = 'array' then ${data}->'data' end) as (${definition}))
         with ordinality as s(${own.map((c) => quote(c.name)).join(", ")}, k)
       order by ${keys}, e.n desc, s.k desc`
  return `
    insert into ${quote(schema)}.${quote(table.name)} (${names})
    select distinct on (${keys}) ${table.columns.map((c) => `${value(c)} as ${quote(c.name)}`).join(", ")}
    ${rows}
    on conflict (${keys}) do update set ${updates}`
}

/** Columns every row takes from its event rather than the record's fields, as SQL on `e`. */
const bookkeepingOf = (table: Table): Record<string, string> => ({
  user_id: "e.user_id",
  provider: "e.provider",
  team_id: "e.team_id",
  client_user_id: "e.client_user_id",
  event_id: "e.event_id",
  synced_at: "now()",
  ...(table.kind === "timeseries" ? { record_id: `coalesce(e.record_id, '${UNKNOWN_RECORD}'::uuid)` } : {})
})

/**
 * Runs `deliver` outside the caller's transaction. @effect/sql finds the open transaction
 * through one context tag shared by every client, so a sink on another database would
 * otherwise send its statements down the runner's connection to the app's database.
 */
const outsideCallerTransaction = (sink: EventSink): EventSink => ({
  ...sink,
  deliver: (batch) => Effect.mapInputContext(sink.deliver(batch), Context.omit(SqlClient.TransactionConnection)),
  ...(sink.eraseUser === undefined ? {} : {
    eraseUser: (userId: string) => Effect.mapInputContext(sink.eraseUser!(userId), Context.omit(SqlClient.TransactionConnection))
  })
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
    return outsideCallerTransaction(yield* makeSending(own, config.schema))
  })
)

export const layer = layerDeclaring(manifest.permissions.net)

export const plugin = { manifest, layer, sink: { tag: PostgresSink } } satisfies Plugin
