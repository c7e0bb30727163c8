/**
 * The raw inbox: every notification body is committed here, together with its work item on
 * the durable ingest queue, before the provider gets its 200. The fast path does nothing else.
 * A large body is committed as bounded parts (InboxSettings), each a job of its own; bodies
 * keep no credentials (the provider hands over items with secrets replaced), and processed
 * ones are deleted after the retention period (retention.ts).
 */
import { SqlClient, type Statement } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Duration, Effect, Layer, Metric, Option, Schema } from "effect"
import { batched } from "../storage/batched.ts"
import * as Tracing from "../tracing.ts"
import * as GroupCommit from "./group-commit.ts"
import * as Queue from "./queue.ts"
import type { Backlog } from "./queue.ts"
import { QueueStoreTag } from "./queue.ts"

/**
 * Work for the ingest worker: one inbox row, optionally only the items of one provider user
 * (a replay after linking; `userKey` as Accounts.userKey makes it).
 */
export const IngestJob = Schema.Struct({
  inboxId: Schema.Number,
  userKey: Schema.optional(Schema.String)
})
export type IngestJob = typeof IngestJob.Type

const QUEUE_TABLE = "ingest_queue"
const QUEUE_NAME = "ingest"

/** The inbox columns the ingest worker reads of a job's row. */
export const INBOX_ROW_COLUMNS = ["id", "provider", "kind", "body", "part_of", "trace_context"] as const

export class IngestQueue extends Context.Tag("wearflow/IngestQueue")<IngestQueue, Queue.BatchQueue<IngestJob>>() {
  // A claim reads its jobs' inbox rows too: the worker's first step costs no round trip of its own.
  static readonly layer = Layer.effect(IngestQueue, Effect.map(QueueStoreTag, (store) =>
    store.make(QUEUE_NAME, IngestJob, { attach: { table: "inbox", key: "id", field: "inboxId", columns: INBOX_ROW_COLUMNS } })))
}

/** Failed attempts after which an ingest job is left alone (it stays in the table for operators). */
export const INGEST_MAX_ATTEMPTS = 100

/** How far behind ingestion is: jobs waiting, the oldest one's age, the last completion. */
export class IngestBacklog extends Context.Tag("wearflow/IngestBacklog")<IngestBacklog, Effect.Effect<Backlog, SqlError>>() {
  static readonly layer = Layer.effect(IngestBacklog, Effect.map(QueueStoreTag, (store) => store.backlog(QUEUE_NAME, INGEST_MAX_ATTEMPTS)))
}

/**
 * The queue store in Postgres (core/pipeline/queue.ts). A live worker renews the lease of
 * every job it runs every third of `lockExpiration`; a dead worker's jobs are retaken once
 * their lease lapses (default 30 s).
 */
export const layerQueueStore = (options?: {
  readonly pollInterval?: Duration.DurationInput
  readonly lockExpiration?: Duration.DurationInput
}) =>
  Queue.layer({
    tableName: QUEUE_TABLE,
    pollInterval: options?.pollInterval ?? Duration.millis(100),
    lockExpiration: options?.lockExpiration ?? Duration.seconds(30)
  })

/** The body could not be made durable; the provider must retry (HTTP 503). */
export class InboxUnavailable extends Data.TaggedError("InboxUnavailable")<{ readonly cause: unknown }> {
  readonly retryable = true
}

/** One top-level key's items in a body's text: [start, end) offsets, pair after pair. */
export interface BodyItems {
  readonly key: string
  readonly spans: ReadonlyArray<number>
}

export interface Notification {
  readonly provider: string
  /** The provider's name for the body's kind; Provider.itemsOf reads the body by it. */
  readonly kind: string
  readonly body: string
  readonly itemCount: number
  /** For a body fetched for a pointer item: that item. Committing it twice stores it once. */
  readonly source?: { readonly inboxId: number; readonly index: number } | undefined
  /** Where the body's items lie (json-scan.ts): a large body is stored as parts of them. */
  readonly items?: ReadonlyArray<BodyItems> | undefined
  /** Text stored instead of an item's own, by the item's start offset (secrets taken out). */
  readonly redacted?: ReadonlyMap<number, string> | undefined
}

/**
 * How large bodies are split. A body over `partBytes` characters or `partItems` items is
 * stored as parts — bodies of one key's items, each within both limits (or one item) — each
 * processed as a job of its own; `partsInFlight` parts of one body are queued at a time, so
 * other notifications go between them and one body never holds every worker.
 */
export class InboxSettings extends Context.Tag("wearflow/InboxSettings")<InboxSettings, {
  readonly partBytes: number
  readonly partItems: number
  readonly partsInFlight: number
}>() {
  // 64 KB parts: the garbage a part's processing leaves (its records, samples and statements,
  // several times its size) stays small between collections; 256 KB parts peaked ~50 MB higher.
  static readonly defaults = { partBytes: 64 * 1024, partItems: 1000, partsInFlight: 2 }
}

/** A notification as committed: with the traceparent of the request that stored it (core/tracing.ts). */
type Received = Notification & { readonly traceContext: string | null }

/** A body made of `records` under `key`, with where each lies (so a large one is stored in parts). */
export const bodyOf = (key: string, records: ReadonlyArray<unknown>): Pick<Notification, "body" | "itemCount" | "items"> => {
  let body = `{${JSON.stringify(key)}:[`
  const spans: Array<number> = []
  records.forEach((record, i) => {
    if (i > 0) body += ","
    spans.push(body.length)
    body += JSON.stringify(record) ?? "null"
    spans.push(body.length)
  })
  return { body: body + "]}", itemCount: records.length, items: [{ key, spans }] }
}

/** Queue ids are at most 36 characters. */
const JOB_ID_PREFIX = "inbox-"
export const ingestJobId = (inboxId: number) => `${JOB_ID_PREFIX}${inboxId}`

export const received = Metric.counter("wearflow_notifications_received_total")
const receivedByProvider = new Map<string, Metric.Metric.Counter<number>>()
/** The counter of one provider's notifications (built once: tagging a metric hashes its tags). */
const receivedFrom = (provider: string) => {
  let counter = receivedByProvider.get(provider)
  if (counter === undefined) receivedByProvider.set(provider, counter = Metric.tagged(received, "provider", provider))
  return counter
}

/**
 * Providers give up on a webhook after tens of seconds (30 s is common); a stalled database
 * must turn into a prompt 503 instead. A large body may take longer to write: a second more
 * per 10 MB, up to 25 s.
 */
const commitTimeout = (characters: number) => Duration.millis(Math.min(25_000, 10_000 + characters / 10_000))
/** How long a whole body may wait for its turn in the group commit (a turn lasts at most `commitTimeout`). */
const COMMIT_WAIT_MS = 10_000

/** Each item's stored text, in body order. */
function* itemTexts(notification: Notification, group: BodyItems) {
  const { body, redacted } = notification
  for (let i = 0; i < group.spans.length; i += 2) {
    const start = group.spans[i]!
    yield redacted?.get(start) ?? body.slice(start, group.spans[i + 1]!)
  }
}

/** The parts a large body is stored as: `{"<key>": [items]}`, within the limits. */
function* partsOf(notification: Notification, limits: { readonly partBytes: number; readonly partItems: number }) {
  for (const group of notification.items ?? []) {
    const head = `{${JSON.stringify(group.key)}:[`
    let texts: Array<string> = []
    let size = 0
    for (const text of itemTexts(notification, group)) {
      if (texts.length > 0 && (texts.length >= limits.partItems || size + text.length > limits.partBytes)) {
        yield { body: `${head}${texts.join(",")}]}`, itemCount: texts.length }
        texts = []
        size = 0
      }
      texts.push(text)
      size += text.length + 1
    }
    if (texts.length > 0) yield { body: `${head}${texts.join(",")}]}`, itemCount: texts.length }
  }
}

/** The text stored for a whole body: its own, or with the redacted items' texts in place. */
const storedBody = (notification: Notification) =>
  notification.redacted && notification.redacted.size > 0 ? redactedBody(notification) : notification.body

/** The body with the redacted items' texts in place of their own. */
const redactedBody = (notification: Notification) => {
  const edits = (notification.items ?? [])
    .flatMap((group) => group.spans.flatMap((start, i) => (i % 2 === 0 && notification.redacted?.has(start) ? [[start, group.spans[i + 1]!] as const] : [])))
    .sort((a, b) => a[0] - b[0])
  let text = ""
  let at = 0
  for (const [start, end] of edits) {
    text += notification.body.slice(at, start) + notification.redacted!.get(start)!
    at = end
  }
  return text + notification.body.slice(at)
}

export class Inbox extends Effect.Service<Inbox>()("wearflow/Inbox", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Not called here (commit writes the job row itself), but its layer creates the queue table.
    yield* IngestQueue
    const settings = Option.getOrElse(yield* Effect.serviceOption(InboxSettings), () => InboxSettings.defaults)

    /** A job row as `IngestQueue.offer({ inboxId }, { id: ingestJobId(inboxId) })` writes it, for the inbox rows `ids` selects. */
    const queueJobs = (ids: Statement.Statement<unknown>) =>
      sql`with ids as (${ids})
          insert into ${sql(QUEUE_TABLE)} (id, queue_name, element, completed, attempts, created_at, updated_at)
          select ${JOB_ID_PREFIX} || id, ${QUEUE_NAME}, json_build_object('inboxId', id)::text, false, 0, now(), now() from ids
          on conflict (id) do nothing`

    /** The row already stored for a pointer item's fetch, if any. */
    const existing = (source: NonNullable<Notification["source"]>) =>
      sql<{ id: string }>`select id from inbox where source_inbox_id = ${source.inboxId} and source_index = ${source.index}`.pipe(
        Effect.map((rows) => Number(rows[0]!.id))
      )

    /**
     * Whole bodies are written through a group commit (group-commit.ts): concurrent commits
     * share one statement that stores their bodies and offers their ingest jobs, so one round
     * trip and one WAL flush serve them all; atomic without an explicit transaction. Each job
     * row is exactly what `IngestQueue.offer({ inboxId }, { id: ingestJobId(inboxId) })` writes
     * (core/pipeline/queue.ts, the table of @effect/sql 0.52's SqlPersistedQueue);
     * test/pipeline.test.ts checks the two agree. Ids are drawn first, so each body's id is
     * known by its place in the batch.
     */
    const writeWhole = (batch: ReadonlyArray<Received>) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ ord: string; id: string }>`
          with input as (
            select nextval(pg_get_serial_sequence('inbox', 'id')) as id, t.*
            from unnest(${batch.map((n) => n.provider)}::text[], ${batch.map((n) => n.kind)}::text[],
                        ${batch.map(storedBody)}::text[], ${batch.map((n) => n.itemCount)}::int[],
                        ${batch.map((n) => n.source?.inboxId ?? null)}::bigint[], ${batch.map((n) => n.source?.index ?? null)}::int[],
                        ${batch.map((n) => n.traceContext)}::text[])
              with ordinality as t(provider, kind, body, item_count, source_inbox_id, source_index, trace_context, ord)
          ), stored as (
            insert into inbox (id, provider, kind, body, item_count, source_inbox_id, source_index, trace_context)
            overriding system value
            select id, provider, kind, body, item_count, source_inbox_id, source_index, trace_context from input
            on conflict (source_inbox_id, source_index) where source_inbox_id is not null do nothing
            returning id
          ), queued as (
            insert into ${sql(QUEUE_TABLE)} (id, queue_name, element, completed, attempts, created_at, updated_at)
            select ${JOB_ID_PREFIX} || id, ${QUEUE_NAME}, json_build_object('inboxId', id)::text, false, 0, now(), now() from stored
          )
          select input.ord, input.id from input join stored using (id)`
        const ids = new Map(rows.map((row) => [Number(row.ord) - 1, Number(row.id)]))
        // The jobs are committed: the takers hear of them now, before the callers are resumed.
        if (rows.length > 0) yield* Queue.wakeTakers
        return yield* Effect.forEach(batch, (notification, i) => {
          const id = ids.get(i)
          // Already stored from an earlier attempt at the same pointer item: that row stands.
          return id !== undefined ? Effect.succeed(id) : existing(notification.source!)
        })
      })

    const commitWhole = yield* GroupCommit.make({
      write: writeWhole,
      writeOne: (notification: Received) => Effect.map(writeWhole([notification]), (ids) => ids[0]!),
      // A few statements in flight: while one waits for its WAL flush the next is on its way
      // (Postgres flushes them together), and no caller queues behind a single slow one.
      flushers: 4,
      maxItems: 500,
      maxWeight: 4 * 1024 * 1024,
      weight: (notification) => notification.body.length,
      timeout: commitTimeout,
      maxWait: Duration.millis(COMMIT_WAIT_MS),
      onTimeout: () => new Error("inbox commit timed out")
    })

    /**
     * A large body: one row for the notification (no body of its own; processed once all its
     * parts are) and a row per part, in one transaction; the first `partsInFlight` parts are
     * queued, and each part finishing queues the next (`finish`).
     */
    const commitParts = (notification: Received) =>
      Effect.gen(function* () {
        const [parent] = yield* sql<{ id: string }>`
          insert into inbox (provider, kind, body, item_count, source_inbox_id, source_index, trace_context)
          values (${notification.provider}, ${notification.kind}, '', ${notification.itemCount},
                  ${notification.source?.inboxId ?? null}, ${notification.source?.index ?? null}, ${notification.traceContext})
          on conflict (source_inbox_id, source_index) where source_inbox_id is not null do nothing
          returning id`
        if (!parent) return yield* existing(notification.source!)
        const parentId = Number(parent.id)
        let index = 0
        for (const part of partsOf(notification, settings)) {
          const stored = sql`
            insert into inbox (provider, kind, body, item_count, part_of, part_index, trace_context)
            values (${notification.provider}, ${notification.kind}, ${part.body}, ${part.itemCount}, ${parentId}, ${index}, ${notification.traceContext})
            returning id`
          yield* index < settings.partsInFlight ? queueJobs(stored) : stored
          index++
        }
        if (index === 0) yield* sql`update inbox set processed_at = now(), outcome = ${JSON.stringify({ parts: 0, items: 0 })}::jsonb where id = ${parentId}`
        return parentId
      }).pipe(sql.withTransaction)

    const isLarge = (notification: Notification) =>
      notification.items !== undefined && (notification.body.length > settings.partBytes || notification.itemCount > settings.partItems)

    const commit = (yield* Tracing.fn("Inbox.commit"))(
      function* (notification: Notification) {
        const received: Received = { ...notification, traceContext: yield* Tracing.currentTraceparent }
        return yield* isLarge(notification)
          ? commitParts(received).pipe(
            Effect.timeoutFail({ duration: commitTimeout(notification.body.length), onTimeout: () => new Error("inbox commit timed out") }),
            Effect.zipLeft(Queue.wakeTakers)
          )
          : commitWhole(received)
      },
      (effect, notification) =>
        effect.pipe(
          Effect.tap(() => Metric.increment(receivedFrom(notification.provider))),
          Effect.mapError((cause) => new InboxUnavailable({ cause }))
        )
    )

    /** The next part of the same body, once one finishes (or fails and goes back to the queue). */
    const queueNextPart = (inboxId: number) =>
      queueJobs(sql`select n.id from inbox p join inbox n on n.part_of = p.part_of and n.part_index = p.part_index + ${settings.partsInFlight} where p.id = ${inboxId}`).pipe(
        Effect.zipLeft(Queue.wakeTakers)
      )

    /** Outcomes recorded for all takers finishing together, in one statement; answers each row's body, if a part. */
    const recordOutcome = batched((done: ReadonlyArray<{ readonly inboxId: number; readonly outcome: string }>) =>
      sql<{ id: string; part_of: string | null }>`
        update inbox set processed_at = now(), outcome = v.outcome
        from unnest(${done.map((d) => d.inboxId)}::bigint[], ${done.map((d) => d.outcome)}::jsonb[]) as v(id, outcome)
        where inbox.id = v.id
        returning inbox.id, inbox.part_of`.pipe(
        Effect.map((rows) => {
          const partOf = new Map(rows.map((row) => [Number(row.id), row.part_of]))
          return done.map((d) => partOf.get(d.inboxId) ?? null)
        })
      )
    )

    /**
     * Records what processing an inbox row did; a part queues the body's next part and, as
     * the last to finish, marks the body processed with the parts' totals.
     */
    const finish = (yield* Tracing.fn("Inbox.finish"))(function* (inboxId: number, outcome: unknown) {
      const partOf = yield* recordOutcome({ inboxId, outcome: JSON.stringify(outcome) })
      if (partOf === null) return
      yield* queueNextPart(inboxId)
      // Each part checks after its own update committed, so the last one to finish sees every other.
      yield* sql`
        update inbox p set processed_at = now(), outcome = (
          select jsonb_build_object(
            'parts', count(*), 'items', coalesce(sum(c.item_count), 0),
            'unlinked', coalesce(sum((c.outcome->>'unlinked')::int), 0), 'created', coalesce(sum((c.outcome->>'created')::int), 0),
            'updated', coalesce(sum((c.outcome->>'updated')::int), 0), 'unchanged', coalesce(sum((c.outcome->>'unchanged')::int), 0),
            'deleted', coalesce(sum((c.outcome->>'deleted')::int), 0),
            'pulled', coalesce(sum((c.outcome->>'pulled')::int), 0), 'errors', coalesce(sum(jsonb_array_length(c.outcome->'errors')), 0))
          from inbox c where c.part_of = p.id)
        where p.id = ${Number(partOf)} and p.processed_at is null
          and not exists (select 1 from inbox c where c.part_of = p.id and c.processed_at is null)`
    })

    /**
     * The statement that records whole bodies' outcomes, not run: the ingest takers run it with
     * the completion of the bodies' jobs (IngestQueue's alongCompletion), one round trip for
     * both; nothing to record, nothing to run. Parts are recorded by `finish` (the next part
     * is queued and the body totalled once a part's outcome is committed).
     */
    const outcomesStatement = (done: ReadonlyArray<{ readonly inboxId: number; readonly outcome: unknown }>) =>
      done.length === 0 ? undefined : sql`
        update inbox set processed_at = now(), outcome = v.outcome
        from unnest(${done.map((d) => d.inboxId)}::bigint[], ${done.map((d) => JSON.stringify(d.outcome))}::jsonb[]) as v(id, outcome)
        where inbox.id = v.id`

    /** Whether the inbox can take a body right now. */
    const health = sql`select 1`.pipe(Effect.asVoid, Effect.mapError((cause) => new InboxUnavailable({ cause })))

    /** When a body is stored in parts: a handler reads where its items lie only then. */
    const partLimits = { partBytes: settings.partBytes, partItems: settings.partItems } as const

    return { commit, finish, outcomesStatement, queueNextPart, health, partLimits } as const
  })
}) {}
