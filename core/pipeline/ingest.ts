/**
 * The ingest worker: takes inbox items from the durable queue, splits them into items per
 * provider user, normalizes them, and writes records and events for every linked user.
 * Items for provider users nobody has linked are parked (see Accounts.recipientsOrPark).
 * Transient database failures are retried with back-off inside the job, so an
 * acknowledged notification is never dropped by a burst of failed attempts.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer, Metric, Schedule } from "effect"
import { Accounts } from "../accounts.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { type NotificationItem, Providers } from "../provider.ts"
import { type IngestJob, IngestQueue } from "./inbox.ts"
import { isTransient, sqlState } from "../storage/errors.ts"
import { RecordStore } from "./store.ts"

export interface ItemProblem {
  readonly key: string
  readonly index: number
  readonly message: string
}

/** What processing one inbox item did; stored on the inbox row for operators. */
export interface IngestOutcome {
  readonly items: number
  readonly unlinked: number
  readonly created: number
  readonly updated: number
  readonly unchanged: number
  readonly errors: ReadonlyArray<ItemProblem>
}

export const itemsProcessed = Metric.counter("wearflow_items_processed_total")
export const itemsUnlinked = Metric.counter("wearflow_items_unlinked_total")
export const itemErrors = Metric.counter("wearflow_item_errors_total")

const groupByProviderUser = (items: ReadonlyArray<NotificationItem>) => {
  const groups = new Map<string, Array<NotificationItem>>()
  for (const item of items) {
    if (item.providerUserId === undefined) continue
    const group = groups.get(item.providerUserId) ?? []
    group.push(item)
    groups.set(item.providerUserId, group)
  }
  return groups
}

/** Database outages are retried: capped exponential back-off, up to 30 s between attempts. */
const retryTransient = Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("30 seconds")))

export class IngestWorker extends Effect.Service<IngestWorker>()("wearflow/IngestWorker", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers
    const accounts = yield* Accounts
    const store = yield* RecordStore

    const process = Effect.fn("IngestWorker.process")(function* (job: IngestJob) {
      const [row] = yield* sql<{ provider: string; body: string }>`select provider, body from inbox where id = ${job.inboxId}`
      const nothing: IngestOutcome = { items: 0, unlinked: 0, created: 0, updated: 0, unchanged: 0, errors: [] }
      if (!row) {
        yield* Effect.logWarning("inbox item vanished before processing")
        return nothing
      }
      const provider = providers.get(row.provider)
      if (!provider) {
        yield* Effect.logError("no provider plugin loaded for inbox item").pipe(Effect.annotateLogs("provider", row.provider))
        return nothing
      }

      // Bodies were parsed before they were stored; a body that no longer parses yields no items.
      const body = Either.try(() => JSON.parse(row.body) as unknown).pipe(Either.getOrElse(() => undefined))
      const items = provider.itemsOf(body).filter(
        (item) => job.providerUserId === undefined || item.providerUserId === job.providerUserId
      )
      const errors: Array<ItemProblem> = []
      let unlinked = 0
      let created = 0
      let updated = 0
      let unchanged = 0
      for (const [providerUserId, group] of groupByProviderUser(items)) {
        const recipients = yield* accounts.recipientsOrPark(provider.id, providerUserId, job.inboxId, group.length)
        if (recipients.length === 0) {
          unlinked += group.length
          continue
        }
        const normalized: Array<{ readonly item: NotificationItem; readonly records: ReadonlyArray<NormalizedRecord> }> = []
        for (const item of group) {
          const normalize = provider.normalizers[item.key]
          if (!normalize) continue
          Either.match(normalize(item.raw), {
            onLeft: (error) => errors.push({ key: item.key, index: item.index, message: error.message }),
            onRight: (records) => normalized.push({ item, records })
          })
        }
        for (const recipient of recipients) {
          const outcome = yield* store.write(recipient, provider.id, normalized.flatMap((n) => n.records), job.inboxId).pipe(
            // A record the database refuses for good (bad data) must not block its neighbours:
            // write item by item, and report the ones that cannot be stored.
            Effect.catchIf(
              (e) => e._tag === "SqlError" && !isTransient(e),
              () =>
                Effect.reduce(normalized, { created: 0, updated: 0, unchanged: 0 }, (total, { item, records }) =>
                  store.write(recipient, provider.id, records, job.inboxId).pipe(
                    Effect.map((o) => ({ created: total.created + o.created, updated: total.updated + o.updated, unchanged: total.unchanged + o.unchanged })),
                    Effect.catchIf(
                      (e) => e._tag === "SqlError" && !isTransient(e),
                      (e) =>
                        Effect.sync(() => {
                          errors.push({ key: item.key, index: item.index, message: `record could not be stored (SQLSTATE ${sqlState(e) ?? "unknown"})` })
                          return total
                        })
                    )
                  ))
            )
          )
          created += outcome.created
          updated += outcome.updated
          unchanged += outcome.unchanged
        }
      }
      const outcome: IngestOutcome = { items: items.length, unlinked, created, updated, unchanged, errors }
      // A replay for one provider user does not overwrite the outcome of the first pass.
      if (job.providerUserId === undefined) {
        yield* sql`update inbox set processed_at = now(), outcome = ${JSON.stringify(outcome)}::jsonb where id = ${job.inboxId}`
      }
      yield* Metric.incrementBy(Metric.tagged(itemsProcessed, "provider", provider.id), items.length)
      yield* Metric.incrementBy(Metric.tagged(itemsUnlinked, "provider", provider.id), unlinked)
      yield* Metric.incrementBy(Metric.tagged(itemErrors, "provider", provider.id), errors.length)
      if (errors.length > 0) {
        // Paths and problem kinds only: item errors never carry health values.
        yield* Effect.logWarning("notification items failed validation").pipe(
          Effect.annotateLogs({ inbox_id: job.inboxId, provider: provider.id, errors: errors.slice(0, 20) })
        )
      }
      return outcome
    }, (effect, job) =>
      effect.pipe(
        Effect.tapError((e) => Effect.logWarning("ingest paused by a database error; retrying").pipe(Effect.annotateLogs("error", e.message))),
        Effect.retry({ schedule: retryTransient, while: (e) => e._tag === "SqlError" && isTransient(e) }),
        Effect.annotateLogs("inbox_id", job.inboxId)
      ))

    return { process } as const
  })
}) {}

/** Runs `concurrency` takers on the ingest queue for the lifetime of the layer. */
export const layerTakers = (concurrency: number) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const queue = yield* IngestQueue
      const worker = yield* IngestWorker
      const taker = queue.take((job) => worker.process(job), { maxAttempts: 100 }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("ingest job failed; it stays queued for another attempt", cause).pipe(Effect.zipRight(Effect.sleep("1 second")))
        ),
        Effect.forever
      )
      yield* Effect.forkScoped(Effect.all(Array.from({ length: concurrency }, () => taker), { concurrency: "unbounded", discard: true }))
    })
  )
