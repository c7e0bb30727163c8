/** What operators see of each polled connection: last poll, cursor, next poll, last error. */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export interface ConnectionSyncStatus {
  readonly user_id: string
  readonly provider: string
  readonly cursor: string | null
  readonly rounds: number
  readonly last_poll_at: string | null
  readonly next_poll_at: string | null
  readonly last_error: string | null
  /** `polling`, `waiting` (started, between rounds), `starting`, or `ended` (with `end_reason`). */
  readonly state: "polling" | "waiting" | "starting" | "ended"
  readonly end_reason: string | null
}

const iso = (date: Date | null) => (date === null ? null : date.toISOString())

export class SyncStatus extends Effect.Service<SyncStatus>()("wearflow/SyncStatus", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    /** The team's polled connections (every team's when undefined; one user's when given), by user and provider. */
    const list = Effect.fn("SyncStatus.list")(function* (teamId: string | undefined, userId?: string) {
      const rows = yield* sql<{
        user_id: string; provider: string; cursor: string | null; rounds: number; last_poll_at: Date | null; next_poll_at: Date | null
        last_error: string | null; round_started_at: Date | null; started_at: Date | null; ended_at: Date | null; end_reason: string | null
      }>`
        select c.user_id, c.provider, s.cursor, s.rounds, s.last_poll_at, s.next_poll_at, s.last_error, s.round_started_at,
               s.started_at, s.ended_at, s.end_reason
        from connection_sync s join provider_connections c on c.id = s.connection_id join users u on u.id = c.user_id
        where ${teamId === undefined ? sql`true` : sql`u.team_id = ${teamId}`} and ${userId === undefined ? sql`true` : sql`u.id = ${userId}`}
        order by c.user_id, c.provider`
      return rows.map((r): ConnectionSyncStatus => ({
        user_id: r.user_id,
        provider: r.provider,
        cursor: r.cursor,
        rounds: r.rounds,
        last_poll_at: iso(r.last_poll_at),
        next_poll_at: iso(r.next_poll_at),
        last_error: r.last_error,
        state: r.ended_at !== null ? "ended" : r.round_started_at !== null ? "polling" : r.started_at !== null ? "waiting" : "starting",
        end_reason: r.end_reason
      }))
    })
    return { list } as const
  })
}) {}
