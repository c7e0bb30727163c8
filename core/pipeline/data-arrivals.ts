/**
 * When data arrives, per user, provider, resource and UTC day (`data_arrivals`, and the latest
 * per user, provider and resource in `connection_arrivals`): an internal
 * sink on the event outbox, so the ingest path does no extra work. It reads entries (no
 * payloads) of `daily.data.<resource>.created|updated` events, takes each record's provider
 * from the store, and adds them up in the sink runner's transaction — its counts and its
 * cursor commit together, so each event counts once. Backfilled data is passed over: it
 * arrived because Wearflow asked, not because the connection is syncing.
 *
 * Unchanged re-deliveries emit no event and so are not counted; a connection that syncs
 * sends new content (a new day's summaries) every day.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { EntrySink } from "../sink.ts"
import { sinkErrorFromSql } from "../sink.ts"
import { arrayLiteral } from "../storage/pg-array.ts"

export const SINK_ID = "data-arrivals"

const DATA_EVENT = /^daily\.data\.([a-z0-9_]+)\.(created|updated)$/

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const sink: EntrySink = {
    id: SINK_ID,
    reads: "entries",
    historicalData: false,
    health: Effect.void,
    deliver: (batch) => {
      const arrivals = batch.flatMap((entry) => {
        const resource = DATA_EVENT.exec(entry.eventType)?.[1]
        return resource !== undefined && entry.recordId !== null ? [{ ...entry, resource, recordId: entry.recordId }] : []
      })
      if (arrivals.length === 0) return Effect.void
      return sql`
        with e as (
          select e.user_id, e.provider, e.resource, (e.created_at at time zone 'UTC')::date as day, e.team_id, count(*)::int as events, max(e.created_at) as last_at
          from (
            -- A lookup by id per event (a join may scan all records instead).
            select e.*, (select r.provider from records r where r.id = e.record_id) as provider
              from unnest(${arrayLiteral(arrivals.map((a) => a.userId))}::uuid[], ${arrayLiteral(arrivals.map((a) => a.teamId))}::uuid[],
                        ${arrayLiteral(arrivals.map((a) => a.recordId))}::uuid[], ${arrayLiteral(arrivals.map((a) => a.resource))}::text[],
                        ${arrayLiteral(arrivals.map((a) => a.createdAt.toISOString()))}::timestamptz[])
              as e(user_id, team_id, record_id, resource, created_at)
            offset 0 -- looked up once per event, not again for the filter below
          ) e
          where e.provider is not null
          group by 1, 2, 3, 4, 5
        ), daily as (
          insert into data_arrivals (user_id, provider, resource, day, team_id, events, last_at)
          select user_id, provider, resource, day, team_id, events, last_at from e
          on conflict (user_id, provider, resource, day) do update
            set events = data_arrivals.events + excluded.events, last_at = greatest(data_arrivals.last_at, excluded.last_at)
        )
        insert into connection_arrivals (user_id, provider, resource, team_id, last_at, last_day)
        select user_id, provider, resource, team_id, max(last_at), max(day) from e group by 1, 2, 3, 4
        on conflict (user_id, provider, resource) do update
          set last_at = greatest(connection_arrivals.last_at, excluded.last_at), last_day = greatest(connection_arrivals.last_day, excluded.last_day)`.pipe(
        Effect.asVoid,
        Effect.mapError(sinkErrorFromSql(SINK_ID))
      )
    }
  }
  return sink
})
