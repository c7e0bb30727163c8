/**
 * Look-ups from concurrent fibers served by one statement. The jobs of an ingest batch reach
 * the same step together (find the recipients, record the outcome) and ask through services
 * that serve one key at a time; each asks for its own key, and one call of `run` answers all
 * who asked before it started. A round trip per batch instead of per job: the worker's time
 * goes to round trips and their protocol work, on both sides, far more than to the statements.
 */
import { SqlClient } from "@effect/sql"
import { Context, Deferred, Effect, Exit, FiberId } from "effect"

/**
 * `run` answers the keys' values in their order. The first request of a batch starts it
 * once the fibers ready to run have had their turn (so theirs join); a failure of `run`
 * is every request's failure.
 */
/** Resumes once the work ready now (fibers, I/O callbacks) has run: the fibers it wakes may join the batch. */
const afterReadyWork = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

export const batched = <K, V, E>(run: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyArray<V>, E>) => {
  let pending: Array<{ readonly key: K; readonly answer: Deferred.Deferred<V, E> }> = []

  const flush = Effect.suspend(() => {
    const batch = pending
    pending = []
    return run(batch.map((request) => request.key)).pipe(
      Effect.exit,
      Effect.flatMap((exit) =>
        Effect.forEach(batch, (request, i) => Deferred.done(request.answer, Exit.map(exit, (values) => values[i]!)), { discard: true })
      )
    )
  })

  return (key: K): Effect.Effect<V, E> =>
    Effect.suspend(() => {
      const answer = Deferred.unsafeMake<V, E>(FiberId.none)
      pending.push({ key, answer })
      // A daemon: it answers its batch even if the fiber that started it is interrupted; and
      // outside that fiber's transaction, if it has one: the batch serves other fibers too.
      const start = pending.length === 1
        ? Effect.forkDaemon(Effect.zipRight(afterReadyWork, flush).pipe(Effect.mapInputContext((context: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(context))))
        : Effect.void
      return Effect.zipRight(start, Deferred.await(answer))
    })
}
