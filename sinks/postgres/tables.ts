/**
 * Typed tables derived from the normalized schema: one table per resource, one column per
 * field, so analysts query plain SQL. Column types come from the Schema AST (identifiers
 * Timestamp, CalendarDate, Int, UUID, read by core/field-types.ts; nested values become jsonb).
 */
import { fieldsOf, type FieldType } from "@wearflow/core/field-types"
import { Resources, type ResourceName } from "@wearflow/core/schema"
import type { Schema } from "effect"

export type ColumnType = "uuid" | "text" | "timestamptz" | "date" | "bigint" | "double precision" | "boolean" | "jsonb"

export interface Column {
  readonly name: string
  readonly type: ColumnType
  readonly nullable: boolean
}

export interface Table {
  readonly resource: ResourceName
  readonly kind: "summary" | "timeseries"
  readonly name: string
  readonly columns: ReadonlyArray<Column>
  readonly primaryKey: ReadonlyArray<string>
}

const columnType: Record<FieldType["_tag"], ColumnType> = {
  timestamp: "timestamptz",
  date: "date",
  integer: "bigint",
  uuid: "uuid",
  string: "text",
  number: "double precision",
  boolean: "boolean",
  json: "jsonb",
  // Nested values stay whole: one jsonb column each.
  struct: "jsonb",
  array: "jsonb"
}

export const columnsOf = (schema: Schema.Schema.AnyNoContext): ReadonlyArray<Column> =>
  fieldsOf(schema).map((f) => ({ name: f.name, type: columnType[f.type._tag], nullable: f.nullable }))

/** Columns every table adds to the resource's own: tenant, delivery bookkeeping. */
const bookkeeping: ReadonlyArray<Column> = [
  { name: "team_id", type: "uuid", nullable: false },
  { name: "client_user_id", type: "text", nullable: false },
  { name: "event_id", type: "uuid", nullable: false },
  { name: "synced_at", type: "timestamptz", nullable: false }
]

export const tables: ReadonlyArray<Table> = Object.entries(Resources).map(([resource, spec]): Table => {
  if (spec.kind === "summary") {
    return {
      resource: resource as ResourceName,
      kind: "summary",
      name: resource,
      columns: [...columnsOf(spec.schema), { name: "provider", type: "text", nullable: false }, ...bookkeeping],
      primaryKey: ["id"]
    }
  }
  return {
    resource: resource as ResourceName,
    kind: "timeseries",
    name: resource,
    columns: [
      { name: "user_id", type: "uuid", nullable: false },
      { name: "provider", type: "text", nullable: false },
      // The stored record the sample came from (the event's record): two provider records
      // with a value at one instant (Garmin's epochs, one per activity type) are two rows.
      { name: "record_id", type: "uuid", nullable: false },
      ...columnsOf(spec.schema),
      ...bookkeeping
    ],
    primaryKey: ["record_id", "timestamp"]
  }
})

/** Stands for the record of a sample written before rows named their record. */
export const UNKNOWN_RECORD = "00000000-0000-0000-0000-000000000000"

export const quote = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`

/** DDL that creates the table, or adds columns a newer schema introduced. Idempotent. */
export const ddlOf = (schema: string, table: Table): ReadonlyArray<string> => {
  const qualified = `${quote(schema)}.${quote(table.name)}`
  const column = (c: Column) =>
    `${quote(c.name)} ${c.type}${c.nullable ? "" : " not null"}${c.name === "synced_at" ? " default now()" : ""}`
  return [
    `create table if not exists ${qualified} (${table.columns.map(column).join(", ")}, primary key (${table.primaryKey.map(quote).join(", ")}))`,
    ...table.columns.map((c) => `alter table ${qualified} add column if not exists ${column(c).replace(" not null", "")}`),
    ...(table.kind === "timeseries" ? [rekeyed(qualified, table)] : []),
    `create index if not exists ${quote(`${table.name}_by_user`)} on ${qualified} (user_id)`
  ]
}

/** What the catalog says one typed table has (`catalogOf` in mod.ts reads it). */
export interface TableInCatalog {
  readonly name: string
  readonly columns: ReadonlyArray<string>
  readonly primaryKey: ReadonlyArray<string>
  readonly indexedByUser: boolean
}

/**
 * Whether `ddlOf` would change anything: a table, column or index missing, or a sample table
 * still on the old key. Checked before the DDL because `alter table` locks a table even when
 * the column is there, and a replica starting beside one that writes must not wait on it.
 */
export const isCurrent = (schema: ReadonlyArray<Table>, catalog: ReadonlyArray<TableInCatalog>): boolean => {
  const found = new Map(catalog.map((t) => [t.name, t]))
  return schema.every((table) => {
    const present = found.get(table.name)
    return present !== undefined && present.indexedByUser &&
      table.columns.every((c) => present.columns.includes(c.name)) &&
      (table.kind !== "timeseries" || present.primaryKey.includes("record_id"))
  })
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`

/**
 * Moves a sample table made when samples were keyed by (user, provider, type, timestamp) to
 * the record key. Rows written before get their record from the app's `samples` table when
 * the sink shares its database (the old key identified exactly one stored sample), else
 * UNKNOWN_RECORD. Does nothing once the key includes `record_id`.
 */
const rekeyed = (qualified: string, table: Table) => `
do $rekey$
declare
  old_key name;
begin
  select c.conname into old_key from pg_constraint c
  where c.conrelid = ${literal(qualified)}::regclass and c.contype = 'p'
    and not exists (select 1 from pg_attribute a where a.attrelid = c.conrelid and a.attnum = any (c.conkey) and a.attname = 'record_id');
  if old_key is null then return; end if;
  if to_regclass('samples') is not null then
    execute format('update %s t set record_id = (select s.record_id from samples s
      where s.user_id = t.user_id and s.resource = %L and s.provider = t.provider and s.source_type = t.type and s.ts = t."timestamp"
      order by s.record_id limit 1) where t.record_id is null', ${literal(qualified)}, ${literal(table.resource)});
  end if;
  execute format('update %s set record_id = %L where record_id is null', ${literal(qualified)}, ${literal(UNKNOWN_RECORD)});
  execute format('alter table %s drop constraint %I', ${literal(qualified)}, old_key);
  execute format('alter table %s alter column record_id set not null, add primary key (${table.primaryKey.map(quote).join(", ").replace(/'/g, "''")})', ${literal(qualified)});
end
$rekey$`
