/**
 * The Sink contract: a destination that consumes the event outbox in order, in batches.
 * A sink acknowledges a batch only by returning successfully once it is durable at the
 * destination; the runner (pipeline/sink-runner.ts) then advances its cursor.
 */
import type { SqlError } from "@effect/sql"
import { Context, Data, type Duration, type Effect } from "effect"
import type { SinkPacing } from "./plugin.ts"
import type { EventEnvelope } from "./schema.ts"
import { isTransient, sqlState } from "./storage/errors.ts"

/** One event from the outbox without its payload: enough for a sink that keeps references. */
export interface OutboxEntry {
  readonly position: string
  readonly eventId: string
  readonly eventType: string
  readonly teamId: string
  readonly userId: string
  /** The normalized record the event is about, if any. */
  readonly recordId: string | null
  readonly createdAt: Date
  /** Data that answers a backfill request rather than new data. */
  readonly historical: boolean
}

/** One event from the outbox, as sinks receive it. */
export interface OutboxEvent extends OutboxEntry {
  readonly envelope: EventEnvelope
}

/** A delivery failure; `retryable` decides between backing off and dead-lettering. */
export class SinkError extends Data.TaggedError("SinkError")<{
  readonly message: string
  readonly retryable: boolean
  readonly cause?: unknown
}> {}

/** A database failure of sink `sinkId`, retryable when the database may recover. */
export const sinkErrorFromSql = (sinkId: string) => (error: SqlError.SqlError) => {
  const state = sqlState(error)
  return new SinkError({ message: `${sinkId} sink: ${error.message}${state ? ` (${state})` : ""}`, retryable: isTransient(error), cause: error })
}

interface SinkBase {
  readonly id: string
  readonly health: Effect.Effect<void, SinkError>
  /**
   * Runs after a delivered batch's transaction commits. A sink that records work in the
   * runner's transaction (same database) starts on it here, once it is sure to exist.
   */
  readonly afterCommit?: Effect.Effect<void>
  /**
   * Whether data that answers a backfill reaches this sink (Junction's push_historical_data);
   * true when absent. Backfill completion notices are sent either way.
   */
  readonly historicalData?: boolean
  /**
   * Erases whatever this sink keeps of a deleted user in Wearflow's own storage (typed tables,
   * staged events, messages): runs in the erasure's transaction, before the user's outbox
   * events go, while no runner round is in flight. Copies already delivered downstream are
   * the receiver's to erase (the `user.deleted` event that follows tells them).
   */
  readonly eraseUser?: (userId: string) => Effect.Effect<void, SinkError>
  /** The sink's own growing tables and the outbox events it still reads, for retention (pipeline/retention.ts). */
  readonly retention?: SinkRetention
}

/**
 * A sink's part in retention: its own tables' policies (each swept with the age configured
 * as WEARFLOW_RETENTION_<TABLE>, else its default), and the first outbox event it may still
 * read though its cursor has passed it (e.g. a message it may resend), which the outbox keeps.
 */
export interface SinkRetention {
  readonly policies: ReadonlyArray<{
    readonly table: string
    readonly defaultAge: Duration.Duration
    /**
     * At the start of a sweep (bounds read once): the statement removing a batch of at most
     * `limit` rows finished more than `age` ago; how many went. Called until a batch comes back short.
     */
    readonly batches: (age: Duration.Duration) => Effect.Effect<(limit: number) => Effect.Effect<number, SqlError.SqlError>, SqlError.SqlError>
  }>
  /** The first (tx, position) in outbox order it may still read; null when none. */
  readonly outboxHold?: Effect.Effect<{ readonly tx: string; readonly position: string } | null, SqlError.SqlError>
}

/** A sink that receives whole events, payloads included (the usual kind). */
export interface EventSink extends SinkBase {
  readonly reads?: "events"
  /** Makes the whole batch durable at the destination, idempotently (batches may be re-sent). */
  readonly deliver: (batch: ReadonlyArray<OutboxEvent>) => Effect.Effect<void, SinkError>
}

/**
 * A sink that receives entries without payloads: it records references in the runner's
 * transaction and reads the payloads later itself, so the runner never ships them to it.
 */
export interface EntrySink extends SinkBase {
  readonly reads: "entries"
  readonly deliver: (batch: ReadonlyArray<OutboxEntry>) => Effect.Effect<void, SinkError>
}

export type Sink = EventSink | EntrySink

/** The sinks this process runs, with how the runner paces each. */
export class Sinks extends Context.Tag("wearflow/Sinks")<Sinks, ReadonlyArray<{ readonly sink: Sink; readonly pacing: SinkPacing }>>() {}
