/**
 * The ingest worker: takes inbox items from the durable queue and splits them into items per
 * provider user (Provider.itemsOf).
 * - Lifecycle items (deregistration, permission changes) update the connections.
 * - Record items are normalized and written, with their events, for every linked user.
 * - Deletion items remove what was stored from the provider record they name, with events,
 *   for every linked user.
 * - Pointer items are fetched from the provider; what comes back is committed as a new inbox
 *   body (so it is durable and processed like any other), or kept as a file.
 * Items for provider users nobody has linked are parked (see Accounts.recipientsOrPark).
 * Data items also tell running backfills that the history they asked for is arriving.
 * Transient database failures are retried with back-off inside the job, so an acknowledged
 * notification is never dropped by a burst of failed attempts.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Context, Duration, Effect, Either, Layer, Metric, Schedule } from "effect"
import { Links, userKey } from "../connections/links.ts"
import { Connections } from "../connections/connections.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { type NotificationItem, type Provider, Providers, type UserRef } from "../provider.ts"
import { batched } from "../storage/batched.ts"
import { isTransient, retryWhileTransient, sqlState } from "../storage/errors.ts"
import * as Tracing from "../tracing.ts"
import { ActivityFiles } from "./files.ts"
import * as GroupCommit from "./group-commit.ts"
import { HistoryObserver } from "./history.ts"
import { bodyOf, Inbox, INGEST_MAX_ATTEMPTS, type IngestJob, IngestQueue } from "./inbox.ts"
import { type Recipient, RecordStore, type WritePart } from "./store.ts"

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
  /** Stored records removed by deletion items (over all linked users). */
  readonly deleted: number
  /** Pointer items whose data was fetched. */
  readonly pulled: number
  readonly errors: ReadonlyArray<ItemProblem>
}

export const itemsProcessed = Metric.counter("wearflow_items_processed_total")
export const itemsUnlinked = Metric.counter("wearflow_items_unlinked_total")
export const itemErrors = Metric.counter("wearflow_item_errors_total")
export const itemsPulled = Metric.counter("wearflow_items_pulled_total")
export const recordsDeleted = Metric.counter("wearflow_records_deleted_total")

/** The counters tagged with a provider, made once per provider rather than once per job. */
const tagged = new Map<string, ReturnType<typeof countersFor>>()
const countersFor = (provider: string) => ({
  processed: Metric.tagged(itemsProcessed, "provider", provider),
  unlinked: Metric.tagged(itemsUnlinked, "provider", provider),
  errors: Metric.tagged(itemErrors, "provider", provider),
  pulled: Metric.tagged(itemsPulled, "provider", provider),
  deleted: Metric.tagged(recordsDeleted, "provider", provider)
})
const countersOf = (provider: string) => {
  const known = tagged.get(provider)
  if (known) return known
  const made = countersFor(provider)
  tagged.set(provider, made)
  return made
}

interface UserGroup {
  readonly ref: UserRef
  readonly items: Array<NotificationItem>
}

const groupByUser = (items: ReadonlyArray<NotificationItem>) => {
  const groups = new Map<string, UserGroup>()
  for (const item of items) {
    if (item.user === undefined) continue
    const key = userKey(item.user)
    const group = groups.get(key) ?? { ref: item.user, items: [] }
    group.items.push(item)
    groups.set(key, group)
  }
  return groups
}


export interface IngestOptions {
  /** Back-off between attempts at a fetch that failed with 429, 5xx or a network error. */
  readonly pullBackoff?: Duration.DurationInput
  /** Attempts at such a fetch before it is reported as failed. */
  readonly pullAttempts?: number
}

const isPermanentSqlError = (e: { readonly _tag: string }) => e._tag === "SqlError" && !isTransient(e as never)

export const make = (options: IngestOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers
    const links = yield* Links
    const connections = yield* Connections
    const store = yield* RecordStore
    const inbox = yield* Inbox
    const files = yield* ActivityFiles
    const history = yield* HistoryObserver
    /** Inbox rows by id, read for all takers at the same step in one statement. */
    const inboxRow = batched((ids: ReadonlyArray<number>) =>
      sql<{ id: string; provider: string; kind: string; body: string; part_of: string | null; trace_context: string | null }>`
        select id, provider, kind, body, part_of, trace_context from inbox where id = any(${ids}::bigint[])`.pipe(
        Effect.map((rows) => {
          const byId = new Map(rows.map((row) => [Number(row.id), row]))
          return ids.map((id) => byId.get(id))
        })
      )
    )
    /**
     * Record writes through a group commit (group-commit.ts): the writes of the takers that
     * reach this step together go as one store transaction, a handful of statements for all of
     * them instead of for each. A batch the database refuses is written again part by part,
     * so a job with a bad record fails alone (and `writeFor` goes on item by item).
     */
    const writeGrouped = yield* GroupCommit.make({
      write: store.writeParts,
      writeOne: (part: WritePart) => Effect.map(store.writeParts([part]), (outcomes) => outcomes[0]!),
      // Two in flight: one gathers the takers that arrive while the other is written.
      flushers: 2,
      maxItems: 64,
      maxWeight: 5_000,
      weight: (part) => part.records.length,
      timeout: () => Duration.minutes(5),
      maxWait: Duration.minutes(5),
      // No SQLSTATE: a transient failure, so the job waits the database out and tries again.
      onTimeout: () => new SqlError({ cause: undefined, message: "record write timed out" })
    })
    const pullRetry = Schedule.exponential(options.pullBackoff ?? "1 second").pipe(
      Schedule.union(Schedule.spaced("2 minutes")),
      Schedule.intersect(Schedule.recurs((options.pullAttempts ?? 8) - 1))
    )

    /** Writes normalized records for one recipient; records the database refuses become item problems. */
    const writeFor = (
      recipient: Recipient,
      provider: Provider,
      normalized: ReadonlyArray<{ readonly item: NotificationItem; readonly records: ReadonlyArray<NormalizedRecord> }>,
      inboxId: number,
      errors: Array<ItemProblem>,
      historical: ReadonlySet<NormalizedRecord>
    ) =>
      writeGrouped({ recipient, provider: provider.id, records: normalized.flatMap((n) => n.records), inboxId, historical }).pipe(
        // A record the database refuses for good (bad data) must not block its neighbours:
        // write item by item, and report the ones that cannot be stored.
        Effect.catchIf(isPermanentSqlError, () =>
          Effect.reduce(normalized, { created: 0, updated: 0, unchanged: 0 }, (total, { item, records }) =>
            store.write(recipient, provider.id, records, inboxId, historical).pipe(
              Effect.map((o) => ({ created: total.created + o.created, updated: total.updated + o.updated, unchanged: total.unchanged + o.unchanged })),
              Effect.catchIf(isPermanentSqlError, (e) =>
                Effect.sync(() => {
                  errors.push({ key: item.key, index: item.index, message: `record could not be stored (SQLSTATE ${sqlState(e as never) ?? "unknown"})` })
                  return total
                }))
            )))
      )

    /** Applies deletion items for one recipient; a source id the database refuses becomes an item problem. */
    const removeFor = (
      recipient: Recipient,
      provider: Provider,
      deletions: ReadonlyArray<NotificationItem & { readonly carries: "deletion" }>,
      inboxId: number,
      errors: Array<ItemProblem>
    ) =>
      store.remove(recipient, provider.id, deletions.map((item) => item.deleted), inboxId).pipe(
        // As for records: one id the database refuses for good must not block the others.
        Effect.catchIf(isPermanentSqlError, () =>
          Effect.reduce(deletions, 0, (total, item) =>
            store.remove(recipient, provider.id, [item.deleted], inboxId).pipe(
              Effect.map((removed) => total + removed),
              Effect.catchIf(isPermanentSqlError, (e) =>
                Effect.sync(() => {
                  errors.push({ key: item.key, index: item.index, message: `deletion could not be applied (SQLSTATE ${sqlState(e as never) ?? "unknown"})` })
                  return total
                }))
            )))
      )

    /**
     * One provider user's items: lifecycle items change connections; record items are
     * normalized and stored; deletion items remove what was stored (after the records, so a
     * body that holds both a record and its deletion leaves it deleted); pointer items are
     * fetched and kept (as a new inbox body or a file).
     */
    const processGroup = Effect.fn("IngestWorker.processGroup")(function* (
      provider: Provider,
      job: IngestJob,
      receivedAs: number,
      group: UserGroup,
      outcome: { unlinked: number; created: number; updated: number; unchanged: number; deleted: number; pulled: number; errors: Array<ItemProblem> }
    ) {
      const { errors } = outcome
      const records: Array<NotificationItem> = []
      const pointers: Array<NotificationItem> = []
      const deletions: Array<NotificationItem & { readonly carries: "deletion" }> = []
      for (const item of group.items) {
        const change = provider.lifecycle(item)
        if (change) yield* links.applyLifecycle(provider, group.ref, change, job.inboxId)
        else if (item.carries === "pointer") pointers.push(item)
        else if (item.carries === "deletion") deletions.push(item)
        else if (provider.normalizers[item.key] !== undefined) records.push(item)
      }
      const count = records.length + pointers.length + deletions.length
      if (count === 0) return
      const recipients = yield* links.recipientsOrPark(provider.id, group.ref, job.inboxId, count)
      if (recipients.length === 0) {
        outcome.unlinked += count
        return
      }
      if (records.length > 0) {
        const normalized: Array<{ readonly item: NotificationItem; readonly records: ReadonlyArray<NormalizedRecord> }> = []
        for (const item of records) {
          Either.match(provider.normalizers[item.key]!(item.raw), {
            onLeft: (error) => errors.push({ key: item.key, index: item.index, message: error.message }),
            onRight: (records) => normalized.push({ item, records })
          })
        }
        const answering = yield* history.answering(provider, recipients, normalized.map((n) => n.item))
        const historical = new Set(normalized.filter((n) => answering.has(n.item)).flatMap((n) => n.records))
        for (const recipient of recipients) {
          const written = yield* writeFor(recipient, provider, normalized, receivedAs, errors, historical)
          outcome.created += written.created
          outcome.updated += written.updated
          outcome.unchanged += written.unchanged
        }
        // Stored first: a backfill told its data is in may complete and announce it at once.
        yield* history.recordArrivals(provider, recipients, normalized.map((n) => n.item))
      }
      if (deletions.length > 0) {
        for (const recipient of recipients) outcome.deleted += yield* removeFor(recipient, provider, deletions, receivedAs, errors)
      }
      if (pointers.length === 0) return
      const credentials = yield* connections.credentialsFor(provider.id, group.ref).pipe(
        Effect.catchTag("DecryptionError", (e) => Effect.logError(e.message).pipe(Effect.as(undefined)))
      )
      for (const item of pointers) {
        const result = yield* provider.fetch(item, credentials).pipe(
          // A provider that said when to come back (429 Retry-After) is not asked sooner.
          Effect.tapError((e) => (e.retryable && e.retryAfter !== undefined ? Effect.sleep(e.retryAfter) : Effect.void)),
          Effect.retry({ schedule: pullRetry, while: (e) => e.retryable }),
          Effect.either
        )
        if (Either.isLeft(result)) {
          errors.push({ key: item.key, index: item.index, message: result.left.message })
          yield* Effect.logWarning("fetch failed").pipe(
            Effect.annotateLogs({ key: item.key, index: item.index, status: result.left.status, error: result.left.message })
          )
          continue
        }
        const data = result.right
        if (data._tag === "Records") {
          yield* inbox.commit({
            provider: provider.id,
            kind: data.kind,
            ...bodyOf(data.key, data.records),
            source: { inboxId: job.inboxId, index: item.index }
          })
        } else {
          yield* files.save(provider.id, recipients, data)
        }
        outcome.pulled++
      }
    })

    const process = Effect.fn("IngestWorker.process")(function* (job: IngestJob) {
      const nothing: IngestOutcome = { items: 0, unlinked: 0, created: 0, updated: 0, unchanged: 0, deleted: 0, pulled: 0, errors: [] }
      const row = yield* inboxRow(job.inboxId)
      if (!row) {
        yield* Effect.logWarning("inbox item vanished before processing")
        return nothing
      }
      const provider = providers.get(row.provider)
      if (!provider) {
        yield* Effect.logError("no provider plugin loaded for inbox item").pipe(Effect.annotateLogs("provider", row.provider))
        return nothing
      }
      return yield* handle(job, row, provider).pipe(
        Effect.withSpan("ingest notification", { kind: "consumer", attributes: { "wearflow.provider": provider.id, "wearflow.inbox_id": job.inboxId } }),
        // The trace of the request that stored the body (core/tracing.ts), when traces are exported.
        Tracing.continueTrace(row.trace_context)
      )
    }, (effect, job) =>
      effect.pipe(
        Effect.tapError((e) => Effect.logWarning("ingest paused by an error; retrying").pipe(Effect.annotateLogs("error", e.message))),
        // Database outages are waited out, however long.
        retryWhileTransient(),
        // A part that fails goes back to the queue; the parts after it need not wait for it.
        Effect.tapError(() => Effect.ignore(inbox.queueNextPart(job.inboxId))),
        Effect.annotateLogs("inbox_id", job.inboxId)
      ))

    /** Processes one inbox row's items and records the outcome. */
    const handle = (job: IngestJob, row: { readonly kind: string; readonly body: string; readonly part_of: string | null }, provider: Provider) => Effect.gen(function* () {
      // Bodies were parsed before they were stored; a body that no longer parses yields no items.
      const body = Either.try(() => JSON.parse(row.body) as unknown).pipe(Either.getOrElse(() => undefined))
      const items = provider.itemsOf(row.kind, body).filter((item) => job.userKey === undefined || (item.user !== undefined && userKey(item.user) === job.userKey))
      // A part of a large body ranks, among deliveries, as the body it came in.
      const receivedAs = row.part_of === null ? job.inboxId : Number(row.part_of)
      // The items left out as malformed are the first problems of a first pass.
      const problems = job.userKey === undefined ? provider.problemsOf?.(row.kind, body) ?? [] : []
      const outcome = { items: items.length, unlinked: 0, created: 0, updated: 0, unchanged: 0, deleted: 0, pulled: 0, errors: [...problems] as Array<ItemProblem> }
      for (const group of groupByUser(items).values()) yield* processGroup(provider, job, receivedAs, group, outcome)
      // A replay for one provider user does not overwrite the outcome of the first pass.
      if (job.userKey === undefined) yield* inbox.finish(job.inboxId, outcome)
      const counters = countersOf(provider.id)
      yield* Metric.incrementBy(counters.processed, outcome.items)
      yield* Metric.incrementBy(counters.unlinked, outcome.unlinked)
      yield* Metric.incrementBy(counters.errors, outcome.errors.length)
      yield* Metric.incrementBy(counters.pulled, outcome.pulled)
      yield* Metric.incrementBy(counters.deleted, outcome.deleted)
      if (outcome.errors.length > 0) {
        // Paths and problem kinds only: item errors never carry health values.
        yield* Effect.logWarning("notification items failed").pipe(
          Effect.annotateLogs({ provider: provider.id, errors: outcome.errors.slice(0, 20) })
        )
      }
      return outcome
    })

    return { process } as const
  })

export class IngestWorker extends Context.Tag("wearflow/IngestWorker")<IngestWorker, Effect.Effect.Success<ReturnType<typeof make>>>() {
  static readonly layer = (options?: IngestOptions) => Layer.scoped(IngestWorker, make(options))
}

/** Runs `concurrency` takers on the ingest queue for the lifetime of the layer. */
export const layerTakers = (concurrency: number) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const queue = yield* IngestQueue
      const worker = yield* IngestWorker
      const taker = queue.take((job) => worker.process(job), { maxAttempts: INGEST_MAX_ATTEMPTS }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("ingest job failed; it stays queued for another attempt", cause).pipe(Effect.zipRight(Effect.sleep("1 second")))
        ),
        Effect.forever
      )
      yield* Effect.forkScoped(Effect.all(Array.from({ length: concurrency }, () => taker), { concurrency: "unbounded", discard: true }))
    })
  )
