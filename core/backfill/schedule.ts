/**
 * Recording a backfill to run. Kept apart from the Backfills service so that linking a
 * connection (core/connections/links.ts) can schedule one inside its own transaction.
 */
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"

/** Window states a chain never revisits. */
export const FINAL = ["complete", "already_requested", "skipped", "failed", "cancelled"] as const
/** Final states that count as success for the resource. */
export const DONE = ["complete", "already_requested", "skipped"] as const

export interface ScheduleInput {
  readonly teamId: string
  readonly userId: string
  readonly provider: string
  readonly origin: "connection" | "request"
  readonly days?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
}

/**
 * Records a backfill to run (inside the caller's transaction, e.g. the one linking the
 * connection, so a connection never exists without its backfill). A backfill still running
 * for the user and provider is cancelled: it belonged to the previous connection.
 */
export const scheduleBackfill = (sql: SqlClient.SqlClient, input: ScheduleInput) =>
  Effect.gen(function* () {
    const previous = yield* sql<{ id: string }>`
      update backfills set status = 'cancelled', ended_at = now(), error = 'replaced by a new connection'
      where user_id = ${input.userId} and provider = ${input.provider} and status in ('scheduled', 'running')
      returning id`
    for (const { id } of previous) yield* cancelWindows(sql, id, "replaced by a new connection")
    const id = randomUUID()
    yield* sql`
      insert into backfills (id, team_id, user_id, provider, linked_at, origin, days, types, range_end)
      select ${id}, ${input.teamId}, ${input.userId}, ${input.provider}, c.linked_at, ${input.origin},
             ${input.days ?? null}, ${input.types ? [...input.types] : null}, now()
      from provider_connections c where c.user_id = ${input.userId} and c.provider = ${input.provider}`
    return id
  })

export const cancelWindows = (sql: SqlClient.SqlClient, backfillId: string, reason: string) =>
  sql`update backfill_windows set status = 'cancelled', error = ${reason}, completed_at = now()
      where backfill_id = ${backfillId} and status not in ${sql.in([...FINAL])}`

