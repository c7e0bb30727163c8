/**
 * The ETL sink's part in retention: written batches' rows go after their age (their files
 * stay in the bucket; failed batches stay for an operator), and the outbox keeps every event
 * still staged for a file, since the sink reads its payload only when it writes the file.
 */
import { SqlClient } from "@effect/sql"
import type { SinkRetention } from "@wearflow/core/sink"
import { Duration, Effect } from "effect"

export const make = Effect.map(SqlClient.SqlClient, (sql): SinkRetention => ({
  policies: [{
    table: "etl_batches",
    defaultAge: Duration.days(30),
    batches: (age) =>
      Effect.succeed((limit: number) =>
        sql`delete from etl_batches where id in (
              select id from etl_batches where status = 'written' and written_at < now() - make_interval(secs => ${Duration.toSeconds(age)})
              order by id limit ${limit} for update skip locked)
            returning id`.pipe(Effect.map((rows) => rows.length)))
  }],
  // A chunk's events are in outbox order, so the first staged event is the first of some chunk.
  outboxHold: sql<{ tx: string; position: string }>`
    select o.tx::text as tx, o.position::text as position
    from outbox o where o.position in (select p.positions[1] from etl_pending p)
    order by o.tx, o.position limit 1`.pipe(Effect.map(([first]) => first ?? null))
}))
