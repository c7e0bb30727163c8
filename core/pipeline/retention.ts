/**
 * Retention: every table that grows with use has a policy, and one background job on the
 * engine enforces them all — at start and every `interval`, each policy a batch at a time (`limit` rows per
 * statement, rows others hold skipped), so no statement runs long or holds many locks.
 *
 * - inbox: processed raw bodies. Kept: bodies not yet processed, bodies parked for a
 *   provider user nobody has linked yet (linking replays them), bodies whose pulled bodies or
 *   parts are not processed yet.
 * - ingest_queue: completed jobs.
 * - outbox: events every sink has passed (each sink's cursor is beyond them) and none still
 *   reads (a sink's `retention.outboxHold`: staged for a file, a message it may resend).
 * - unlinked_notifications: parked items nobody linked in time (their bodies then go as processed ones).
 * - cluster_messages / cluster_replies: the journals of finished workflows (and their clocks).
 * - sink_dead_letters, sync_pages, link_sessions: bookkeeping past its use.
 * - records / samples: health data, only when the operator sets an age (off by default);
 *   otherwise kept until the user is deleted.
 * - each sink's own tables (core/sink.ts SinkRetention), e.g. webhook messages, ETL batches.
 */
import { Singleton } from "@effect/cluster"
import { SqlClient, type SqlError } from "@effect/sql"
import { Config, Duration, Effect, Metric, Option, Schedule } from "effect"
import { type SinkRetention, Sinks } from "../sink.ts"
import { retryWhileTransient } from "../storage/errors.ts"

/** Ages per core table; `records` unset keeps health data until its user is deleted. */
export interface RetentionAges {
  readonly inbox: Duration.Duration
  readonly queue: Duration.Duration
  readonly outbox: Duration.Duration
  readonly parked: Duration.Duration
  readonly workflows: Duration.Duration
  readonly deadLetters: Duration.Duration
  readonly syncPages: Duration.Duration
  readonly linkSessions: Duration.Duration
  readonly records: Option.Option<Duration.Duration>
}

export interface RetentionOptions {
  readonly ages: RetentionAges
  /** How often to sweep. */
  readonly interval: Duration.DurationInput
  /** Rows deleted per statement. */
  readonly batchSize?: number
}

/** Rows each policy removed, by table. */
export const rowsRemoved = Metric.counter("wearflow_retention_rows_removed_total", {
  description: "rows the retention job removed, by table"
})
const removedFrom = (table: string) => Metric.tagged(rowsRemoved, "table", table)

interface Policy {
  readonly table: string
  /** At the start of a sweep (bounds read once): the statement removing a batch of at most `limit` rows; how many went. */
  readonly batches: Effect.Effect<(limit: number) => Effect.Effect<number, SqlError.SqlError>, SqlError.SqlError>
}

/** A policy whose batches need nothing read first. */
const policy = (table: string, remove: (limit: number) => Effect.Effect<number, SqlError.SqlError>): Policy => ({ table, batches: Effect.succeed(remove) })

const secondsOf = (age: Duration.Duration) => Duration.toSeconds(age)

/** The age of a sink's table: WEARFLOW_RETENTION_<TABLE>, else the sink's default. */
const sinkAge = (table: string, fallback: Duration.Duration) =>
  Config.duration(`WEARFLOW_RETENTION_${table.toUpperCase()}`).pipe(Config.withDefault(fallback))

/** A point in outbox order (tx, position). */
interface Point {
  readonly tx: string
  readonly position: string
}
const before = (a: Point, b: Point) => BigInt(a.tx) < BigInt(b.tx) || (a.tx === b.tx && BigInt(a.position) < BigInt(b.position))

export const make = Effect.fnUntraced(function* (options: RetentionOptions) {
  const sql = yield* SqlClient.SqlClient
  const sinks = Option.getOrElse(yield* Effect.serviceOption(Sinks), () => [])
  const { ages } = options
  const rows = <A extends object>(effect: Effect.Effect<ReadonlyArray<A>, SqlError.SqlError>) => Effect.map(effect, (r) => r.length)

  const inbox = policy("inbox", (limit) =>
    rows(sql`
      delete from inbox where id in (
        select i.id from inbox i
        where i.processed_at < now() - make_interval(secs => ${secondsOf(ages.inbox)})
          and not exists (select 1 from unlinked_notifications u where u.inbox_id = i.id)
          and not exists (select 1 from inbox c where c.source_inbox_id = i.id and c.processed_at is null)
          and not exists (select 1 from inbox c where c.part_of = i.id and c.processed_at is null)
        order by i.processed_at
        limit ${limit}
        for update of i skip locked)
      returning id`))

  const queue = policy("ingest_queue", (limit) =>
    rows(sql`
      delete from ingest_queue where sequence in (
        select sequence from ingest_queue where completed and updated_at < now() - make_interval(secs => ${secondsOf(ages.queue)})
        limit ${limit} for update skip locked)
      returning sequence`))

  const parked = policy("unlinked_notifications", (limit) =>
    rows(sql`
      delete from unlinked_notifications where (provider, provider_user_id, inbox_id) in (
        select provider, provider_user_id, inbox_id from unlinked_notifications
        where received_at < now() - make_interval(secs => ${secondsOf(ages.parked)})
        limit ${limit} for update skip locked)
      returning inbox_id`))

  /**
   * The outbox is cut below a bound: the earliest of every registered sink's cursor (inclusive),
   * every sink's hold and the first event not yet past its age (exclusive). Without a cursor
   * for each sink this process runs (a runner not started yet), nothing goes.
   */
  const outboxBound = Effect.gen(function* () {
    const cursors = yield* sql<Point & { sink_id: string }>`select sink_id, tx::text as tx, position::text as position from sink_cursors`
    const ids = new Set(cursors.map((c) => c.sink_id))
    if (sinks.some(({ sink }) => !ids.has(sink.id))) return undefined
    let through: Point | undefined
    for (const c of cursors) if (through === undefined || before(c, through)) through = c
    const [recent] = yield* sql<Point>`
      select tx::text as tx, position::text as position from outbox
      where created_at >= now() - make_interval(secs => ${secondsOf(ages.outbox)}) order by tx, position limit 1`
    let until: Point | undefined = recent
    for (const { sink } of sinks) {
      const hold = sink.retention?.outboxHold ? yield* sink.retention.outboxHold : null
      if (hold && (until === undefined || before(hold, until))) until = hold
    }
    return { through, until }
  })

  const outbox: Policy = {
    table: "outbox",
    batches: Effect.map(outboxBound, (bound) => (limit: number) => {
      // No sink at all: nothing reads the outbox after its age.
      if (bound === undefined || (bound.through === undefined && sinks.length > 0)) return Effect.succeed(0)
      const through = bound.through ? sql`and (tx, position) <= (${bound.through.tx}::xid8, ${bound.through.position}::bigint)` : sql``
      const until = bound.until ? sql`and (tx, position) < (${bound.until.tx}::xid8, ${bound.until.position}::bigint)` : sql``
      return rows(sql`
        delete from outbox where position in (
          select position from outbox
          where created_at < now() - make_interval(secs => ${secondsOf(ages.outbox)}) ${through} ${until}
          order by tx, position limit ${limit} for update skip locked)
        returning position`)
    })
  }

  const deadLetters = policy("sink_dead_letters", (limit) =>
    rows(sql`
      delete from sink_dead_letters where (sink_id, event_id) in (
        select sink_id, event_id from sink_dead_letters where created_at < now() - make_interval(secs => ${secondsOf(ages.deadLetters)})
        limit ${limit} for update skip locked)
      returning event_id`))

  const syncPages = policy("sync_pages", (limit) =>
    rows(sql`
      delete from sync_pages where (connection_id, round, page, digest) in (
        select connection_id, round, page, digest from sync_pages where committed_at < now() - make_interval(secs => ${secondsOf(ages.syncPages)})
        limit ${limit} for update skip locked)
      returning round`))

  const linkSessions = policy("link_sessions", (limit) =>
    rows(sql`
      delete from link_sessions where id in (
        select id from link_sessions where expires_at < now() - make_interval(secs => ${secondsOf(ages.linkSessions)})
        limit ${limit} for update skip locked)
      returning id`))

  /**
   * A workflow's journal is its entity's messages and their replies ('Workflow/<name>', its
   * execution id), its durable clocks the clock entity's under the same id. Finished: its `run`
   * request has a final exit (complete, or a defect; not a suspension), nothing of it waits,
   * and its parent's journal (a workflow it ran under) is gone already: a parent replaying
   * would run a child again whose journal it could not find. Its age counts from that exit,
   * whose id is a snowflake (milliseconds since 2025-01-01, shifted by 22 bits).
   */
  const workflows = policy("cluster_messages", (limit) =>
    Effect.gen(function* () {
      const [exists] = yield* sql<{ present: boolean }>`select to_regclass('cluster_messages') is not null and to_regclass('cluster_replies') is not null as present`
      if (!exists?.present) return 0
      const cutoffMillis = Date.now() - Duration.toMillis(ages.workflows) - Date.UTC(2025, 0, 1)
      if (cutoffMillis <= 0) return 0
      const cutoff = (BigInt(Math.floor(cutoffMillis)) << 22n).toString()
      const [removed] = yield* sql<{ messages: number; replies: number }>`
        with done as (
          select m.entity_type, m.entity_id from cluster_messages m
          where m.tag = 'run' and m.processed and m.entity_type like 'Workflow/%' and m.entity_type <> 'Workflow/-/DurableClock'
            and exists (
              select 1 from cluster_replies r
              where r.request_id = m.id and r.kind = 0 and r.id < ${cutoff}::bigint
                and (r.payload like '{"_tag":"Success","value":{"_tag":"Complete"%' or r.payload like '{"_tag":"Failure"%'))
            and not exists (
              select 1 from cluster_messages w
              where w.entity_id = m.entity_id and w.entity_type in (m.entity_type, 'Workflow/-/DurableClock') and not w.processed)
            and not exists (
              select 1 from cluster_messages p
              where m.payload like '%"~@effect/workflow/parent"%' and p.tag = 'run'
                and p.entity_type = 'Workflow/' || (m.payload::jsonb -> '~@effect/workflow/parent' ->> 'workflowName')
                and p.entity_id = m.payload::jsonb -> '~@effect/workflow/parent' ->> 'executionId')
          limit ${limit}
        ), journal as (
          select c.id from cluster_messages c join done d
            on c.entity_id = d.entity_id and c.entity_type in (d.entity_type, 'Workflow/-/DurableClock')
          for update of c skip locked
        ), replies as (
          delete from cluster_replies where request_id in (select id from journal) returning 1
        ), messages as (
          delete from cluster_messages where id in (select id from journal) returning 1
        )
        select (select count(*) from messages)::int as messages, (select count(*) from replies)::int as replies`
      // Messages that came after their workflow's journal went (a late resume): nothing reads them.
      const [orphans] = yield* sql<{ messages: number; replies: number }>`
        with journal as (
          select o.id from cluster_messages o
          where o.processed and o.entity_type like 'Workflow/%' and o.id < ${cutoff}::bigint
            and not exists (
              select 1 from cluster_messages r
              where r.tag = 'run' and r.entity_id = o.entity_id and r.entity_type like 'Workflow/%' and r.entity_type <> 'Workflow/-/DurableClock')
          limit ${limit}
          for update of o skip locked
        ), replies as (
          delete from cluster_replies where request_id in (select id from journal) returning 1
        ), messages as (
          delete from cluster_messages where id in (select id from journal) returning 1
        )
        select (select count(*) from messages)::int as messages, (select count(*) from replies)::int as replies`
      yield* Metric.incrementBy(removedFrom("cluster_replies"), (removed?.replies ?? 0) + (orphans?.replies ?? 0))
      return (removed?.messages ?? 0) + (orphans?.messages ?? 0)
    }))

  /** Health data by the time it describes; a record's samples go with it. */
  const records = (age: Duration.Duration): Policy => policy("records", (limit) =>
    Effect.gen(function* () {
      const [removed] = yield* sql<{ records: number; samples: number }>`
        with old as (
          delete from records where id in (
            select id from records
            where coalesce(start_at, calendar_date::timestamptz) < now() - make_interval(secs => ${secondsOf(age)})
            limit ${limit} for update skip locked)
          returning id
        ), samples as (
          delete from samples where record_id in (select id from old) returning 1
        )
        select (select count(*) from old)::int as records, (select count(*) from samples)::int as samples`
      yield* Metric.incrementBy(removedFrom("samples"), removed?.samples ?? 0)
      return removed?.records ?? 0
    }))

  const ofSink = (retention: SinkRetention) =>
    Effect.forEach(retention.policies, (p) => Effect.map(sinkAge(p.table, p.defaultAge), (age): Policy => ({ table: p.table, batches: p.batches(age) })))

  const policies: ReadonlyArray<Policy> = [
    queue,
    inbox,
    parked,
    ...(yield* Effect.forEach(sinks, ({ sink }) => (sink.retention ? ofSink(sink.retention) : Effect.succeed([])))).flat(),
    // After the sinks' tables: messages that went free their outbox events.
    outbox,
    workflows,
    deadLetters,
    syncPages,
    linkSessions,
    ...Option.match(ages.records, { onNone: () => [], onSome: (age) => [records(age)] })
  ]
  const batch = options.batchSize ?? 500

  // A workflow's journal is found by its execution id, which the cluster's table has no index
  // for (the cluster creates it at the engine's start, after migrations): built here, once,
  // without blocking the cluster's writes.
  const [cluster] = yield* sql<{ present: boolean }>`select to_regclass('cluster_messages') is not null as present`
  if (cluster?.present) {
    yield* sql.unsafe("create index concurrently if not exists wearflow_cluster_messages_by_entity on cluster_messages (entity_id)").pipe(
      Effect.catchAll((error) => Effect.logWarning("could not index the cluster's messages for retention; sweeps read more").pipe(Effect.annotateLogs("error", error.message)))
    )
  }

  /** One policy, batch after batch until a batch comes back short; how many rows went. */
  const enforce = (policy: Policy) =>
    Effect.gen(function* () {
      const remove = yield* policy.batches.pipe(retryWhileTransient("1 minute"))
      let total = 0
      for (;;) {
        const removed = yield* remove(batch).pipe(retryWhileTransient("1 minute"))
        total += removed
        yield* Metric.incrementBy(removedFrom(policy.table), removed)
        if (removed < batch) return total
      }
    })

  /** Every policy once; rows removed per table. A failing policy does not stop the others. */
  const sweep = Effect.forEach(policies, (policy) =>
    enforce(policy).pipe(
      Effect.map((removed) => [policy.table, removed] as const),
      Effect.catchAllCause((cause) =>
        Effect.logWarning("retention failed for a table; trying again later", cause).pipe(Effect.annotateLogs("table", policy.table), Effect.as([policy.table, 0] as const))
      )
    )).pipe(Effect.map((removed) => Object.fromEntries(removed.filter(([, n]) => n > 0))))

  return { sweep } as const
})

/**
 * The job, on the engine: one runner among the processes sharing the database sweeps (a
 * cluster singleton, taken over by another runner when its own stops), at start and every
 * `interval`. Deletes skip rows others hold, so an overlap during a takeover is harmless.
 */
export const layer = (options: RetentionOptions) =>
  Singleton.make(
    "wearflow/retention",
    Effect.gen(function* () {
      const { sweep } = yield* make(options)
      yield* sweep.pipe(
        Effect.tap((removed) =>
          Object.keys(removed).length > 0 ? Effect.logInfo("removed rows past their retention").pipe(Effect.annotateLogs(removed)) : Effect.void),
        Effect.catchAllCause((cause) => Effect.logWarning("retention sweep failed; trying again later", cause)),
        Effect.repeat(Schedule.spaced(options.interval))
      )
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError("retention job could not start", cause)),
      Effect.annotateLogs("module", "Retention")
    )
  )
