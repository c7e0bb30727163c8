/**
 * The raw inbox: every notification body is committed here, together with its work item on
 * the durable ingest queue, before the provider gets its 200. The fast path does nothing else.
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import { SqlClient, SqlPersistedQueue } from "@effect/sql"
import { Context, Data, Duration, Effect, Layer, Metric, Option, Schema } from "effect"

/** Work for the ingest worker: one inbox row, optionally only the items of one provider user. */
export const IngestJob = Schema.Struct({
  inboxId: Schema.Number,
  providerUserId: Schema.optional(Schema.String)
})
export type IngestJob = typeof IngestJob.Type

export class IngestQueue extends Context.Tag("wearflow/IngestQueue")<IngestQueue, PersistedQueue.PersistedQueue<IngestJob>>() {
  static readonly layer = Layer.effect(IngestQueue, PersistedQueue.make({ name: "ingest", schema: IngestJob }))
}

/**
 * The queue store in Postgres. A live worker refreshes its locks every third of
 * `lockExpiration`; a crashed worker's items are retaken once it passes (default 30 s).
 */
export const layerQueueStore = (options?: {
  readonly pollInterval?: Duration.DurationInput
  readonly lockExpiration?: Duration.DurationInput
}) => {
  const lockExpiration = Duration.decode(options?.lockExpiration ?? Duration.seconds(30))
  return PersistedQueue.layer.pipe(
    Layer.provide(
      SqlPersistedQueue.layerStore({
        tableName: "ingest_queue",
        pollInterval: options?.pollInterval ?? Duration.millis(100),
        lockRefreshInterval: Duration.divide(lockExpiration, 3).pipe(Option.getOrElse(() => lockExpiration)),
        lockExpiration
      })
    )
  )
}

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
}

/** Queue ids are at most 36 characters. */
export const ingestJobId = (inboxId: number) => `inbox-${inboxId}`

export const received = Metric.counter("wearflow_notifications_received_total")
export const rejected = Metric.counter("wearflow_notifications_rejected_total")

export class Inbox extends Effect.Service<Inbox>()("wearflow/Inbox", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const queue = yield* IngestQueue

    const commit = Effect.fn("Inbox.commit")(function* (notification: Notification) {
      const [row] = yield* sql<{ id: string }>`
        insert into inbox (provider, kind, body, item_count)
        values (${notification.provider}, ${notification.kind}, ${notification.body}, ${notification.itemCount})
        returning id`
      const inboxId = Number(row!.id)
      // PING items wait for the pull worker; only PUSH bodies go straight to normalization.
      if (notification.kind === "push") yield* queue.offer({ inboxId }, { id: ingestJobId(inboxId) })
      return inboxId
    }, (effect, notification) =>
      sql.withTransaction(effect).pipe(
        Effect.tap(() => Metric.increment(Metric.tagged(received, "provider", notification.provider))),
        Effect.mapError((cause) => new InboxUnavailable({ cause }))
      ))

    /** Whether the inbox can take a body right now. */
    const health = sql`select 1`.pipe(Effect.asVoid, Effect.mapError((cause) => new InboxUnavailable({ cause })))

    return { commit, health } as const
  })
}) {}
