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
      ...columnsOf(spec.schema),
      ...bookkeeping
    ],
    primaryKey: ["user_id", "provider", "type", "timestamp"]
  }
})

export const quote = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`

/** DDL that creates the table, or adds columns a newer schema introduced. Idempotent. */
export const ddlOf = (schema: string, table: Table): ReadonlyArray<string> => {
  const qualified = `${quote(schema)}.${quote(table.name)}`
  const column = (c: Column) =>
    `${quote(c.name)} ${c.type}${c.nullable ? "" : " not null"}${c.name === "synced_at" ? " default now()" : ""}`
  return [
    `create table if not exists ${qualified} (${table.columns.map(column).join(", ")}, primary key (${table.primaryKey.map(quote).join(", ")}))`,
    ...table.columns.map((c) => `alter table ${qualified} add column if not exists ${column(c).replace(" not null", "")}`),
    `create index if not exists ${quote(`${table.name}_by_user`)} on ${qualified} (user_id)`
  ]
}
