/**
 * The webhooks sink's part in retention: finished messages (delivered, or failed for good)
 * go with their attempts after their age, as do endpoint notices; the outbox keeps every
 * event a kept message refers to, since each attempt (a retry, a resend) reads its payload
 * there. Messages are made in order, so each endpoint's are walked by its index up to the
 * first one not yet past its age, found once per sweep: a sweep reads little beyond what it
 * deletes.
 */
import { SqlClient } from "@effect/sql"
import type { SinkRetention } from "@wearflow/core/sink"
import { Duration, Effect } from "effect"

const LAST_SEQ = "9223372036854775807"

export const make = Effect.map(SqlClient.SqlClient, (sql): SinkRetention => ({
  policies: [
    {
      table: "webhook_messages",
      defaultAge: Duration.days(30),
      batches: (age) =>
        Effect.gen(function* () {
          const secs = Duration.toSeconds(age)
          const bounds = yield* sql<{ id: string; bound: string }>`
            select w.id, coalesce((
              select r.seq from webhook_messages r
              where r.endpoint_id = w.id and r.created_at >= now() - make_interval(secs => ${secs})
              order by r.seq limit 1), ${LAST_SEQ}::bigint)::text as bound
            from webhook_endpoints w`
          return (limit: number) =>
            bounds.length === 0 ? Effect.succeed(0) : sql`
              delete from webhook_messages where id in (
                select old.id from unnest(${bounds.map((b) => b.id)}::uuid[], ${bounds.map((b) => b.bound)}::bigint[]) e(id, bound)
                cross join lateral (
                  select m.id from webhook_messages m
                  where m.endpoint_id = e.id and m.seq < e.bound
                    and m.status in ('delivered', 'failed') and m.updated_at < now() - make_interval(secs => ${secs})
                  order by m.seq limit ${limit}
                  for update of m skip locked) old
                limit ${limit})
              returning id`.pipe(Effect.map((rows) => rows.length))
        })
    },
    {
      table: "webhook_notices",
      defaultAge: Duration.days(30),
      batches: (age) =>
        Effect.succeed((limit: number) =>
          sql`delete from webhook_notices where id in (
                select id from webhook_notices where created_at < now() - make_interval(secs => ${Duration.toSeconds(age)})
                order by id limit ${limit} for update skip locked)
              returning id`.pipe(Effect.map((rows) => rows.length)))
    }
  ],
  // Each endpoint's first message refers to its earliest event: messages are made in outbox order.
  outboxHold: sql<{ tx: string; position: string }>`
    select o.tx::text as tx, o.position::text as position
    from webhook_endpoints w cross join lateral (
      select m.event_id from webhook_messages m where m.endpoint_id = w.id and m.event_id is not null order by m.seq limit 1) first
    join outbox o on o.event_id = first.event_id
    order by o.tx, o.position limit 1`.pipe(Effect.map(([first]) => first ?? null))
}))
