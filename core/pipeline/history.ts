/**
 * What the ingest worker tells whoever asked the provider for history: which items answer
 * an open request (their events are historical), and that data arrived (a request's range may
 * now be stored). A hook the backfill floor provides (backfill/arrivals.ts), so that ingestion never
 * imports the floor above it. A pipeline without history requests provides `none`.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer } from "effect"
import type { Recipient } from "../outbox.ts"
import type { NotificationItem, Provider } from "../provider.ts"

export interface HistoryObserver {
  /** The items that answer a history request of these recipients. */
  readonly answering: (
    provider: Provider,
    recipients: ReadonlyArray<Recipient>,
    items: ReadonlyArray<NotificationItem>
  ) => Effect.Effect<ReadonlySet<NotificationItem>, SqlError>
  /** Called once the items' records are stored. */
  readonly recordArrivals: (provider: Provider, recipients: ReadonlyArray<Recipient>, items: ReadonlyArray<NotificationItem>) => Effect.Effect<void, SqlError>
}

export const HistoryObserver = Context.GenericTag<HistoryObserver>("wearflow/HistoryObserver")

/** No history requests: nothing answers, arrivals go unrecorded. */
export const none = Layer.succeed(HistoryObserver, {
  answering: () => Effect.succeed(new Set()),
  recordArrivals: () => Effect.void
})
