/**
 * Feeds one sink from the outbox, in order, in batches. Each round runs in one transaction
 * whose first statement locks the sink's cursor (so only one process feeds a sink), reads the
 * next batch of committed events and moves the cursor past them; then the sink takes them. A
 * sink writing to this same database joins that transaction, so its rows and its cursor
 * commit together; a failed delivery rolls the cursor back.
 *
 * Only events from transactions older than every running one are read (pg_snapshot_xmin):
 * an event committed late by a slow transaction is never skipped.
 *
 * Before a round, one cheap statement asks whether it would read anything, and if not, whether
 * committed events are held back by an older transaction still running. When the outbox has
 * nothing new, the runner sleeps its idle pause, unless this process rings meanwhile
 * (outbox-wake.ts): then it looks again at once. It keeps looking at short, growing intervals
 * only while that can find something: events held back, or a ring that came before its
 * transaction committed. Runners in other processes see the event at their next idle poll.
 * While events keep coming, rounds start at most one per gather pause, so they gather into batches.
 */
import { SqlClient, SqlError, type Statement } from "@effect/sql"
import { Clock, Data, Duration, Effect, Layer, Metric, Schedule } from "effect"
import type { EventEnvelope } from "../schema.ts"
import { type OutboxEntry, type OutboxEvent, type Sink, SinkError, Sinks } from "../sink.ts"
import * as OutboxWake from "../outbox-wake.ts"
import * as Tracing from "../tracing.ts"

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
  /**
   * While events keep coming, the least time from one round's start to the next's, which rings
   * do not cut: events gather into one round instead of a round each (10 ms; each round is a
   * transaction). A round that took longer, or a ring after a rest this long, is followed at once.
   */
  readonly gather?: Duration.DurationInput
}

/** A line of `nextEntries`' text as a row. */
const entryRow = (line: string): SizedRow => {
  const [position, tx, eventId, eventType, teamId, userId, recordId, createdAt, historical] = line.split("\t") as
    [string, string, string, string, string, string, string, string, string]
  return {
    position,
    tx,
    event_id: eventId,
    event_type: eventType,
    team_id: teamId,
    user_id: userId,
    record_id: recordId === "" ? null : recordId,
    payload: null as never,
    created_at: new Date(createdAt),
    historical: historical === "1",
    available: null
  }
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

/**
 * What a look finds past a sink's cursor: events a round would read; only events that an older
 * transaction still running holds back (pg_snapshot_xmin); or no committed event at all.
 */
type Look = "readable" | "held" | "none"

/** A look's finding, and the oldest transaction running then (pg_snapshot_xmin): what holds events back. */
interface Looked {
  readonly found: Look
  readonly xmin: string
}

/** What a look is taken to find after a full batch, or when it fails: a round will tell. */
const readable: Looked = { found: "readable", xmin: "" }

/** A round's batch, its transaction, and whether events past the batch are held back. */
interface Taken {
  readonly tx: string
  readonly held: boolean
  readonly rows: ReadonlyArray<SizedRow>
}

/** `full`: the batch stopped at a limit, so more events are likely waiting. */
/** `held`: events past the cursor the round could not read yet, held back by an older transaction. */
type Round = { readonly _tag: "Busy" } | { readonly _tag: "Delivered"; readonly count: number; readonly full: boolean; readonly held: boolean }

/** The sink rejected a round's batch for good: the round rolls back, and the next delivers it event by event. */
class BatchRejected extends Data.TaggedError("BatchRejected") {}

/** A batch row with the size of the next events read (`takeEvents`; null for entries). */
type SizedRow = OutboxRow & { readonly available: number | null }

/**
 * Pauses after a ring or a delivery, while more may be committing: an appending transaction
 * usually commits within a few milliseconds of its ring. Past the last, the idle pause.
 */
const CHASE = [1, 2, 4, 8, 16, 32, 64, 128].map((ms) => Duration.millis(ms))

/**
 * The transactions of this process's rounds open now. A round's transaction holds back every
 * sink's reads (pg_snapshot_xmin) while it runs: a runner whose events it holds back waits for
 * that round's end and looks again at once, and only then (not at every round's end).
 */
const openRounds = new Set<string>()

/** Runners waiting for the end of the round with the transaction given (of any round: undefined). */
const chasers = new Map<() => void, string | undefined>()

const roundEnded = (tx: string) =>
  Effect.sync(() => {
    openRounds.delete(tx)
    for (const [wake, awaited] of chasers) {
      if (awaited !== undefined && awaited !== tx) continue
      chasers.delete(wake)
      wake()
    }
  })

/** Resumes when this process's round with transaction `tx` ends (at once if it is not open), or any round's. */
const roundEnd = (tx: string | undefined) =>
  Effect.async<void>((resume) => {
    if (tx !== undefined && !openRounds.has(tx)) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    chasers.set(wake, tx)
    return Effect.sync(() => void chasers.delete(wake))
  })

export const make = (sink: Sink, options: SinkRunnerOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const batchSize = options.batchSize ?? 500
    const batchBytes = options.batchBytes ?? 8 * 1024 * 1024
    const idle = options.idle ?? Duration.millis(200)
    const gatherMs = Duration.toMillis(options.gather ?? Duration.millis(10))
    const historicalData = sink.historicalData ?? true
    const metric = <A extends Metric.Metric.Counter<number>>(m: A) => Metric.tagged(m, "sink", sink.id)
    const traced = (yield* Tracing.Tracing).enabled

    yield* sql`insert into sink_cursors (sink_id) values (${sink.id}) on conflict do nothing`

    /**
     * A round's first statement: locks the sink's cursor (skipped when another process holds it),
     * reads the next events in order after it, and moves it past them. Moved before they are
     * delivered, in the round's transaction: if the delivery fails, it rolls back with it.
     * `columns`: what the reader reads of each event, `tx_order` and `position` among them (the
     * cursor moves to the last); `batch` may cut the events further; `result`: what it answers.
     * Lateral, so the read starts at the cursor in the (tx, position) index instead of walking
     * every event before it. One statement where it was three: a round holds its transaction
     * (and the transaction id every sink's reads wait for, pg_snapshot_xmin) for less.
     */
    const take = <A extends object>(columns: Statement.Fragment, batch: (events: Statement.Fragment) => Statement.Fragment, result: Statement.Fragment) => sql<A>`
      with cursor as (
        select tx, position from sink_cursors where sink_id = ${sink.id} for update skip locked
      ), batch as (
        ${batch(sql`
          select ${columns}
          from cursor c cross join lateral (
            select * from outbox o
            where (o.tx, o.position) > (c.tx, c.position) and o.tx < pg_snapshot_xmin(pg_current_snapshot())
            order by o.tx, o.position
            limit ${batchSize}
          ) o`)}
      ), held as (
        select exists (
          select 1 from cursor c cross join lateral (
            select 1 from outbox o
            where (o.tx, o.position) > (c.tx, c.position) and o.tx >= pg_snapshot_xmin(pg_current_snapshot())
            order by o.tx, o.position limit 1
          ) h
        ) as held
      ), moved as (
        update sink_cursors s set tx = l.tx, position = l.position, updated_at = now()
        from (select b.tx_order as tx, b.position from batch b order by b.tx_order desc, b.position desc limit 1) l
        where s.sink_id = ${sink.id}
      )
      ${result}`

    // Entries carry no payload: `batchSize` of them at most. They come as one text, a line each
    // and a tab between fields (none of which holds either): a result row per entry costs the
    // driver a message and a parse per field, several times this, on every sink's every round.
    const takeEntries = take<{ readonly locked: boolean; readonly page: string | null; readonly round_tx: string; readonly held: boolean }>(
      sql`o.tx as tx_order, o.position, concat_ws(E'\t', o.position, o.tx::text, o.event_id, o.event_type, o.team_id, o.user_id,
            coalesce(o.record_id::text, ''), to_char(o.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            o.historical::int) as line`,
      (events) => events,
      sql`select exists (select 1 from cursor) as locked, (select string_agg(b.line, E'\n' order by b.tx_order, b.position) from batch b) as page,
          pg_current_xact_id()::text as round_tx, (select held from held) as held`
    ).pipe(
      Effect.map(([row]): Taken | undefined => {
        if (row?.locked !== true) return undefined
        return { tx: row.round_tx, held: row.held, rows: (row.page ?? "") === "" ? [] : row.page!.split("\n").map(entryRow) }
      })
    )

    // Events: up to `batchSize`, then cut at `batchBytes` of payload; `available` says how many
    // the count limit let through, so a cut batch reads as full.
    const takeEvents = take<SizedRow & { readonly locked: boolean; readonly round_tx: string; readonly held: boolean }>(
      sql`o.position, o.tx as tx_order, o.tx::text as tx, o.event_id, o.event_type, o.team_id, o.user_id, o.record_id,
          o.payload, octet_length(o.payload::text) as bytes, o.created_at, o.historical`,
      (events) => sql`
        select * from (
          select n.*, sum(n.bytes) over (order by n.tx_order, n.position) as running, row_number() over (order by n.tx_order, n.position) as k,
                 count(*) over () as available
          from (${events}) n
        ) b
        where k = 1 or running <= ${batchBytes}`,
      sql`select exists (select 1 from cursor) as locked, b.position, b.tx, b.event_id, b.event_type, b.team_id, b.user_id, b.record_id,
                 b.payload, b.created_at, b.historical, b.available::float8 as available, pg_current_xact_id()::text as round_tx,
                 (select held from held) as held
          from (select 1) one left join batch b on true
          order by b.k`
    ).pipe(
      Effect.map((rows): Taken | undefined =>
        rows[0]?.locked !== true ? undefined : { tx: rows[0].round_tx, held: rows[0].held, rows: rows.filter((row) => row.position !== null) })
    )

    /** The batch a round delivers, and the round's transaction; undefined when another process holds the cursor. */
    const takeBatch: Effect.Effect<Taken | undefined, SqlError.SqlError> = sink.reads === "entries" ? takeEntries : takeEvents
    const isFull = (rows: ReadonlyArray<SizedRow>) =>
      rows.length > 0 && (rows.length >= batchSize || (rows[0]!.available !== null && rows.length < rows[0]!.available))

    /**
     * Whether a round would read anything: one statement outside a transaction, where a round is
     * three (begin, take, commit) and holds a transaction id. It reads the first committed event
     * past the cursor, xmin or not: readable when its transaction is older than every running one,
     * held back when not (so are all after it, in (tx, position) order), none when there is none.
     * Lateral, so the look starts at the cursor in the (tx, position) index (a join scans the outbox).
     */
    const look = sql<{ look: Look | null; xmin: string }>`
      select (
        select case when n.tx < pg_snapshot_xmin(pg_current_snapshot()) then 'readable' else 'held' end
        from sink_cursors c cross join lateral (
          select o.tx from outbox o
          where (o.tx, o.position) > (c.tx, c.position)
          order by o.tx, o.position limit 1
        ) n
        where c.sink_id = ${sink.id}
      ) as look, pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.pipe(
      Effect.map(([row]): Looked => ({ found: row?.look ?? "none", xmin: row?.xmin ?? "" }))
    )

    /**
     * With traces exported, a delivery is a span in the trace of each notification whose
     * records the batch's events are about (the traceparent stored with its inbox row).
     */
    const inTracesOf = (rows: ReadonlyArray<OutboxRow>) => <A, E, R>(deliver: Effect.Effect<A, E, R>) =>
      Effect.gen(function* () {
        const records = rows.flatMap((row) => (row.record_id === null ? [] : [row.record_id]))
        if (records.length === 0) return yield* deliver
        const traces = yield* sql<{ trace_context: string }>`
          select distinct i.trace_context from records r join inbox i on i.id = r.inbox_id
          where r.id = any(${records}::uuid[]) and i.trace_context is not null`
        return yield* deliver.pipe(
          Tracing.spanInEach(`sink ${sink.id} delivery`, traces.map((t) => t.trace_context), { "wearflow.sink": sink.id, "wearflow.events": rows.length })
        )
      })

    /** One round: lock the cursor, read and move it past what was read, deliver; all or nothing. */
    const round = <E>(onBatch: (batch: ReadonlyArray<OutboxRow>) => Effect.Effect<void, E>) =>
      Effect.suspend(() => {
        // Open from the take until the transaction ends, committed or not (`roundEnd`).
        let open: string | undefined
        return Effect.gen(function* () {
          const taken = yield* takeBatch
          if (taken === undefined) return { _tag: "Busy" } as Round
          open = taken.tx
          openRounds.add(open)
          return yield* deliverTaken(taken, onBatch)
        }).pipe(sql.withTransaction, Effect.ensuring(Effect.suspend(() => (open === undefined ? Effect.void : roundEnded(open)))))
      })

    const deliverTaken = <E>({ held, rows }: Taken, onBatch: (batch: ReadonlyArray<OutboxRow>) => Effect.Effect<void, E>) =>
      Effect.gen(function* () {
        // Events the sink opted out of are passed over: the cursor moved past them.
        const wanted = historicalData ? rows : rows.filter((row) => !row.historical)
        if (wanted.length > 0) yield* (traced ? onBatch(wanted).pipe(inTracesOf(wanted)) : onBatch(wanted))
        return { _tag: "Delivered", count: rows.length, full: isFull(rows), held } as Round
      })

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

    const deliverRows = (rows: ReadonlyArray<OutboxRow>) =>
      sink.reads === "entries" ? sink.deliver(rows.map(toEntry)) : sink.deliver(rows.map(toEvent))

    /**
     * Delivers a batch in the round's transaction itself, no savepoint (a round trip each round).
     * If the sink rejects it for good, the round rolls back and the next round delivers its
     * events one by one, each in a savepoint (a same-database sink's partial writes roll back
     * with it), so that only the events the sink really refuses are dead-lettered.
     */
    const deliverBatch = (rows: ReadonlyArray<OutboxRow>) =>
      deliverRows(rows).pipe(Effect.catchIf(permanently, () => Effect.fail(new BatchRejected())))

    const deliverEach = (rows: ReadonlyArray<OutboxRow>) =>
      Effect.forEach(rows, (row) => sql.withTransaction(deliverRows([row])).pipe(Effect.catchIf(permanently, (error) => deadLetter(row, error))), {
        discard: true
      })

    /** One delivery attempt; how many events were taken. */
    const once = round(deliverBatch).pipe(
      Effect.catchTag("BatchRejected", () => round(deliverEach)),
      Effect.tap((r) =>
        r._tag === "Delivered" && r.count > 0
          ? Metric.incrementBy(metric(eventsDelivered), r.count).pipe(Effect.zipRight(sink.afterCommit ?? Effect.void))
          : Effect.void
      )
    )

    const backoff = Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("60 seconds")))

    /** One attempt, retried with back-off; undefined after a crash (logged, paused). */
    const attempt = once.pipe(
      Effect.tapError((error) =>
        Effect.logWarning("sink delivery failed; retrying with back-off").pipe(
          Effect.annotateLogs("error", error.message),
          Effect.zipRight(Metric.increment(metric(deliveryErrors)))
        )
      ),
      Effect.retry(backoff),
      // A bug in a sink must not stop it for good: log, pause, carry on from the cursor.
      Effect.catchAllDefect((defect) =>
        Effect.logError("sink crashed; restarting it", defect).pipe(Effect.zipRight(Effect.sleep("5 seconds")), Effect.as(undefined))
      )
    )

    /**
     * Lets events gather: a round starts at least `gather` after the one before it started
     * (whatever rings meanwhile). A round that took that long, or a runner at rest since, looks at once.
     */
    const gathered = (lastRound: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const rest = gatherMs - (now - lastRound)
        return rest > 0 ? Effect.sleep(Duration.millis(rest)) : Effect.void
      })

    /**
     * Rounds for ever: straight on after a full batch; while events come, a round each `gather`
     * at most. When nothing is readable: if events are held back (pg_snapshot_xmin) by a round
     * of this process, until that round ends; by another transaction, short pauses growing
     * (CHASE); after a ring that may precede its commit, the same pauses, in case it has not
     * committed yet; otherwise the idle pause. A ring cuts any of them short. A look that finds
     * nothing committed past the cursor waits for a ring: a committed append rings.
     */
    const run = Effect.gen(function* () {
      let chase = CHASE.length
      let early = CHASE.length
      let earlyRings = yield* OutboxWake.ringsBeforeCommit
      let full = false
      let lastRound = Number.NEGATIVE_INFINITY
      for (;;) {
        const ringsBefore = yield* OutboxWake.rings
        // After a full batch more is waiting for sure; otherwise a round only when there is something to read.
        const { found, xmin }: Looked = full ? readable : yield* look.pipe(Effect.orElseSucceed(() => readable))
        if (found === "readable") lastRound = yield* Clock.currentTimeMillis
        const round: Round | undefined = found === "readable" ? yield* attempt : undefined
        full = round?._tag === "Delivered" && round.full
        if (full) continue
        // A ring that may precede its commit starts a chase of its own: its events may not be visible yet.
        const rungEarly = yield* OutboxWake.ringsBeforeCommit
        if (rungEarly !== earlyRings) {
          earlyRings = rungEarly
          early = 0
        }
        // After a round, what is left past its batch: events held back, or none yet (another process's round had the cursor: held).
        const left: Look = round === undefined ? found : round._tag === "Busy" || round.held ? "held" : "none"
        // More may be readable now: events rung meanwhile, or ones held back when the round began.
        const busy = (round?._tag === "Delivered" && round.count > 0 && round.held) || (yield* OutboxWake.rings) !== ringsBefore
        if (busy) {
          chase = 0
          yield* gathered(lastRound)
          continue
        }
        let woken: boolean
        if (round === undefined && found === "held" && openRounds.has(xmin)) {
          // Held back by a round of this process: its end is when to look again (or a ring's).
          woken = yield* Effect.raceFirst(OutboxWake.pause(idle), Effect.as(roundEnd(xmin), false))
        } else {
          // Held back by another transaction (or another process's round has the cursor): short
          // pauses growing; after a ring before its commit, the same; otherwise the idle pause.
          chase = left !== "none" ? Math.min(chase + 1, CHASE.length) : CHASE.length
          early = Math.min(early + 1, CHASE.length)
          const step = Math.min(chase, early)
          const pause = OutboxWake.pause(step < CHASE.length ? Duration.min(CHASE[step]!, idle) : idle)
          // Held back by a transaction not known here (maybe a round whose take has not answered yet), any round's end is worth a look too.
          woken = yield* (left === "held" && chase < CHASE.length ? Effect.raceFirst(pause, Effect.as(roundEnd(undefined), false)) : pause)
        }
        // Woken, it looks (after what is left of the gather pause); if the append has not committed yet, the chase goes on.
        if (woken) {
          chase = 0
          yield* gathered(lastRound)
        }
      }
    })

    return { once, run: run.pipe(Effect.annotateLogs("sink", sink.id)) } as const
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
