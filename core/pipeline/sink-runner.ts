/**
 * Feeds one sink from the outbox, in order, in batches. Each round runs in one transaction
 * that locks the sink's cursor (so only one process feeds a sink), reads the next batch of
 * committed events, delivers it, and advances the cursor. A sink writing to this same
 * database joins that transaction, so its rows and its cursor commit together.
 *
 * Only events from transactions older than every running one are read (pg_snapshot_xmin):
 * an event committed late by a slow transaction is never skipped.
 */
import { SqlClient, SqlError } from "@effect/sql"
import { Duration, Effect, Layer, Metric, Schedule } from "effect"
import type { EventEnvelope } from "../schema.ts"
import { type OutboxEntry, type OutboxEvent, type Sink, SinkError, Sinks } from "../sink.ts"

/** An outbox row as the runner reads it (`outboxColumns`). */
export interface OutboxRow {
  readonly position: string
  readonly tx: string
  readonly event_id: string
  readonly event_type: string
  readonly team_id: string
  readonly user_id: string
  readonly record_id: string | null
  readonly payload: EventEnvelope
  readonly created_at: Date
  readonly historical: boolean
}

export const eventsDelivered = Metric.counter("wearflow_sink_events_delivered_total")
export const deliveryErrors = Metric.counter("wearflow_sink_errors_total")
export const eventsDeadLettered = Metric.counter("wearflow_sink_events_dead_lettered_total")

export interface SinkRunnerOptions {
  readonly batchSize?: number
  /**
   * At most this many bytes of event payload JSON per batch (at least one event): a batch of
   * events carrying many samples each is held in memory whole while the sink takes it.
   */
  readonly batchBytes?: number
  /** Pause when the outbox has nothing new. */
  readonly idle?: Duration.DurationInput
}

const toEntry = (row: OutboxRow): OutboxEntry => ({
  position: row.position,
  eventId: row.event_id,
  eventType: row.event_type,
  teamId: row.team_id,
  userId: row.user_id,
  recordId: row.record_id,
  createdAt: row.created_at,
  historical: row.historical
})

export const toEvent = (row: OutboxRow): OutboxEvent => ({ ...toEntry(row), envelope: row.payload })

/** `full`: the batch stopped at a limit, so more events are likely waiting. */
type Round = { readonly _tag: "Busy" } | { readonly _tag: "Delivered"; readonly count: number; readonly full: boolean }

/** A batch row with the size of the next events read (`nextBatch`). */
type SizedRow = OutboxRow & { readonly available: number }

export const make = (sink: Sink, options: SinkRunnerOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const batchSize = options.batchSize ?? 500
    const batchBytes = options.batchBytes ?? 8 * 1024 * 1024
    const idle = options.idle ?? Duration.millis(200)
    const historicalData = sink.historicalData ?? true
    const metric = <A extends Metric.Metric.Counter<number>>(m: A) => Metric.tagged(m, "sink", sink.id)

    yield* sql`insert into sink_cursors (sink_id) values (${sink.id}) on conflict do nothing`

    // The next events in order, up to `batchSize` and then cut at `batchBytes` of payload;
    // `available` says how many the count limit let through, so a cut batch reads as full.
    const payload = sink.reads === "entries" ? "null::jsonb" : "o.payload"
    const nextBatch = sql<SizedRow>`
      select position, tx, event_id, event_type, team_id, user_id, record_id, payload, created_at, historical, available::float8 as available
      from (
        select n.*, sum(n.bytes) over (order by n.tx_order, n.position) as running, row_number() over (order by n.tx_order, n.position) as k,
               count(*) over () as available
        from (
          select o.position, o.tx as tx_order, o.tx::text as tx, o.event_id, o.event_type, o.team_id, o.user_id, o.record_id,
                 ${sql.literal(payload)} as payload, coalesce(octet_length(${sql.literal(payload)}::text), 0) as bytes,
                 o.created_at, o.historical
          from outbox o, sink_cursors c
          where c.sink_id = ${sink.id}
            and (o.tx, o.position) > (c.tx, c.position)
            and o.tx < pg_snapshot_xmin(pg_current_snapshot())
          order by o.tx, o.position
          limit ${batchSize}
        ) n
      ) b
      where k = 1 or running <= ${batchBytes}
      order by k`

    const advance = (last: OutboxRow) =>
      sql`update sink_cursors set tx = ${last.tx}::xid8, position = ${last.position}, updated_at = now() where sink_id = ${sink.id}`

    /** One round: lock the cursor, read, deliver, advance; all or nothing. */
    const round = (onBatch: (batch: ReadonlyArray<OutboxRow>) => Effect.Effect<void, SinkError | SqlError.SqlError>) =>
      Effect.gen(function* () {
        const locked = yield* sql`select 1 from sink_cursors where sink_id = ${sink.id} for update skip locked`
        if (locked.length === 0) return { _tag: "Busy" } as Round
        const rows = yield* nextBatch
        if (rows.length > 0) {
          // Events the sink opted out of are passed over: the cursor moves past them.
          const wanted = historicalData ? rows : rows.filter((row) => !row.historical)
          if (wanted.length > 0) yield* onBatch(wanted)
          yield* advance(rows[rows.length - 1]!)
        }
        const full = rows.length > 0 && (rows[0]!.available >= batchSize || rows.length < rows[0]!.available)
        return { _tag: "Delivered", count: rows.length, full } as Round
      }).pipe(sql.withTransaction)

    const permanently = (error: SinkError | SqlError.SqlError): error is SinkError => error._tag === "SinkError" && !error.retryable

    /** Keeps one event the sink rejected for good, for operators; the cursor moves past it. */
    const deadLetter = (row: OutboxRow, error: SinkError) =>
      sql`insert into sink_dead_letters (sink_id, event_id, position, error)
          values (${sink.id}, ${row.event_id}, ${row.position}, ${error.message}) on conflict do nothing`.pipe(
        Effect.zipRight(Metric.increment(metric(eventsDeadLettered))),
        Effect.zipRight(
          Effect.logError("sink rejected an event permanently; dead-lettered").pipe(
            Effect.annotateLogs({ event_id: row.event_id, error: error.message })
          )
        )
      )

    /**
     * Delivers a batch. If the sink rejects it for good, each event is retried alone so that
     * only the events it really refuses are dead-lettered. Each attempt runs in a savepoint:
     * a same-database sink's partial writes roll back with it.
     */
    const deliverRows = (rows: ReadonlyArray<OutboxRow>) =>
      sql.withTransaction(sink.reads === "entries" ? sink.deliver(rows.map(toEntry)) : sink.deliver(rows.map(toEvent)))

    const deliverBatch = (rows: ReadonlyArray<OutboxRow>) =>
      deliverRows(rows).pipe(
        Effect.catchIf(permanently, () =>
          Effect.forEach(rows, (row) => deliverRows([row]).pipe(Effect.catchIf(permanently, (error) => deadLetter(row, error))), { discard: true }))
      )

    /** One delivery attempt; how many events were taken. */
    const once = round(deliverBatch).pipe(
      Effect.tap((r) =>
        r._tag === "Delivered" && r.count > 0
          ? Metric.incrementBy(metric(eventsDelivered), r.count).pipe(Effect.zipRight(sink.afterCommit ?? Effect.void))
          : Effect.void
      )
    )

    const backoff = Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("60 seconds")))

    const step = once.pipe(
      Effect.tapError((error) =>
        Effect.logWarning("sink delivery failed; retrying with back-off").pipe(
          Effect.annotateLogs("error", error.message),
          Effect.zipRight(Metric.increment(metric(deliveryErrors)))
        )
      ),
      Effect.retry(backoff),
      Effect.flatMap((r) => (r._tag === "Delivered" && r.full ? Effect.void : Effect.sleep(idle))),
      // A bug in a sink must not stop it for good: log, pause, carry on from the cursor.
      Effect.catchAllDefect((defect) => Effect.logError("sink crashed; restarting it", defect).pipe(Effect.zipRight(Effect.sleep("5 seconds"))))
    )

    return { once, run: Effect.forever(step).pipe(Effect.annotateLogs("sink", sink.id)) } as const
  })

/** Runs the sink behind `tag` for the lifetime of the layer; its failures never reach ingestion. */
export const layer = <I, S extends Sink>(tag: import("effect").Context.Tag<I, S>, options?: SinkRunnerOptions) =>
  Layer.scopedDiscard(
    Effect.flatMap(tag, (sink) => Effect.flatMap(make(sink, options), (runner) => Effect.forkScoped(runner.run)))
  )

/** Runs every registered sink, each with its own pacing. */
export const layerAll = (options?: SinkRunnerOptions) =>
  Layer.scopedDiscard(
    Effect.flatMap(Sinks, (sinks) =>
      Effect.forEach(sinks, ({ pacing, sink }) => Effect.flatMap(make(sink, { ...options, ...pacing }), (runner) => Effect.forkScoped(runner.run)), {
        discard: true
      }))
  )
