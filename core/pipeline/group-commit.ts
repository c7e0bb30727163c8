/**
 * Group commit: concurrent callers hand in one item each, and one flusher writes whatever has
 * gathered as a single statement as soon as the previous one returns. There is no timer: a
 * caller alone is written at once, and under load batches grow by themselves, so many
 * requests share one round trip and one WAL flush instead of one each.
 *
 * Each caller gets its own answer. When a batch fails, its items are written again one by one,
 * so one item the database refuses fails only its own caller; when a batch outlasts its time
 * (a database that does not answer), every caller in it fails promptly, and callers that
 * waited longer than that for a turn fail without being written.
 */
import { Cause, Duration, Effect, Exit, FiberId, FiberSet, type Scope } from "effect"

export interface GroupCommitOptions<A, B, E> {
  /** Writes a batch as one statement; one result per item, in order. */
  readonly write: (batch: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>
  /** Writes one item alone: how a failed batch's items are tried again, each on its own. */
  readonly writeOne: (item: A) => Effect.Effect<B, E>
  /** Batches written at the same time (each takes whatever is waiting when it starts). */
  readonly flushers: number
  /** Batches hold at most this many items … */
  readonly maxItems: number
  /** … and at most this much `weight` (unless one item alone weighs more). */
  readonly maxWeight: number
  readonly weight: (item: A) => number
  /** How long a batch may take to write before its callers are failed. */
  readonly timeout: (weight: number) => Duration.DurationInput
  /** How long a caller may wait for its batch to start before it is failed unwritten. */
  readonly maxWait: Duration.DurationInput
  /** The failure of a caller whose batch (or whose wait for one) took too long. */
  readonly onTimeout: () => E
}

interface Waiting<A, B, E> {
  readonly item: A
  readonly since: number
  readonly resume: (exit: Exit.Exit<B, E>) => void
  cancelled: boolean
}

/** A function that writes one item through the group commit; its flusher lives as long as the scope. */
export const make = <A, B, E>(options: GroupCommitOptions<A, B, E>): Effect.Effect<(item: A) => Effect.Effect<B, E>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const maxWait = Duration.toMillis(options.maxWait)
    let waiting: Array<Waiting<A, B, E>> = []
    let flushing = 0

    /** The next batch: the oldest waiting items within the limits; callers past their wait are failed. */
    const nextBatch = () => {
      const now = Date.now()
      const batch: Array<Waiting<A, B, E>> = []
      let weight = 0
      let taken = 0
      for (; taken < waiting.length; taken++) {
        const entry = waiting[taken]!
        if (entry.cancelled) continue
        if (now - entry.since > maxWait) {
          entry.resume(Exit.fail(options.onTimeout()))
          continue
        }
        const w = options.weight(entry.item)
        if (batch.length > 0 && (batch.length >= options.maxItems || weight + w > options.maxWeight)) break
        batch.push(entry)
        weight += w
      }
      waiting = taken === waiting.length ? [] : waiting.slice(taken)
      return { batch, weight }
    }

    const answerEach = (batch: ReadonlyArray<Waiting<A, B, E>>, exit: Exit.Exit<ReadonlyArray<B>, E>) =>
      Exit.isSuccess(exit)
        ? batch.forEach((entry, i) => entry.resume(Exit.succeed(exit.value[i]!)))
        : batch.forEach((entry) => entry.resume(exit as Exit.Exit<never, E>))

    const flush = (batch: ReadonlyArray<Waiting<A, B, E>>, weight: number): Effect.Effect<void> =>
      options.write(batch.map((entry) => entry.item)).pipe(
        // A statement stuck on a database that does not answer is left to end on its own.
        Effect.disconnect,
        Effect.timeoutFail({ duration: options.timeout(weight), onTimeout: () => new Timeout() }),
        Effect.matchCauseEffect({
          onSuccess: (ids) => Effect.sync(() => answerEach(batch, Exit.succeed(ids))),
          onFailure: (cause) => {
            const failure = Cause.failureOption(cause)
            if (failure._tag === "Some" && failure.value instanceof Timeout) {
              return Effect.sync(() => answerEach(batch, Exit.fail(options.onTimeout())))
            }
            // Alone, or not a plain failure: the batch's answer is each caller's answer.
            if (batch.length === 1 || failure._tag === "None") {
              return Effect.sync(() => answerEach(batch, Exit.failCause(cause as Cause.Cause<E>)))
            }
            // One item may be what the database refused: each is tried on its own.
            return Effect.forEach(batch, (entry) =>
              options.writeOne(entry.item).pipe(
                Effect.disconnect,
                Effect.timeoutFail({ duration: options.timeout(options.weight(entry.item)), onTimeout: () => options.onTimeout() }),
                Effect.exit,
                Effect.map((exit) => entry.resume(exit))
              ), { concurrency: 8, discard: true })
          }
        }),
        // Shut down mid-write: nobody may wait for ever.
        Effect.onInterrupt((ids) => Effect.sync(() => answerEach(batch, Exit.failCause(Cause.interrupt(FiberId.combineAll(ids))))))
      )

    const drain: Effect.Effect<void> = Effect.suspend(() => {
      const { batch, weight } = nextBatch()
      if (batch.length === 0) {
        flushing--
        return Effect.void
      }
      return Effect.zipRight(flush(batch, weight), drain)
    })

    return (item: A) =>
      Effect.async<B, E>((resume) => {
        const entry: Waiting<A, B, E> = { item, since: Date.now(), resume: (exit) => resume(exit), cancelled: false }
        waiting.push(entry)
        if (flushing < options.flushers) {
          flushing++
          run(drain)
        }
        // A caller gone before its turn is not written; one already in a batch is.
        return Effect.sync(() => {
          entry.cancelled = true
        })
      })
  })

class Timeout {
  readonly _tag = "GroupCommitTimeout"
}
