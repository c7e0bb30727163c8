/**
 * A durable job queue in Postgres that never runs one job twice at once.
 *
 * Same table and rows as @effect/sql's SqlPersistedQueue (so jobs written by either agree),
 * with its lease kept honestly: while a job runs, this process renews the job's lease every
 * third of `lockExpiration`; another process takes a job over only once its lease has lapsed,
 * i.e. once its holder stopped renewing (it died). A holder that cannot renew in time (a
 * database it cannot reach, a pool it cannot get a connection from) stops the job itself
 * before the lease lapses, and a holder that finds its lease taken stops at once and leaves
 * the row alone. (SqlPersistedQueue 0.52 never renews: its set of held jobs stays empty.)
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import { SqlClient } from "@effect/sql"
import { Cause, Clock, Context, Data, Deferred, Duration, Effect, Exit, Layer, Schedule, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { withMigrationLock } from "../storage/database.ts"

export interface QueueOptions {
  readonly tableName: string
  /** How long to wait before looking again when no job is ready. */
  readonly pollInterval?: Duration.DurationInput
  /** How long a job's lease lasts without renewal: the time a dead process's jobs stay locked. */
  readonly lockExpiration?: Duration.DurationInput
}

/** A job's lease was lost to another process (it renewed too late): the job stopped here. */
export class LeaseLost extends Data.TaggedError("LeaseLost")<{ readonly id: string }> {
  readonly retryable = true
  override get message() {
    return `the lease on queue job ${this.id} was lost; another process has it now`
  }
}

const leaseLost = (id: string) => new PersistedQueue.PersistedQueueError({ message: new LeaseLost({ id }).message, cause: new LeaseLost({ id }) })

interface Row {
  readonly sequence: number
  readonly id: string
  readonly element: string
  readonly attempts: number
}

interface Held {
  readonly lost: Deferred.Deferred<void>
}

/** The queue table and the jobs this process holds in it. */
export interface QueueStore {
  readonly make: <A, I>(name: string, schema: Schema.Schema<A, I>) => PersistedQueue.PersistedQueue<A>
  /** Jobs not yet completed that may still be taken (fewer than `maxAttempts` failures). */
  readonly backlog: (name: string, maxAttempts: number) => Effect.Effect<Backlog, import("@effect/sql").SqlError.SqlError>
}

export interface Backlog {
  readonly pending: number
  /** Age of the oldest pending job, in seconds (0 when none). */
  readonly oldestSeconds: number
  /** Seconds since a job last completed, or undefined when none is on record. */
  readonly sinceCompletionSeconds: number | undefined
}

export class QueueStoreTag extends Context.Tag("wearflow/QueueStore")<QueueStoreTag, QueueStore>() {}

export const make = Effect.fnUntraced(function* (options: QueueOptions) {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  const table = sql(options.tableName)
  const pollInterval = Duration.decode(options.pollInterval ?? Duration.millis(100))
  const lockExpiration = Duration.decode(options.lockExpiration ?? Duration.seconds(30))
  const expirationSeconds = sql.literal(String(Math.max(1, Math.ceil(Duration.toSeconds(lockExpiration)))))
  const expirationMillis = Duration.toMillis(lockExpiration)
  const workerId = randomUUID()
  // Leases are real time: polls and renewals run on the system clock, whatever clock the caller has.
  const clock = Clock.make()

  // The library's table and indexes (created the same way, so either can have made them),
  // plus one to find recent completions for the backlog figures. Under the migrations lock:
  // processes starting together would race to create them.
  yield* withMigrationLock(Effect.all([
    sql`CREATE TABLE IF NOT EXISTS ${table} (
    sequence SERIAL PRIMARY KEY,
    id VARCHAR(36) NOT NULL,
    queue_name VARCHAR(100) NOT NULL,
    element TEXT NOT NULL,
    completed BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_failure TEXT NULL,
    acquired_at TIMESTAMP NULL,
    acquired_by UUID NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
  )`,
    sql`CREATE UNIQUE INDEX IF NOT EXISTS ${sql(`idx_${options.tableName}_id`)} ON ${table} (id)`,
    sql`CREATE INDEX IF NOT EXISTS ${sql(`idx_${options.tableName}_take`)} ON ${table} (queue_name, completed, attempts, acquired_at)`,
    sql`CREATE INDEX IF NOT EXISTS ${sql(`idx_${options.tableName}_update`)} ON ${table} (sequence, acquired_by)`,
    sql`CREATE INDEX IF NOT EXISTS ${sql(`idx_${options.tableName}_completed`)} ON ${table} (queue_name, updated_at) WHERE completed`
  ], { discard: true }))

  const held = new Map<number, Held>()
  /** When the last renewal that succeeded was sent (local clock): the lease runs from then. */
  let renewedAt = Date.now()

  const renew = Effect.suspend(() => {
    const sequences = [...held.keys()]
    if (sequences.length === 0) {
      renewedAt = Date.now()
      return Effect.void
    }
    const sentAt = Date.now()
    return sql<{ sequence: number }>`
      UPDATE ${table} SET acquired_at = NOW()
      WHERE acquired_by = ${workerId} AND sequence IN ${sql.in(sequences)}
      RETURNING sequence`.pipe(
      Effect.flatMap((rows) => {
        renewedAt = sentAt
        const kept = new Set(rows.map((r) => Number(r.sequence)))
        return Effect.forEach(sequences, (s) => (kept.has(s) ? Effect.void : stop(s)), { discard: true })
      })
    )
  })

  const stop = (sequence: number) => {
    const job = held.get(sequence)
    return job ? Deferred.succeed(job.lost, undefined) : Effect.void
  }

  // Renews every third of the lease; if renewals keep failing, stops every held job before
  // its lease can lapse and another process take it.
  yield* renew.pipe(
    // A renewal stuck waiting (for a connection, a frozen database) must not hold up the check below.
    Effect.timeoutFail({ duration: Duration.millis(expirationMillis / 3), onTimeout: () => new Error("renewal timed out") }),
    Effect.catchAllCause((cause) => Effect.logWarning("could not renew queue leases", cause)),
    Effect.zipRight(Effect.suspend(() =>
      Date.now() - renewedAt > expirationMillis * 0.75
        ? Effect.forEach([...held.keys()], stop, { discard: true })
        : Effect.void
    )),
    Effect.repeat(Schedule.spaced(Duration.millis(Math.max(50, expirationMillis / 3)))),
    Effect.annotateLogs({ module: "Queue", table: options.tableName }),
    Effect.withClock(clock),
    Effect.forkScoped,
    Effect.interruptible
  )

  const poll = (name: string, maxAttempts: number) =>
    sql<Row>`
      UPDATE ${table} SET acquired_at = NOW(), acquired_by = ${workerId}
      WHERE sequence = (
        SELECT sequence FROM ${table}
        WHERE queue_name = ${name} AND completed = FALSE AND attempts < ${maxAttempts}
          AND (acquired_at IS NULL OR acquired_at < NOW() - INTERVAL '${expirationSeconds} seconds')
        ORDER BY updated_at ASC, sequence ASC
        FOR UPDATE SKIP LOCKED
        LIMIT 1
      )
      RETURNING sequence, id, element, attempts`

  /** Later writes to a job's row only apply while this process still holds it. */
  const settle = (sequence: number, exit: Exit.Exit<unknown, unknown>, attempts: number) => {
    const statement = Exit.isSuccess(exit)
      ? sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL, updated_at = NOW(), completed = TRUE, attempts = ${attempts + 1}
            WHERE sequence = ${sequence} AND acquired_by = ${workerId}`
      : Cause.isInterruptedOnly(exit.cause)
      ? sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL WHERE sequence = ${sequence} AND acquired_by = ${workerId}`
      : sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL, updated_at = NOW(), attempts = ${attempts + 1},
              last_failure = ${Cause.pretty(exit.cause, { renderErrorCause: true })}
            WHERE sequence = ${sequence} AND acquired_by = ${workerId}`
    // If this fails for good the lease lapses and the job runs again: at least once, never twice at once.
    return statement.pipe(Effect.retry({ times: 5, schedule: Schedule.exponential(100, 1.5) }), Effect.ignoreLogged)
  }

  /**
   * One taker of a queue at a time looks for a job (`turn`): while the queue is empty the
   * process polls it once per interval, not once per taker; a taker that finds a job hands
   * the turn on at once.
   */
  const takeRow = (turn: Effect.Semaphore, name: string, maxAttempts: number) =>
    turn.withPermits(1)(Effect.gen(function* () {
      for (;;) {
        const [row] = yield* poll(name, maxAttempts).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not poll the queue", cause).pipe(Effect.as([] as Array<Row>))))
        if (row) return { ...row, sequence: Number(row.sequence) }
        yield* clock.sleep(pollInterval)
      }
    }))

  const queueOf = <A, I>(name: string, schema: Schema.Schema<A, I>): PersistedQueue.PersistedQueue<A> => {
    const encode = Schema.encode(schema)
    const decode = Schema.decodeUnknown(schema)
    const turn = Effect.unsafeMakeSemaphore(1)
    return {
      [PersistedQueue.TypeId]: PersistedQueue.TypeId,
      offer: (value, opts) =>
        Effect.gen(function* () {
          const element = JSON.stringify(yield* encode(value))
          const id = opts?.id ?? randomUUID()
          yield* sql`
            INSERT INTO ${table} (id, queue_name, element, completed, attempts, created_at, updated_at)
            VALUES (${id}, ${name}, ${element}, FALSE, 0, NOW(), NOW())
            ON CONFLICT (id) DO NOTHING`.pipe(
            Effect.mapError((cause) => new PersistedQueue.PersistedQueueError({ message: "Failed to offer element to persisted queue", cause }))
          )
          return id
        }),
      take: (f, opts) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const row = yield* restore(takeRow(turn, name, opts?.maxAttempts ?? 10))
            const lost = yield* Deferred.make<void>()
            held.set(row.sequence, { lost })
            const exit = yield* decode(JSON.parse(row.element)).pipe(
              Effect.flatMap((value) => f(value, { id: row.id, attempts: row.attempts })),
              Effect.raceFirst(Deferred.await(lost).pipe(Effect.zipRight(Effect.fail(leaseLost(row.id))))),
              restore,
              Effect.exit
            )
            held.delete(row.sequence)
            if (yield* Deferred.isDone(lost)) {
              yield* Effect.logWarning("queue job stopped: its lease was lost").pipe(Effect.annotateLogs("job", row.id))
              return yield* leaseLost(row.id)
            }
            yield* settle(row.sequence, exit, row.attempts)
            return yield* exit
          })
        )
    }
  }

  const backlog = (name: string, maxAttempts: number) =>
    Effect.gen(function* () {
      const [pending] = yield* sql<{ pending: number; oldest: number | null }>`
        SELECT count(*)::int AS pending, extract(epoch FROM NOW() - min(created_at))::float8 AS oldest FROM ${table}
        WHERE queue_name = ${name} AND completed = FALSE AND attempts < ${maxAttempts}`
      const [done] = yield* sql<{ since: number | null }>`
        SELECT extract(epoch FROM NOW() - max(updated_at))::float8 AS since FROM ${table} WHERE queue_name = ${name} AND completed`
      return {
        pending: pending?.pending ?? 0,
        oldestSeconds: Math.max(0, pending?.oldest ?? 0),
        sinceCompletionSeconds: done?.since ?? undefined
      } satisfies Backlog
    })

  return { make: queueOf, backlog } satisfies QueueStore
})

export const layer = (options: QueueOptions) => Layer.scoped(QueueStoreTag, make(options))
