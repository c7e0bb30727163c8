/**
 * What a field of a normalized Schema is, read from its AST: the shared ground from which
 * sinks derive their own column types (Postgres tables, Parquet files). Identifiers on
 * refinements (Timestamp, CalendarDate, Int, UUID) carry the meaning a plain string lacks.
 */
import { type Schema, SchemaAST as AST } from "effect"

export type FieldType =
  | { readonly _tag: "timestamp" | "date" | "integer" | "uuid" | "string" | "number" | "boolean" | "json" }
  | { readonly _tag: "struct"; readonly fields: ReadonlyArray<Field> }
  | { readonly _tag: "array"; readonly item: FieldType }

export interface Field {
  readonly name: string
  readonly type: FieldType
  readonly nullable: boolean
}

const byIdentifier: Record<string, FieldType["_tag"]> = {
  Timestamp: "timestamp",
  CalendarDate: "date",
  Int: "integer",
  UUID: "uuid"
}

const isNull = (ast: AST.AST) => AST.isLiteral(ast) && ast.literal === null

const fieldsOfAst = (ast: AST.TypeLiteral): ReadonlyArray<Field> =>
  ast.propertySignatures.map((p) => ({ name: String(p.name), ...fieldTypeOf(p.type) }))

export const fieldTypeOf = (ast: AST.AST): { readonly type: FieldType; readonly nullable: boolean } => {
  switch (ast._tag) {
    case "Union": {
      const members = ast.types.filter((t) => !isNull(t))
      const nullable = members.length < ast.types.length
      if (members.length === 1) return { type: fieldTypeOf(members[0]!).type, nullable }
      if (members.every((t) => AST.isLiteral(t) && typeof t.literal === "string")) return { type: { _tag: "string" }, nullable }
      return { type: { _tag: "json" }, nullable }
    }
    case "Refinement": {
      const identifier = AST.getIdentifierAnnotation(ast)
      const known = identifier._tag === "Some" ? byIdentifier[identifier.value] : undefined
      return known ? { type: { _tag: known } as FieldType, nullable: false } : fieldTypeOf(ast.from)
    }
    case "Transformation":
      return fieldTypeOf(ast.to)
    case "StringKeyword":
    case "TemplateLiteral":
      return { type: { _tag: "string" }, nullable: false }
    case "NumberKeyword":
      return { type: { _tag: "number" }, nullable: false }
    case "BooleanKeyword":
      return { type: { _tag: "boolean" }, nullable: false }
    case "Literal":
      return {
        type: { _tag: typeof ast.literal === "number" ? "number" : typeof ast.literal === "boolean" ? "boolean" : "string" },
        nullable: false
      }
    case "TypeLiteral":
      return { type: { _tag: "struct", fields: fieldsOfAst(ast) }, nullable: false }
    case "TupleType":
      return ast.elements.length === 0 && ast.rest.length === 1
        ? { type: { _tag: "array", item: fieldTypeOf(ast.rest[0]!.type).type }, nullable: false }
        : { type: { _tag: "json" }, nullable: false }
    default:
      return { type: { _tag: "json" }, nullable: false }
  }
}

/** The fields of a struct schema, in declaration order. */
export const fieldsOf = (schema: Schema.Schema.AnyNoContext): ReadonlyArray<Field> => {
  const ast = AST.typeAST(schema.ast)
  if (!AST.isTypeLiteral(ast)) throw new Error("expected a struct schema")
  return fieldsOfAst(ast)
}
