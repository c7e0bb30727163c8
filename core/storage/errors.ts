/** Which database failures are worth retrying, and retrying them. */
import type { SqlError } from "@effect/sql"
import { type Duration, Effect, Schedule } from "effect"

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

const isTransientSqlError = (error: { readonly _tag: string }) => error._tag === "SqlError" && isTransient(error as SqlError.SqlError)

/**
 * Retries `effect` while it fails with a transient database error: capped exponential
 * back-off (200 ms doubling, at most 30 s apart), for at most `upTo` when given.
 */
export const retryWhileTransient = (upTo?: Duration.DurationInput) => {
  const backoff = Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("30 seconds")))
  const schedule = upTo === undefined ? backoff : backoff.pipe(Schedule.upTo(upTo))
  return <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.retry(effect, { schedule, while: isTransientSqlError })
}
