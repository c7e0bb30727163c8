/**
 * Raw body retention: processed notification bodies are deleted once they are older than the
 * retention period, a small batch at a time, so the inbox does not grow for ever. Kept: bodies
 * not yet processed, bodies parked for a provider user nobody has linked yet (linking replays
 * them), and bodies whose pulled bodies or parts are not processed yet. Completed queue jobs
 * go after the same period.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Metric, Schedule } from "effect"
import { retryWhileTransient } from "../storage/errors.ts"

export interface RetentionOptions {
  /** How long a processed body is kept. */
  readonly retention: Duration.DurationInput
  /** How often to look for bodies past it. */
  readonly interval: Duration.DurationInput
  /** Rows deleted per statement. */
  readonly batchSize?: number
}

export const bodiesDeleted = Metric.counter("wearflow_inbox_bodies_deleted_total")

export const make = Effect.fnUntraced(function* (options: RetentionOptions) {
  const sql = yield* SqlClient.SqlClient
  const seconds = Duration.toSeconds(Duration.decode(options.retention))
  const batch = options.batchSize ?? 500

  const deleteBodies = sql<{ id: string }>`
    delete from inbox where id in (
      select i.id from inbox i
      where i.processed_at < now() - make_interval(secs => ${seconds})
        and not exists (select 1 from unlinked_notifications u where u.inbox_id = i.id)
        and not exists (select 1 from inbox c where c.source_inbox_id = i.id and c.processed_at is null)
        and not exists (select 1 from inbox c where c.part_of = i.id and c.processed_at is null)
      order by i.processed_at
      limit ${batch}
      for update of i skip locked)
    returning id`.pipe(Effect.map((rows) => rows.length))

  const deleteJobs = sql<{ sequence: number }>`
    delete from ingest_queue where sequence in (
      select sequence from ingest_queue where completed and updated_at < now() - make_interval(secs => ${seconds})
      limit ${batch} for update skip locked)
    returning sequence`.pipe(Effect.map((rows) => rows.length))

  /** Deletes batch after batch until a batch comes back short; returns how many bodies went. */
  const sweep = Effect.gen(function* () {
    let bodies = 0
    for (;;) {
      const deleted = yield* deleteBodies.pipe(retryWhileTransient("1 minute"))
      bodies += deleted
      yield* Metric.incrementBy(bodiesDeleted, deleted)
      if (deleted < batch) break
    }
    while ((yield* deleteJobs.pipe(retryWhileTransient("1 minute"))) >= batch) {
      // next batch
    }
    return bodies
  })

  return { sweep } as const
})

/** Sweeps at start and every `interval` for the lifetime of the layer. */
export const layer = (options: RetentionOptions) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const { sweep } = yield* make(options)
      yield* sweep.pipe(
        Effect.tap((bodies) => (bodies > 0 ? Effect.logInfo("deleted raw bodies past their retention").pipe(Effect.annotateLogs("bodies", bodies)) : Effect.void)),
        Effect.catchAllCause((cause) => Effect.logWarning("inbox retention sweep failed; trying again later", cause)),
        Effect.repeat(Schedule.spaced(options.interval)),
        Effect.annotateLogs("module", "InboxRetention"),
        Effect.forkScoped
      )
    })
  )
