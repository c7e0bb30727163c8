/**
 * Typed tables derived from the normalized schema: one table per resource, one column per
 * field, so analysts query plain SQL. Column types come from the Schema AST (identifiers
 * Timestamp, CalendarDate, Int, UUID; nested structs become jsonb).
 */
import { Resources, type ResourceName } from "@wearflow/core/schema"
import { Schema, SchemaAST as AST } from "effect"

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

const byIdentifier: Record<string, ColumnType> = {
  Timestamp: "timestamptz",
  CalendarDate: "date",
  Int: "bigint",
  UUID: "uuid"
}

const isNull = (ast: AST.AST) => AST.isLiteral(ast) && ast.literal === null

export const columnTypeOf = (ast: AST.AST): { readonly type: ColumnType; readonly nullable: boolean } => {
  switch (ast._tag) {
    case "Union": {
      const members = ast.types.filter((t) => !isNull(t))
      const nullable = members.length < ast.types.length
      if (members.length === 1) return { type: columnTypeOf(members[0]!).type, nullable }
      if (members.every((t) => AST.isLiteral(t) && typeof t.literal === "string")) return { type: "text", nullable }
      return { type: "jsonb", nullable }
    }
    case "Refinement": {
      const identifier = AST.getIdentifierAnnotation(ast)
      if (identifier._tag === "Some" && byIdentifier[identifier.value]) return { type: byIdentifier[identifier.value]!, nullable: false }
      return columnTypeOf(ast.from)
    }
    case "Transformation":
      return columnTypeOf(ast.to)
    case "StringKeyword":
    case "TemplateLiteral":
      return { type: "text", nullable: false }
    case "NumberKeyword":
      return { type: "double precision", nullable: false }
    case "BooleanKeyword":
      return { type: "boolean", nullable: false }
    case "Literal":
      return { type: typeof ast.literal === "number" ? "double precision" : typeof ast.literal === "boolean" ? "boolean" : "text", nullable: false }
    default:
      return { type: "jsonb", nullable: false }
  }
}

export const columnsOf = (schema: Schema.Schema.AnyNoContext): ReadonlyArray<Column> => {
  const ast = AST.typeAST(schema.ast)
  if (!AST.isTypeLiteral(ast)) throw new Error("resource schemas are structs")
  return ast.propertySignatures.map((p) => ({ name: String(p.name), ...columnTypeOf(p.type) }))
}

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
