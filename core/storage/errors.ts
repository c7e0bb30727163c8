/** Which database failures are worth retrying. */
import type { SqlError } from "@effect/sql"

/** The SQLSTATE of a failed statement, when Postgres gave one. */
export const sqlState = (error: SqlError.SqlError): string | undefined => {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/**
 * Connection problems, serialization failures, resource exhaustion and shutdowns pass with
 * time (classes 08, 40, 53, 57, 58); so does an error without a SQLSTATE (no connection at
 * all). Bad data, constraint and schema errors (22, 23, 42, ...) never will.
 */
export const isTransient = (error: SqlError.SqlError): boolean => {
  const state = sqlState(error)
  return state === undefined || /^(08|40|53|57|58)/.test(state)
}
