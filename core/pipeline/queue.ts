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
 *
 * Round trips are shared: the taker whose turn it is to look claims a job for every taker
 * then waiting in one statement (the others take theirs from the claimed batch), and jobs
 * that finish together are marked completed in one statement. A queue may read a row per job
 * with its claim (`Attach`, the job's first read), in the same statement. A taker with nothing
 * to do sleeps for the poll interval, or until this process queues a job (`wakeTakers`) or one
 * it works with says it did (`wakeTakersFromPeer`); a batch claim that found fewer jobs than it
 * asked for also sleeps before the next, rather than asking again at once for nothing.
 *
 * `takeBatch` takes up to a given number of jobs at once, for work that does many jobs as one
 * (one statement per step for them all). Each job still ends on its own: those that succeed
 * are completed together, one that fails is retried (or left alone after its attempts) as a
 * job taken alone would be.
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import { SqlClient, type Statement } from "@effect/sql"
import { Cause, Clock, Context, Data, Deferred, Duration, Effect, Exit, FiberId, Layer, Schedule, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { withMigrationLock } from "../storage/database.ts"

export interface QueueOptions {
  readonly tableName: string
  /** How long to wait before looking again when no job is ready. */
  readonly pollInterval?: Duration.DurationInput
  /** How long a job's lease lasts without renewal: the time a dead process's jobs stay locked. */
  readonly lockExpiration?: Duration.DurationInput
  /** The most jobs one poll claims (at most one per waiting taker). */
  readonly batchSize?: number
}

/** Wakes of sleeping takers: each sleeper registers here; `wakes` counts them so a wake during a poll is not missed. */
const sleepers = new Set<() => void>()
let wakes = 0

/**
 * Tells this process's takers that a job was just queued (committed), so they look now
 * instead of after the poll interval. Harmless when there is none: they look and sleep again.
 */
export const wakeTakers = Effect.sync(() => {
  wakeHere()
  for (const forward of forwards) forward()
})

const wakeHere = () => {
  wakes++
  for (const wake of [...sleepers]) wake()
}

/** Carriers of this process's wakes to the processes it works with. */
const forwards = new Set<() => void>()

/** Calls `forward` on every wake of this process's own, while the scope is open. */
export const forwardWakes = (forward: () => void) =>
  Effect.acquireRelease(Effect.sync(() => forwards.add(forward)), () => Effect.sync(() => forwards.delete(forward)))

/** A wake from another process: this process's takers look, and it goes no further. */
export const wakeTakersFromPeer = Effect.sync(wakeHere)

/** How many takers of this process sleep now (for tests that must act while one does). */
export const sleepingTakers = Effect.sync(() => sleepers.size)

/** A job's lease was lost to another process (it renewed too late): the job stopped here. */
export class LeaseLost extends Data.TaggedError("LeaseLost")<{ readonly id: string }> {
  readonly retryable = true
  override get message() {
    return `the lease on queue job ${this.id} was lost; another process has it now`
  }
}

const leaseLost = (id: string) => new PersistedQueue.PersistedQueueError({ message: new LeaseLost({ id }).message, cause: new LeaseLost({ id }) })

interface Held {
  readonly lost: Deferred.Deferred<void>
}

/** A row this process claimed: held (its lease renewed) from the claim on, run or not yet. */
interface Claimed extends Held {
  readonly sequence: number
  readonly id: string
  readonly element: string
  readonly attempts: number
  readonly attached: Readonly<Record<string, unknown>> | undefined
}

/** A job of a batch, as `takeBatch` hands it over. */
export interface BatchJob<A> {
  readonly value: A
  readonly id: string
  readonly attempts: number
  /** The columns of the queue's `attach` row for this job (by column name), when it has one. */
  readonly attached?: Readonly<Record<string, unknown>> | undefined
}

/**
 * A row a claim reads along with each job, in the same statement: the row of `table` whose
 * bigint `key` equals the job's JSON element's integer `field` (its `columns`). A job's first
 * step is usually to read such a row; read with the claim it costs no round trip of its own.
 */
export interface Attach {
  readonly table: string
  readonly key: string
  readonly field: string
  readonly columns: ReadonlyArray<string>
}

/** A queue whose jobs may also be taken in batches. */
export interface BatchQueue<A> extends PersistedQueue.PersistedQueue<A> {
  /**
   * Takes up to `maxJobs` jobs (waiting for one if none is ready) and runs `f` on them all;
   * `f` answers each job's exit, in their order, and each job is settled by its own exit. A
   * job whose value does not decode fails alone without reaching `f`. If the lease of any job
   * is lost meanwhile, `f` is stopped: the lost jobs are left to their new holder and the
   * others go back to the queue untouched.
   */
  readonly takeBatch: <B, E, R>(
    f: (jobs: ReadonlyArray<BatchJob<A>>) => Effect.Effect<ReadonlyArray<Exit.Exit<B, E>>, never, R>,
    options: {
      readonly maxAttempts?: number
      readonly maxJobs: number
      /**
       * What goes with the completion of the jobs that succeeded (given their values): a
       * statement run in the completion's own (a data-modifying CTE), so the two are one round
       * trip and atomic; nothing when undefined. Should it fail for good, neither is done and
       * the jobs run again once their leases lapse.
       */
      readonly alongCompletion?: (values: ReadonlyArray<B>) => Statement.Statement<unknown> | undefined
    }
  ) => Effect.Effect<ReadonlyArray<Exit.Exit<B, E | PersistedQueue.PersistedQueueError>>, PersistedQueue.PersistedQueueError, R>
}

/** The queue table and the jobs this process holds in it. */
export interface QueueStore {
  readonly make: <A, I>(name: string, schema: Schema.Schema<A, I>, options?: { readonly attach?: Attach }) => BatchQueue<A>
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
  const batchSize = Math.max(1, options.batchSize ?? 32)
  const pollMillis = Duration.toMillis(pollInterval)
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
    sql`CREATE INDEX IF NOT EXISTS ${sql(`idx_${options.tableName}_completed`)} ON ${table} (queue_name, updated_at) WHERE completed`,
    // Jobs to do in the order they are taken: a poll reads the first few instead of sorting the backlog.
    sql`CREATE INDEX IF NOT EXISTS ${sql(`idx_${options.tableName}_ready`)} ON ${table} (queue_name, updated_at, sequence) WHERE NOT completed`
  ], { discard: true }))

  const held = new Map<number, Held>()
  /** Each queue's claimed jobs not started yet. */
  const unstarted = new Set<Array<Claimed>>()
  // Jobs claimed but never started when the store closes go back to the queue at once.
  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      const left = [...unstarted].flatMap((ready) => ready.splice(0)).map((c) => c.sequence)
      for (const sequence of left) held.delete(sequence)
      return left.length === 0
        ? Effect.void
        : sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL WHERE sequence IN ${sql.in(left)} AND acquired_by = ${workerId}`.pipe(Effect.ignore)
    })
  )
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

  /** Claims up to `limit` jobs, oldest first, with their `attach` rows; they are held from here on. */
  const claim = (name: string, maxAttempts: number, limit: number, attach: Attach | undefined) => {
    type Row = Record<string, unknown> & { sequence: number; id: string; element: string; attempts: number; updated_at: Date }
    const update = sql<Row>`
      UPDATE ${table} SET acquired_at = NOW(), acquired_by = ${workerId}
      WHERE sequence = ANY(ARRAY(
        SELECT sequence FROM ${table}
        WHERE queue_name = ${name} AND completed = FALSE AND attempts < ${maxAttempts}
          AND (acquired_at IS NULL OR acquired_at < NOW() - INTERVAL '${expirationSeconds} seconds')
        ORDER BY updated_at ASC, sequence ASC
        FOR UPDATE SKIP LOCKED
        LIMIT ${limit}
      ))
      RETURNING sequence, id, element, attempts, updated_at`
    const statement = attach === undefined ? update : sql<Row>`
      WITH claimed AS (${update})
      SELECT claimed.*, ${sql.join(", ", false)(attach.columns.map((c, i) => sql`a.${sql(c)} AS ${sql(`attached_${i}`)}`))}
      FROM claimed
      -- The key read out of the element's text, never cast from it: an element that is not JSON fails alone, later.
      LEFT JOIN LATERAL (SELECT substring(claimed.element FROM ${`"${attach.field}"[[:space:]]*:[[:space:]]*([0-9]+)`}) AS key) k ON TRUE
      LEFT JOIN ${sql(attach.table)} a ON a.${sql(attach.key)} = CASE WHEN length(k.key) <= 18 THEN k.key::bigint END`
    return statement.pipe(
      Effect.map((rows) =>
        rows
          .map((row): Row => ({ ...row, sequence: Number(row.sequence) }))
          .sort((a, b) => a.updated_at.getTime() - b.updated_at.getTime() || a.sequence - b.sequence)
          .map((row): Claimed => {
            const attached = attach === undefined ? undefined : Object.fromEntries(attach.columns.map((c, i) => [c, row[`attached_${i}`]]))
            const claimed = { sequence: row.sequence, id: row.id, element: row.element, attempts: row.attempts, attached, lost: Deferred.unsafeMake<void>(FiberId.none) }
            held.set(row.sequence, claimed)
            return claimed
          })
      )
    )
  }

  /** Sleeps for the poll interval, or until `wakeTakers`; not at all when a wake came since `seen`. */
  const nap = (seen: number) =>
    Effect.async<void>((resume) => {
      if (wakes !== seen) return resume(Effect.void)
      const wake = () => {
        sleepers.delete(wake)
        clearTimeout(timer)
        resume(Effect.void)
      }
      // Real time, whatever clock the caller has (as the leases).
      const timer = setTimeout(wake, pollMillis)
      sleepers.add(wake)
      return Effect.sync(() => {
        sleepers.delete(wake)
        clearTimeout(timer)
      })
    })

  /** Jobs that finished, waiting to be marked completed together (`flushCompletions`). */
  const completions: Array<{ readonly sequence: number; readonly done: Deferred.Deferred<void> }> = []
  let flushing = false

  /** Marks every finished job completed, one statement per batch, until none is left. */
  const flushCompletions: Effect.Effect<void> = Effect.suspend(() => {
    const batch = completions.splice(0)
    if (batch.length === 0) {
      flushing = false
      return Effect.void
    }
    const release = Effect.forEach(new Set(batch.map((c) => c.done)), (done) => Deferred.succeed(done, undefined), { discard: true })
    return sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL, updated_at = NOW(), completed = TRUE, attempts = attempts + 1
               WHERE sequence IN ${sql.in(batch.map((c) => c.sequence))} AND acquired_by = ${workerId}`.pipe(
      // If this fails for good the leases lapse and the jobs run again: at least once, never twice at once.
      Effect.retry({ times: 5, schedule: Schedule.exponential(100, 1.5) }),
      Effect.ignoreLogged,
      Effect.ensuring(release),
      Effect.zipRight(flushCompletions)
    )
  })

  /** Finished jobs, marked completed with those that finish meanwhile (one statement for them all). */
  const complete = (sequences: ReadonlyArray<number>) =>
    Effect.suspend(() => {
      if (sequences.length === 0) return Effect.void
      const done = Deferred.unsafeMake<void>(FiberId.none)
      for (const sequence of sequences) completions.push({ sequence, done })
      if (flushing) return Deferred.await(done)
      flushing = true
      // A daemon: it releases its waiters whatever happens, also while the store closes.
      return Effect.zipRight(Effect.forkDaemon(flushCompletions), Deferred.await(done))
    })

  /**
   * Finished jobs marked completed in one statement with `along` (see takeBatch's
   * alongCompletion), rather than with the jobs of other batches (`complete`).
   */
  const completeAlong = (sequences: ReadonlyArray<number>, along: Statement.Statement<unknown> | undefined) =>
    sequences.length === 0 || along === undefined
      ? complete(sequences)
      : sql`WITH along AS (${along})
            UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL, updated_at = NOW(), completed = TRUE, attempts = attempts + 1
            WHERE sequence IN ${sql.in(sequences)} AND acquired_by = ${workerId}`.pipe(
        // If this fails for good the leases lapse and the jobs run again: at least once, never twice at once.
        Effect.retry({ times: 5, schedule: Schedule.exponential(100, 1.5) }),
        Effect.ignoreLogged
      )

  /** Later writes to a job's row only apply while this process still holds it. */
  const settle = (sequence: number, exit: Exit.Exit<unknown, unknown>, attempts: number) => {
    if (Exit.isSuccess(exit)) return complete([sequence])
    const statement = Cause.isInterruptedOnly(exit.cause)
      ? sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL WHERE sequence = ${sequence} AND acquired_by = ${workerId}`
      : sql`UPDATE ${table} SET acquired_at = NULL, acquired_by = NULL, updated_at = NOW(), attempts = ${attempts + 1},
              last_failure = ${Cause.pretty(exit.cause, { renderErrorCause: true })}
            WHERE sequence = ${sequence} AND acquired_by = ${workerId}`
    // If this fails for good the lease lapses and the job runs again: at least once, never twice at once.
    return statement.pipe(Effect.retry({ times: 5, schedule: Schedule.exponential(100, 1.5) }), Effect.ignoreLogged)
  }

  const queueOf = <A, I>(name: string, schema: Schema.Schema<A, I>, options?: { readonly attach?: Attach }): BatchQueue<A> => {
    const attach = options?.attach
    const encode = Schema.encode(schema)
    const decode = Schema.decodeUnknown(schema)
    /** One taker at a time looks for jobs: while the queue is empty the process polls it once per interval, not once per taker. */
    const turn = Effect.unsafeMakeSemaphore(1)
    /** Claimed jobs no taker has started yet, oldest first. */
    const ready: Array<Claimed> = []
    let waiting = 0

    /** The next job: one claimed earlier, else a batch claimed now (a job for each taker waiting). */
    const next = (maxAttempts: number) =>
      Effect.acquireUseRelease(
        Effect.sync(() => waiting++),
        () =>
          turn.withPermits(1)(Effect.gen(function* () {
            for (;;) {
              const claimed = ready.shift()
              if (claimed) {
                if (!(yield* Deferred.isDone(claimed.lost))) return claimed
                // Lost while it waited here: its new holder runs it.
                held.delete(claimed.sequence)
                continue
              }
              const seen = wakes
              const rows = yield* claim(name, maxAttempts, Math.min(batchSize, waiting), attach).pipe(
                Effect.catchAllCause((cause) => Effect.logWarning("could not poll the queue", cause).pipe(Effect.as([] as Array<Claimed>)))
              )
              if (rows.length > 0) ready.push(...rows)
              else yield* nap(seen)
            }
          })),
        () => Effect.sync(() => waiting--)
      )
    /**
     * The wakes seen before the last batch claim, when it found fewer jobs than it asked for:
     * the queue was empty then, so the next claim waits for a wake (or the poll interval) rather
     * than asking at once, which would find nothing but cost a statement per batch.
     */
    let drainedAt: number | undefined
    /** Up to `maxJobs` jobs: those claimed earlier, else a batch claimed now; waits for one when none is ready. */
    const nextBatch = (maxAttempts: number, maxJobs: number) =>
      turn.withPermits(1)(Effect.gen(function* () {
        for (;;) {
          const jobs: Array<Claimed> = []
          while (jobs.length < maxJobs && ready.length > 0) {
            const claimed = ready.shift()!
            // Lost while it waited here: its new holder runs it.
            if (yield* Deferred.isDone(claimed.lost)) held.delete(claimed.sequence)
            else jobs.push(claimed)
          }
          if (jobs.length > 0) return jobs
          if (drainedAt !== undefined) yield* nap(drainedAt)
          const seen = wakes
          const rows = yield* claim(name, maxAttempts, maxJobs, attach).pipe(
            Effect.catchAllCause((cause) => Effect.logWarning("could not poll the queue", cause).pipe(Effect.as([] as Array<Claimed>)))
          )
          drainedAt = rows.length < maxJobs ? seen : undefined
          if (rows.length > 0) return rows
        }
      }))
    unstarted.add(ready)

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
          yield* wakeTakers
          return id
        }),
      take: (f, opts) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const row = yield* restore(next(opts?.maxAttempts ?? 10))
            const exit = yield* decode(JSON.parse(row.element)).pipe(
              Effect.flatMap((value) => f(value, { id: row.id, attempts: row.attempts })),
              Effect.raceFirst(Deferred.await(row.lost).pipe(Effect.zipRight(Effect.fail(leaseLost(row.id))))),
              restore,
              Effect.exit
            )
            held.delete(row.sequence)
            if (yield* Deferred.isDone(row.lost)) {
              yield* Effect.logWarning("queue job stopped: its lease was lost").pipe(Effect.annotateLogs("job", row.id))
              return yield* leaseLost(row.id)
            }
            yield* settle(row.sequence, exit, row.attempts)
            return yield* exit
          })
        ),
      takeBatch: (f, opts) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const rows = yield* restore(nextBatch(opts.maxAttempts ?? 10, Math.max(1, opts.maxJobs)))
            // A row whose element does not parse or decode fails alone.
            const decoded = yield* Effect.forEach(rows, (row) =>
              Effect.exit(Effect.flatMap(Effect.try(() => JSON.parse(row.element) as unknown), decode)))
            const runnable = rows.flatMap((row, i) => {
              const value = decoded[i]!
              return Exit.isSuccess(value) ? [{ row, job: { value: value.value, id: row.id, attempts: row.attempts, attached: row.attached } }] : []
            })
            const anyLost = Effect.raceAll(runnable.map(({ row }) => Deferred.await(row.lost)))
            const ran = runnable.length === 0
              ? Exit.succeed([])
              : yield* f(runnable.map((r) => r.job)).pipe(
                Effect.raceFirst(anyLost.pipe(Effect.zipRight(Effect.interrupt))),
                restore,
                Effect.exit
              )
            const exitOf = new Map(runnable.map(({ row }, i) => [row.sequence, Exit.isSuccess(ran) ? ran.value[i]! : ran]))
            const exits: Array<Exit.Exit<unknown, unknown>> = []
            const completed: Array<number> = []
            const values: Array<unknown> = []
            const failed: Array<{ readonly row: Claimed; readonly exit: Exit.Exit<unknown, unknown> }> = []
            for (const [i, row] of rows.entries()) {
              held.delete(row.sequence)
              if (yield* Deferred.isDone(row.lost)) {
                yield* Effect.logWarning("queue job stopped: its lease was lost").pipe(Effect.annotateLogs("job", row.id))
                exits.push(Exit.fail(leaseLost(row.id)))
                continue
              }
              const decodeExit = decoded[i]!
              const exit: Exit.Exit<unknown, unknown> = Exit.isFailure(decodeExit) ? decodeExit : exitOf.get(row.sequence)!
              exits.push(exit)
              if (Exit.isSuccess(exit)) {
                completed.push(row.sequence)
                values.push(exit.value)
              } else failed.push({ row, exit })
            }
            const along = completed.length === 0 ? undefined : opts.alongCompletion?.(values as never)
            // Those that succeeded in one statement; each failure on its own, as a job taken alone.
            yield* Effect.all([completeAlong(completed, along), Effect.forEach(failed, ({ row, exit }) => settle(row.sequence, exit, row.attempts), { discard: true })], {
              concurrency: "unbounded",
              discard: true
            })
            return exits as never
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
