/**
 * Erasure: once a deleted user's grace period has passed, everything Wearflow keeps of them
 * goes, in one transaction per user — each sink's own rows (`Sink.eraseUser`: typed tables,
 * webhook messages and attempts, ETL staging), their raw notification bodies, parked items,
 * outbox events and dead letters, their stored activity files (those no other user has), then
 * the user's row and every row keyed to it (connections, records, samples, activity file
 * entries, backfills, polls, link sessions). Then one `user.deleted`
 * event goes into the outbox so sinks tell downstream systems to erase their copies.
 *
 * Before the sinks' part the transaction locks every sink's cursor: a runner round in flight
 * finishes first, and none starts until the user's events are gone, so no sink writes them
 * back. The slow parts (raw bodies, the cascade of the user's records) run before it.
 *
 * Raw bodies: a body naming one of the user's provider accounts loses the user's items;
 * what is left of other provider users' items stays (they are those users' data), and a body
 * with nothing else left is deleted once processed (an unprocessed one is emptied). Bodies
 * fetched for the user alone (history pages, polled pages, bodies their records came from
 * that do not name the account) are theirs whole. A provider account another live user shares
 * is that user's data too: its bodies stay, for raw-body retention to delete.
 *
 * No tombstone is kept: the user's id lives on only in the `user.deleted` event itself.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Metric, Schedule } from "effect"
import { appendEvents, newEvent } from "../outbox.ts"
import { ActivityFiles } from "../pipeline/files.ts"
import { type DeletedUser, USER_DELETED } from "../schema.ts"
import { Sinks } from "../sink.ts"
import { retryWhileTransient } from "../storage/errors.ts"
import { stripUser } from "./bodies.ts"
import { ErasureSettings } from "./deletion.ts"
import * as OutboxWake from "../outbox-wake.ts"

export const usersErased = Metric.counter("wearflow_users_erased_total")

/** Users erased per sweep at most (each in its own transaction). */
const BATCH = 20

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const sinks = yield* Sinks
  const activityFiles = yield* ActivityFiles

  /** The user's raw bodies: their items out, bodies with nothing else left gone. */
  const eraseBodies = (userId: string) =>
    Effect.gen(function* () {
      const owned = yield* sql<{ provider: string; provider_user_id: string; shared: boolean }>`
        select distinct c.provider, c.provider_user_id, exists (
          select 1 from provider_connections o join users u on u.id = o.user_id
          where o.provider = c.provider and o.provider_user_id = c.provider_user_id and o.user_id <> c.user_id and u.deleted_at is null
        ) as shared
        from provider_connections c where c.user_id = ${userId}`
      const accounts = owned.filter((a) => !a.shared)
      // Bodies seen, and those that are the user's alone. One account per provider, so a body
      // (of one provider) is looked at once.
      const seen = new Set<number>()
      const theirs: Array<number> = []
      for (const account of accounts) {
        // Ids first, then one body at a time: bodies may be large.
        const found = yield* sql<{ id: string }>`
          select id from inbox where provider = ${account.provider} and strpos(body, ${account.provider_user_id}) > 0 order by id`
        for (const { id: text } of found) {
          const id = Number(text)
          seen.add(id)
          const [row] = yield* sql<{ body: string }>`select body from inbox where id = ${id}`
          if (row === undefined) continue
          const stripped = stripUser(row.body, account.provider_user_id)
          if (stripped._tag === "Theirs") theirs.push(id)
          else yield* sql`update inbox set body = ${stripped.body} where id = ${id}`
        }
        yield* sql`delete from unlinked_notifications where provider = ${account.provider} and provider_user_id = ${account.provider_user_id}`
      }
      // Bodies fetched for the user alone; with a shared account they may be the other user's too.
      if (accounts.length === owned.length) {
        const fetched = yield* sql<{ id: string }>`
          select inbox_id as id from records where user_id = ${userId}
          union select p.inbox_id from backfill_pages p join backfill_windows w on w.id = p.window_id where w.user_id = ${userId} and p.inbox_id is not null
          union select p.inbox_id from sync_pages p join provider_connections c on c.id = p.connection_id where c.user_id = ${userId} and p.inbox_id is not null`
        for (const row of fetched) if (!seen.has(Number(row.id))) theirs.push(Number(row.id))
      }
      if (theirs.length === 0) return
      // Processed and needed by nothing: deleted. Still to be processed: emptied (it yields nothing).
      yield* sql`
        delete from inbox i where i.id = any(${theirs}::bigint[]) and i.processed_at is not null
          and not exists (select 1 from unlinked_notifications u where u.inbox_id = i.id)
          and not exists (select 1 from inbox c where (c.source_inbox_id = i.id or c.part_of = i.id) and c.processed_at is null)`
      yield* sql`update inbox set body = '{}' where id = any(${theirs}::bigint[])`
    })

  /** Erases one user if their grace period has passed and nobody else is at it; whether it did. */
  const eraseOne = (userId: string) =>
    Effect.gen(function* () {
      const [user] = yield* sql<{ id: string; team_id: string; client_user_id: string; deleted_at: Date }>`
        select id, team_id, client_user_id, deleted_at from users
        where id = ${userId} and deleted_at is not null and erase_after <= now()
        for update skip locked`
      if (!user) return false
      yield* eraseBodies(userId)
      // Stored activity files no other user has (files are stored once per content); a failure
      // leaves the user for the next sweep, and removing a file again is harmless.
      const files = yield* sql<{ location: string }>`
        select distinct f.location from activity_files f where f.user_id = ${userId}
          and not exists (select 1 from activity_files o where o.location = f.location and o.user_id <> f.user_id)`
      yield* activityFiles.remove(files.map((f) => f.location))
      // The user's events, found before the sinks are held (the outbox has no index by user).
      const [last] = yield* sql<{ position: string }>`select coalesce(max(position), 0)::text as position from outbox`
      const events = yield* sql<{ position: string; event_id: string }>`select position, event_id from outbox where user_id = ${userId}`
      yield* sql`delete from sink_dead_letters where event_id = any(${events.map((e) => e.event_id)}::uuid[])`
      // Every row keyed to the user goes with them (foreign keys, and the samples trigger).
      yield* sql`delete from backfill_windows where user_id = ${userId}`
      yield* sql`delete from users where id = ${userId}`
      // Waits for runner rounds in flight, and holds off new ones, only for the sinks' part.
      yield* sql`select sink_id from sink_cursors order by sink_id for update`
      for (const { sink } of sinks) if (sink.eraseUser) yield* sink.eraseUser(userId)
      yield* sql`delete from outbox where position = any(${events.map((e) => e.position)}::bigint[]) or (position > ${last?.position ?? "0"}::bigint and user_id = ${userId})`
      const data: DeletedUser = {
        user_id: user.id,
        client_user_id: user.client_user_id,
        deleted_at: user.deleted_at.toISOString(),
        erased_at: new Date().toISOString()
      }
      yield* appendEvents(sql, [newEvent({ event_type: USER_DELETED, data, user_id: user.id, client_user_id: user.client_user_id, team_id: user.team_id }, null)])
      return true
    }).pipe(sql.withTransaction, Effect.tap(OutboxWake.ring))

  /** Erases every user whose grace period has passed, a few at a time; answers how many. */
  const sweep = Effect.gen(function* () {
    let erased = 0
    for (;;) {
      const due = yield* sql<{ id: string }>`
        select id from users where erase_after <= now() and deleted_at is not null order by erase_after limit ${BATCH}`
      let done = 0
      for (const { id } of due) {
        const ok = yield* eraseOne(id).pipe(
          retryWhileTransient("1 minute"),
          Effect.catchTags({
            SinkError: (error) =>
              Effect.logWarning("a sink could not erase a deleted user; trying again later").pipe(
                Effect.annotateLogs({ user_id: id, error: error.message }),
                Effect.as(false)
              ),
            FileStoreError: (error) =>
              Effect.logWarning("could not remove a deleted user's activity files; trying again later").pipe(
                Effect.annotateLogs({ user_id: id, error: error.message }),
                Effect.as(false)
              )
          })
        )
        if (ok) {
          done++
          yield* Metric.increment(usersErased)
          yield* Effect.logInfo("erased a deleted user's data").pipe(Effect.annotateLogs("user_id", id))
        }
      }
      erased += done
      if (due.length < BATCH || done === 0) return erased
    }
  })

  return { sweep, eraseOne } as const
})

/** Sweeps at start and every `interval` (ErasureSettings) for the lifetime of the layer; any process may run it. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const settings = yield* ErasureSettings
    const { sweep } = yield* make
    yield* sweep.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("user erasure sweep failed; trying again later", cause)),
      Effect.repeat(Schedule.spaced(settings.interval)),
      Effect.annotateLogs("module", "UserErasure"),
      Effect.forkScoped
    )
  })
)
