/**
 * The raw inbox: every notification body is committed here, together with its work item on
 * the durable ingest queue, before the provider gets its 200. The fast path does nothing else.
 */
import type * as PersistedQueue from "@effect/experimental/PersistedQueue"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Duration, Effect, Layer, Metric, Schema } from "effect"
import * as Queue from "./queue.ts"
import { type Backlog, QueueStoreTag } from "./queue.ts"

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

export class IngestQueue extends Context.Tag("wearflow/IngestQueue")<IngestQueue, PersistedQueue.PersistedQueue<IngestJob>>() {
  static readonly layer = Layer.effect(IngestQueue, Effect.map(QueueStoreTag, (store) => store.make(QUEUE_NAME, IngestJob)))
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

export interface Notification {
  readonly provider: string
  /** `push` bodies carry data; `ping` bodies carry callback URLs to pull. */
  readonly kind: "push" | "ping"
  readonly body: string
  readonly itemCount: number
  /** For a body pulled for a PING item: that item. Committing it twice stores it once. */
  readonly source?: { readonly inboxId: number; readonly index: number } | undefined
}

/** Queue ids are at most 36 characters. */
const JOB_ID_PREFIX = "inbox-"
export const ingestJobId = (inboxId: number) => `${JOB_ID_PREFIX}${inboxId}`

export const received = Metric.counter("wearflow_notifications_received_total")

export class Inbox extends Effect.Service<Inbox>()("wearflow/Inbox", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Not called here (commit writes the job row itself), but its layer creates the queue table.
    yield* IngestQueue

    /**
     * One statement stores the body and offers its ingest job (which normalizes a PUSH body
     * or pulls a PING body's items): one round trip, atomic without an explicit transaction.
     * The job row is exactly what `IngestQueue.offer({ inboxId }, { id: ingestJobId(inboxId) })`
     * writes (core/pipeline/queue.ts, the table of @effect/sql 0.52's SqlPersistedQueue); test/pipeline.test.ts checks the
     * two agree.
     */
    const commit = Effect.fn("Inbox.commit")(
      function* (notification: Notification) {
        const rows = yield* sql<{ id: string }>`
          with stored as (
            insert into inbox (provider, kind, body, item_count, source_inbox_id, source_index)
            values (${notification.provider}, ${notification.kind}, ${notification.body}, ${notification.itemCount},
                    ${notification.source?.inboxId ?? null}, ${notification.source?.index ?? null})
            on conflict (source_inbox_id, source_index) where source_inbox_id is not null do nothing
            returning id
          ), queued as (
            insert into ${sql(QUEUE_TABLE)} (id, queue_name, element, completed, attempts, created_at, updated_at)
            select ${JOB_ID_PREFIX} || id, ${QUEUE_NAME}, json_build_object('inboxId', id)::text, false, 0, now(), now() from stored
          )
          select id from stored`
        // Already stored from an earlier attempt at the same PING item: that row stands.
        if (rows.length === 0 && notification.source) {
          const [existing] = yield* sql<{ id: string }>`
            select id from inbox where source_inbox_id = ${notification.source.inboxId} and source_index = ${notification.source.index}`
          return Number(existing!.id)
        }
        return Number(rows[0]!.id)
      },
      (effect, notification) =>
        effect.pipe(
          // Garmin gives up after 30 s; a stalled database must turn into a prompt 503 instead.
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("inbox commit timed out") }),
          Effect.tap(() => Metric.increment(Metric.tagged(received, "provider", notification.provider))),
          Effect.mapError((cause) => new InboxUnavailable({ cause }))
        )
    )

    /** Whether the inbox can take a body right now. */
    const health = sql`select 1`.pipe(Effect.asVoid, Effect.mapError((cause) => new InboxUnavailable({ cause })))

    return { commit, health } as const
  })
}) {}
