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
 * Jobs are taken in batches and each batch is processed as one: a statement per step for all
 * its jobs. A job that fails in a batch runs again alone, so it fails alone.
 * Transient database failures are retried with back-off inside the job, so an acknowledged
 * notification is never dropped by a burst of failed attempts.
 */
import { SqlClient } from "@effect/sql"
import { type Cause, Context, Deferred, Duration, Effect, Either, Exit, FiberId, Layer, Metric, Schedule } from "effect"
import { Links, userKey } from "../connections/links.ts"
import { Connections } from "../connections/connections.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { type NotificationItem, type Provider, Providers, type UserRef } from "../provider.ts"
import { isTransient, retryWhileTransient, sqlState } from "../storage/errors.ts"
import * as Tracing from "../tracing.ts"
import { ActivityFiles } from "./files.ts"
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


/**
 * Told how many characters of large bodies' parts each batch processed: processing a part
 * leaves garbage tens of times its size (its items parsed, records, samples, statements and
 * the driver's buffers), which the runtime's collector would let pile up to several times what
 * is live while a large body is worked through. The server collects it as it goes (under Bun);
 * by default nothing is done.
 */
export class PartGarbage extends Context.Reference<PartGarbage>()("wearflow/PartGarbage", {
  defaultValue: (): { readonly processed: (characters: number) => Effect.Effect<void> } => ({ processed: () => Effect.void })
}) {}

export interface IngestOptions {
  /** Back-off between attempts at a fetch that failed with 429, 5xx or a network error. */
  readonly pullBackoff?: Duration.DurationInput
  /** Attempts at such a fetch before it is reported as failed. */
  readonly pullAttempts?: number
}

const isPermanentSqlError = (e: { readonly _tag: string }) => e._tag === "SqlError" && !isTransient(e as never)

/** Where the inbox ids of whole bodies whose outcome was left to the caller go; undefined: each is recorded. */
type Unrecorded = Set<number> | undefined

/** A job the takers ran: its outcome, and whether it is still to be recorded (with its completion). */
export interface Taken {
  readonly inboxId: number
  readonly outcome: IngestOutcome
  readonly unrecorded: boolean
}

/** The inbox rows of a batch's jobs as their claim read them (Queue.Attach), by id. */
export type ClaimedRows = ReadonlyMap<number, InboxRow>

/**
 * The inbox rows claimed with `jobs` (IngestQueue's attach); undefined when some job came
 * without one (a row gone, which is rare): then the batch reads its rows, as it would anyway.
 */
const claimedRowsOf = (jobs: ReadonlyArray<{ readonly attached?: Readonly<Record<string, unknown>> | undefined }>): ClaimedRows | undefined => {
  const rows = new Map<number, InboxRow>()
  for (const { attached } of jobs) {
    if (attached === undefined || attached.id === null || attached.id === undefined) return undefined
    rows.set(Number(attached.id), attached as unknown as InboxRow)
  }
  return rows
}

/** An inbox row as the worker reads it. */
interface InboxRow {
  readonly id: string
  readonly provider: string
  readonly kind: string
  readonly body: string
  readonly part_of: string | null
  /** The traceparent of the request that stored it, when traces are exported (core/tracing.ts). */
  readonly trace_context: string | null
}

type MutableOutcome = { -readonly [K in keyof IngestOutcome]: K extends "errors" ? Array<ItemProblem> : IngestOutcome[K] }

/** One job of a batch on its way: what it read, what it did so far, and whether it failed. */
interface JobRun {
  readonly job: IngestJob
  readonly provider: Provider
  /** Where its records rank among deliveries: a part of a large body, as the body it came in. */
  readonly receivedAs: number
  readonly outcome: MutableOutcome
  readonly groups: ReadonlyArray<GroupRun>
  /** Set once a step of its own failed: it leaves the batch. */
  failure: Cause.Cause<unknown> | undefined
}

/** One provider user's items in a job, sorted by what they carry. */
interface GroupRun {
  readonly run: JobRun
  readonly ref: UserRef
  readonly lifecycle: ReadonlyArray<{ readonly item: NotificationItem; readonly change: NonNullable<ReturnType<Provider["lifecycle"]>> }>
  readonly records: ReadonlyArray<NotificationItem>
  readonly pointers: ReadonlyArray<NotificationItem>
  readonly deletions: ReadonlyArray<NotificationItem & { readonly carries: "deletion" }>
  recipients: ReadonlyArray<Recipient>
  readonly normalized: Array<{ readonly item: NotificationItem; readonly records: ReadonlyArray<NormalizedRecord> }>
}

const countOf = (group: GroupRun) => group.records.length + group.pointers.length + group.deletions.length

export const make = (options: IngestOptions = {}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers
    const links = yield* Links
    const connections = yield* Connections
    const store = yield* RecordStore
    const inbox = yield* Inbox
    const partGarbage = yield* PartGarbage
    const files = yield* ActivityFiles
    const history = yield* HistoryObserver
    /** The inbox rows of a batch's jobs, in one statement. */
    const inboxRows = (ids: ReadonlyArray<number>) =>
      sql<InboxRow>`select id, provider, kind, body, part_of, trace_context from inbox where id = any(${ids}::bigint[])`.pipe(
        Effect.map((rows) => new Map(rows.map((row) => [Number(row.id), row])))
      )
    const pullRetry = Schedule.exponential(options.pullBackoff ?? "1 second").pipe(
      Schedule.union(Schedule.spaced("2 minutes")),
      Schedule.intersect(Schedule.recurs((options.pullAttempts ?? 8) - 1))
    )

    /**
     * Writes one part (one recipient's records from one job) when the batch's write was
     * refused; records the database refuses for good become item problems of its job.
     */
    const writeAlone = (part: WritePart, normalized: GroupRun["normalized"], errors: Array<ItemProblem>) =>
      Effect.map(store.writeParts([part]), (outcomes) => outcomes[0]!).pipe(
        // A record the database refuses for good (bad data) must not block its neighbours:
        // write item by item, and report the ones that cannot be stored.
        Effect.catchIf(isPermanentSqlError, () =>
          Effect.reduce(normalized, { created: 0, updated: 0, unchanged: 0 }, (total, { item, records }) =>
            store.write(part.recipient, part.provider, records, part.inboxId, part.historical).pipe(
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

    /** Fetches a group's pointer items and keeps what comes back (a new inbox body, or a file). */
    const pull = (group: GroupRun) =>
      Effect.gen(function* () {
        const { provider, job, outcome } = group.run
        const credentials = yield* connections.credentialsFor(provider.id, group.ref).pipe(
          Effect.catchTag("DecryptionError", (e) => Effect.logError(e.message).pipe(Effect.as(undefined)))
        )
        for (const item of group.pointers) {
          const result = yield* provider.fetch(item, credentials).pipe(
            // A provider that said when to come back (429 Retry-After) is not asked sooner.
            Effect.tapError((e) => (e.retryable && e.retryAfter !== undefined ? Effect.sleep(e.retryAfter) : Effect.void)),
            Effect.retry({ schedule: pullRetry, while: (e) => e.retryable }),
            Effect.either
          )
          if (Either.isLeft(result)) {
            outcome.errors.push({ key: item.key, index: item.index, message: result.left.message })
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
            yield* files.save(provider.id, group.recipients, data)
          }
          outcome.pulled++
        }
      })

    /** A job's read of its row: its groups of items by provider user, or nothing to do. */
    const start = (job: IngestJob, row: InboxRow | undefined) =>
      Effect.gen(function* () {
        if (!row) {
          yield* Effect.logWarning("inbox item vanished before processing")
          return undefined
        }
        const provider = providers.get(row.provider)
        if (!provider) {
          yield* Effect.logError("no provider plugin loaded for inbox item").pipe(Effect.annotateLogs("provider", row.provider))
          return undefined
        }
        // Bodies were parsed before they were stored; a body that no longer parses yields no items.
        const body = Either.try(() => JSON.parse(row.body) as unknown).pipe(Either.getOrElse(() => undefined))
        const items = provider.itemsOf(row.kind, body).filter((item) => job.userKey === undefined || (item.user !== undefined && userKey(item.user) === job.userKey))
        // The items left out as malformed are the first problems of a first pass.
        const problems = job.userKey === undefined ? provider.problemsOf?.(row.kind, body) ?? [] : []
        const groups: Array<GroupRun> = []
        const run: JobRun = {
          job,
          provider,
          receivedAs: row.part_of === null ? job.inboxId : Number(row.part_of),
          outcome: { items: items.length, unlinked: 0, created: 0, updated: 0, unchanged: 0, deleted: 0, pulled: 0, errors: [...problems] },
          groups,
          failure: undefined
        }
        for (const { ref, items: userItems } of groupByUser(items).values()) {
          const group: GroupRun = { run, ref, lifecycle: [], records: [], pointers: [], deletions: [], recipients: [], normalized: [] }
          for (const item of userItems) {
            const change = provider.lifecycle(item)
            if (change) (group.lifecycle as Array<GroupRun["lifecycle"][number]>).push({ item, change })
            else if (item.carries === "pointer") (group.pointers as Array<NotificationItem>).push(item)
            else if (item.carries === "deletion") (group.deletions as Array<GroupRun["deletions"][number]>).push(item)
            else if (provider.normalizers[item.key] !== undefined) (group.records as Array<NotificationItem>).push(item)
          }
          groups.push(group)
        }
        return run
      })

    /**
     * A job's own steps, over all jobs at once: a job whose step fails keeps its failure and
     * leaves the batch; the others go on. Jobs run at once, as concurrent takers did, so the
     * look-ups they make (recipients, outcomes) share statements (storage/batched.ts).
     */
    const eachJob = <E>(runs: ReadonlyArray<JobRun>, step: (run: JobRun) => Effect.Effect<void, E>) =>
      Effect.forEach(runs, (run) =>
        run.failure !== undefined ? Effect.void : step(run).pipe(
          Effect.catchAllCause((cause) =>
            Effect.sync(() => {
              run.failure = cause
            })
          )
        ), { concurrency: "unbounded", discard: true })

    const live = (runs: ReadonlyArray<JobRun>) => runs.filter((run) => run.failure === undefined)
    const groupsOf = (runs: ReadonlyArray<JobRun>) => live(runs).flatMap((run) => run.groups)

    /**
     * Jobs processed as one, each step once for them all: one read of their bodies, one look-up
     * of their recipients and, alongside it, one `answering` (by provider user id), one store
     * statement holding every job's records (each with its own inbox id), one arrivals update,
     * one outcome update (unless left to the jobs' completion). Per provider user
     * as a job alone: lifecycle items change connections first; record items are normalized
     * and stored; deletion items remove what was stored (after the records, so a body that
     * holds both a record and its deletion leaves it deleted); pointer items are fetched and
     * kept (as a new inbox body or a file). Answers each job's exit: its outcome, or the
     * failure of a step of its own (what it did so far is idempotent); fails as a whole when a
     * step shared by all does.
     */
    const attempt = (jobs: ReadonlyArray<IngestJob>, claimed: ClaimedRows | undefined, unrecorded: Unrecorded) =>
      Effect.flatMap(claimed === undefined ? inboxRows(jobs.map((job) => job.inboxId)) : Effect.succeed(claimed), (rows) =>
        attemptOn(jobs, rows, unrecorded).pipe(
          // With traces exported: the batch's work is a span in the trace of each notification in
          // it, the one its request started and stored with the inbox row (core/tracing.ts).
          Tracing.spanInEach("ingest notification", traceparentsOf(rows), { "wearflow.jobs": jobs.length }),
          Effect.ensuring(Effect.suspend(() => {
            const characters = partCharacters(rows)
            return characters === 0 ? Effect.void : partGarbage.processed(characters)
          }))
        ))

    /** The characters of the parts of large bodies among `rows`. */
    const partCharacters = (rows: ReadonlyMap<number, InboxRow>) => {
      let characters = 0
      for (const row of rows.values()) if (row.part_of !== null) characters += row.body.length
      return characters
    }

    const traceparentsOf = (rows: ReadonlyMap<number, InboxRow>) => {
      const traces = new Set<string>()
      for (const row of rows.values()) if (row.trace_context !== null) traces.add(row.trace_context)
      return traces
    }

    const attemptOn = (jobs: ReadonlyArray<IngestJob>, rows: ReadonlyMap<number, InboxRow>, unrecorded: Unrecorded) =>
      Effect.gen(function* () {
        const started = yield* Effect.forEach(jobs, (job) => start(job, rows.get(job.inboxId)))
        const runs = started.filter((run): run is JobRun => run !== undefined)

        // Which records answer a history request is asked alongside the recipients' look-up, by
        // provider user id, unless a lifecycle item may change the connections first or a user
        // is known only by an alias: then after it, by the recipients found.
        const alongside = runs.every((run) => run.groups.every((group) => group.lifecycle.length === 0 && (group.records.length === 0 || group.ref._tag === "UserId")))
        const asked = alongside ? groupsOf(runs).filter((group) => group.records.length > 0) : []
        const [answeredAlongside] = yield* Effect.all([
          asked.length === 0 ? Effect.succeed([]) : history.answeringByProviderUser(asked.map((group) => ({
            provider: group.run.provider,
            providerUserId: group.ref._tag === "UserId" ? group.ref.id : "",
            items: group.records
          }))),
          eachJob(runs, (run) =>
            Effect.forEach(run.groups, (group) =>
              Effect.gen(function* () {
                for (const { change } of group.lifecycle) yield* links.applyLifecycle(run.provider, group.ref, change, run.job.inboxId)
                const count = countOf(group)
                if (count === 0) return
                group.recipients = yield* links.recipientsOrPark(run.provider.id, group.ref, run.job.inboxId, count)
                if (group.recipients.length === 0) run.outcome.unlinked += count
              }), { concurrency: "unbounded", discard: true }))
        ], { concurrency: "unbounded" })

        const storing = groupsOf(runs).filter((group) => group.recipients.length > 0 && group.records.length > 0)
        for (const group of storing) {
          const normalizer = group.run.provider.normalizers
          for (const item of group.records) {
            Either.match(normalizer[item.key]!(item.raw), {
              onLeft: (error) => group.run.outcome.errors.push({ key: item.key, index: item.index, message: error.message }),
              onRight: (records) => group.normalized.push({ item, records })
            })
          }
        }
        const arrivals = (groups: ReadonlyArray<GroupRun>) =>
          groups.map((group) => ({ provider: group.run.provider, recipients: group.recipients, items: group.normalized.map((n) => n.item) }))
        const answeredBy = new Map(asked.map((group, g) => [group, answeredAlongside[g]!]))
        const answering = alongside ? storing.map((group) => answeredBy.get(group)!) : yield* history.answering(arrivals(storing))
        const parts = storing.flatMap((group, g) => {
          const historical = new Set(group.normalized.filter((n) => answering[g]!.has(n.item)).flatMap((n) => n.records))
          const records = group.normalized.flatMap((n) => n.records)
          return group.recipients.map((recipient) => ({
            group,
            part: { recipient, provider: group.run.provider.id, records, inboxId: group.run.receivedAs, historical } satisfies WritePart
          }))
        })
        const written = yield* store.writeParts(parts.map((p) => p.part)).pipe(
          // A batch the database refuses for good: each part alone, so a bad record fails only its own.
          Effect.catchIf(isPermanentSqlError, () =>
            Effect.forEach(parts, ({ group, part }) => writeAlone(part, group.normalized, group.run.outcome.errors)))
        )
        parts.forEach(({ group }, i) => {
          const { outcome } = group.run
          outcome.created += written[i]!.created
          outcome.updated += written[i]!.updated
          outcome.unchanged += written[i]!.unchanged
        })

        // Deletions and pointers are rare: only the jobs that have some take these steps.
        const deleting = runs.filter((run) => run.groups.some((group) => group.deletions.length > 0 && group.recipients.length > 0))
        yield* eachJob(deleting, (run) =>
          Effect.forEach(run.groups, (group) =>
            Effect.forEach(group.deletions.length === 0 ? [] : group.recipients, (recipient) =>
              Effect.map(removeFor(recipient, run.provider, group.deletions, run.receivedAs, run.outcome.errors), (n) => {
                run.outcome.deleted += n
              }), { discard: true }), { discard: true }))

        const pulling = runs.filter((run) => run.groups.some((group) => group.pointers.length > 0 && group.recipients.length > 0))
        yield* Effect.all([
          // Stored first: a backfill told its data is in may complete and announce it at once.
          history.recordArrivals(arrivals(storing.filter((group) => group.run.failure === undefined))),
          // Meanwhile (the two share nothing): pulls, then each job's outcome. Should the arrivals
          // fail, every job runs again alone and records its outcome again.
          Effect.gen(function* () {
            yield* eachJob(pulling, (run) =>
              Effect.forEach(run.groups, (group) => (group.pointers.length > 0 && group.recipients.length > 0 ? pull(group) : Effect.void), { discard: true }))
            // A replay for one provider user does not overwrite the outcome of the first pass.
            // A whole body's outcome is left for its job's completion when the caller records it there.
            yield* eachJob(runs, (run) => {
              if (run.job.userKey !== undefined) return Effect.void
              if (unrecorded !== undefined && run.receivedAs === run.job.inboxId) return Effect.sync(() => unrecorded.add(run.job.inboxId))
              return inbox.finish(run.job.inboxId, run.outcome)
            })
          })
        ], { concurrency: "unbounded", discard: true })

        return yield* Effect.forEach(jobs, (_, i): Effect.Effect<Exit.Exit<IngestOutcome, StepError>> => {
          const run = started[i]
          if (run === undefined) return Effect.succeed(Exit.succeed(nothing))
          if (run.failure !== undefined) return Effect.succeed(Exit.failCause(run.failure as Cause.Cause<StepError>))
          return Effect.as(report(run), Exit.succeed(run.outcome))
        })
      })
    type StepError =
      | Effect.Effect.Error<ReturnType<typeof links.applyLifecycle>>
      | Effect.Effect.Error<ReturnType<typeof removeFor>>
      | Effect.Effect.Error<ReturnType<typeof pull>>
      | Effect.Effect.Error<ReturnType<typeof inbox.finish>>

    const nothing: IngestOutcome = { items: 0, unlinked: 0, created: 0, updated: 0, unchanged: 0, deleted: 0, pulled: 0, errors: [] }

    /** A finished job's metrics and, when items failed, its warning. */
    const report = (run: JobRun) =>
      Effect.gen(function* () {
        const { outcome, provider } = run
        const counters = countersOf(provider.id)
        yield* Metric.incrementBy(counters.processed, outcome.items)
        yield* Metric.incrementBy(counters.unlinked, outcome.unlinked)
        yield* Metric.incrementBy(counters.errors, outcome.errors.length)
        yield* Metric.incrementBy(counters.pulled, outcome.pulled)
        yield* Metric.incrementBy(counters.deleted, outcome.deleted)
        if (outcome.errors.length > 0) {
          // Paths and problem kinds only: item errors never carry health values.
          yield* Effect.logWarning("notification items failed").pipe(
            Effect.annotateLogs({ provider: provider.id, errors: outcome.errors.slice(0, 20) }),
            Effect.annotateLogs("inbox_id", run.job.inboxId)
          )
        }
      })

    /**
     * One job alone; transient database failures are waited out, a failure for good is the job's.
     * Its inbox row is read, unless given as its claim read it (a row's columns never change).
     * With `unrecorded`, a whole body's outcome is left to the caller (its id added there).
     */
    const processOne = Effect.fn("IngestWorker.process")(function* (job: IngestJob, claimed: ClaimedRows | undefined, unrecorded: Unrecorded) {
      const [exit] = yield* attempt([job], claimed, unrecorded)
      return yield* exit!
    }, (effect, job) =>
      effect.pipe(
        Effect.tapError((e) => Effect.logWarning("ingest paused by an error; retrying").pipe(Effect.annotateLogs("error", e.message))),
        // Database outages are waited out, however long.
        retryWhileTransient(),
        // A part that fails goes back to the queue; the parts after it need not wait for it.
        Effect.tapError(() => Effect.ignore(inbox.queueNextPart(job.inboxId))),
        Effect.annotateLogs("inbox_id", job.inboxId)
      ))

    const process = (job: IngestJob, claimed?: ClaimedRows) => processOne(job, claimed, undefined)

    const processBatchWith = (jobs: ReadonlyArray<IngestJob>, claimed: ClaimedRows | undefined, unrecorded: Unrecorded) =>
      jobs.length === 1
        ? Effect.map(Effect.exit(processOne(jobs[0]!, claimed, unrecorded)), (exit) => [exit])
        : attempt(jobs, claimed, unrecorded).pipe(
          Effect.withSpan("IngestWorker.processBatch", { attributes: { jobs: jobs.length } }),
          Effect.exit,
          Effect.flatMap((batch) =>
            Effect.forEach(jobs, (job, i) => {
              const exit = Exit.isSuccess(batch) ? batch.value[i]! : undefined
              if (exit !== undefined && Exit.isSuccess(exit)) return Effect.succeed<Exit.Exit<IngestOutcome, JobError>>(exit)
              // Alone, it records its outcome itself.
              unrecorded?.delete(job.inboxId)
              return Effect.exit(process(job))
            })
          )
        )

    /**
     * Jobs processed as one (`attempt`); answers each job's exit, in order. A job that failed
     * in the batch, or all of them when a step they shared failed, run again alone (`process`),
     * one after the other, so that they share no statement again: what the batch did is
     * idempotent, so a job fails alone and is retried, waited out or failed exactly as when it
     * is taken alone, while the others stand.
     */
    const processBatch = (jobs: ReadonlyArray<IngestJob>, claimed?: ClaimedRows) => processBatchWith(jobs, claimed, undefined)

    /**
     * Jobs as the takers run them (`processBatch`), but a whole body's outcome is not recorded:
     * it is answered, to be recorded with the completion of its job (`recordAlong`), one round
     * trip for both.
     */
    const processTaken = (jobs: ReadonlyArray<IngestJob>, claimed?: ClaimedRows) =>
      Effect.suspend(() => {
        const unrecorded = new Set<number>()
        return Effect.map(processBatchWith(jobs, claimed, unrecorded), (exits) =>
          exits.map((exit, i) =>
            Exit.map(exit, (outcome): Taken => ({ inboxId: jobs[i]!.inboxId, outcome, unrecorded: unrecorded.has(jobs[i]!.inboxId) }))))
      })

    /** The statement recording the outcomes `processTaken` left, to run with their jobs' completion. */
    const recordAlong = (taken: ReadonlyArray<Taken>) => inbox.outcomesStatement(taken.filter((t) => t.unrecorded))

    type JobError = Effect.Effect.Error<ReturnType<typeof process>>
    return { process, processBatch, processTaken, recordAlong } as const
  })

export class IngestWorker extends Context.Tag("wearflow/IngestWorker")<IngestWorker, Effect.Effect.Success<ReturnType<typeof make>>>() {
  static readonly layer = (options?: IngestOptions) => Layer.scoped(IngestWorker, make(options))
}

/** The most jobs one batch takes: a batch costs about the same statements whatever its size. */
const MAX_BATCH = 32

/**
 * Runs up to `concurrency` ingest jobs at a time for the lifetime of the layer, as batches
 * (IngestWorker.processTaken, their outcomes recorded with their completion) of up to MAX_BATCH jobs. A batch is claimed as soon as jobs are
 * waiting and some of the `concurrency` are free, while earlier batches are still worked on;
 * so a batch held up (a slow pull) holds up only its own jobs, and the rest go on.
 */
export const layerTakers = (concurrency: number) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      if (concurrency <= 0) return
      const queue = yield* IngestQueue
      const worker = yield* IngestWorker
      let free = concurrency
      let freed = Deferred.unsafeMake<void>(FiberId.none)
      const release = (jobs: number) =>
        Effect.suspend(() => {
          free += jobs
          return Deferred.succeed(freed, undefined)
        })
      /** Waits until some jobs may start; answers how many and counts them as started. */
      const reserve = Effect.suspend(function wait(): Effect.Effect<number> {
        if (free === 0) {
          freed = Deferred.unsafeMake<void>(FiberId.none)
          return Effect.zipRight(Deferred.await(freed), Effect.suspend(wait))
        }
        const jobs = Math.min(MAX_BATCH, free)
        free -= jobs
        return Effect.succeed(jobs)
      })
      const logFailures = (exits: ReadonlyArray<Exit.Exit<unknown, unknown>>) => {
        const failed = exits.filter(Exit.isFailure)
        return failed.length === 0 ? Effect.void : Effect.forEach(failed, (exit) => Effect.logError("ingest job failed; it stays queued for another attempt", exit.cause), { discard: true }).pipe(
          Effect.zipRight(Effect.sleep("1 second"))
        )
      }
      /** One batch: claims up to `reserved` jobs (the unused part is given back at once), processes and settles them. */
      const batch = (reserved: number, claimed: Deferred.Deferred<void>) =>
        Effect.suspend(() => {
          /** The jobs this batch runs, once claimed; until then it holds all it reserved. */
          let holding = reserved
          return queue.takeBatch((jobs) => {
            const taken = jobs.length
            holding = taken
            return Effect.zipRight(
              Effect.zipRight(release(reserved - taken), Deferred.succeed(claimed, undefined)),
              worker.processTaken(jobs.map((job) => job.value), claimedRowsOf(jobs))
            )
            // The outcomes go with the jobs' completion: one statement for both.
          }, { maxAttempts: INGEST_MAX_ATTEMPTS, maxJobs: reserved, alongCompletion: worker.recordAlong }).pipe(
            Effect.flatMap(logFailures),
            Effect.catchAllCause((cause) =>
              Effect.logError("ingest jobs failed; they stay queued for another attempt", cause).pipe(Effect.zipRight(Effect.sleep("1 second")))
            ),
            Effect.ensuring(Effect.suspend(() => Effect.zipRight(release(holding), Deferred.succeed(claimed, undefined))))
          )
        })
      const taker = Effect.gen(function* () {
        for (;;) {
          const reserved = yield* reserve
          const claimed = Deferred.unsafeMake<void>(FiberId.none)
          yield* Effect.forkScoped(batch(reserved, claimed))
          // The next claim once this one has its jobs: one process claims one batch at a time.
          yield* Deferred.await(claimed)
        }
      })
      yield* Effect.forkScoped(taker)
    })
  )
