/**
 * What the ingest worker tells whoever asked the provider for history: which items answer
 * an open request (their events are historical), and that data arrived (a request's range may
 * now be stored). A hook the backfill floor provides (backfill/arrivals.ts), so that ingestion never
 * imports the floor above it. A pipeline without history requests provides `none`.
 *
 * Each takes the arrivals of a whole batch of jobs at once (one statement each): each arrival
 * is one provider user's items from one body and the users they went to, and an item only
 * ever counts for its own arrival's recipients.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer } from "effect"
import type { Recipient } from "../outbox.ts"
import type { NotificationItem, Provider } from "../provider.ts"

/** One provider user's items from one body, and the users their data goes to. */
export interface Arrival {
  readonly provider: Provider
  readonly recipients: ReadonlyArray<Recipient>
  readonly items: ReadonlyArray<NotificationItem>
}

/** One provider user's items from one body, before its recipients are known. */
export interface ProviderUserArrival {
  readonly provider: Provider
  /** The provider's id of the user (UserRef "UserId"). */
  readonly providerUserId: string
  readonly items: ReadonlyArray<NotificationItem>
}

export interface HistoryObserver {
  /** Per arrival, the items that answer a history request of its recipients. */
  readonly answering: (arrivals: ReadonlyArray<Arrival>) => Effect.Effect<ReadonlyArray<ReadonlySet<NotificationItem>>, SqlError>
  /**
   * The same as `answering`, the recipients found by the provider user's id (its active
   * connections' users, as Links.recipientsOrPark finds them): so it can run alongside the
   * recipients' own look-up instead of after it.
   */
  readonly answeringByProviderUser: (arrivals: ReadonlyArray<ProviderUserArrival>) => Effect.Effect<ReadonlyArray<ReadonlySet<NotificationItem>>, SqlError>
  /** Called once the arrivals' records are stored. */
  readonly recordArrivals: (arrivals: ReadonlyArray<Arrival>) => Effect.Effect<void, SqlError>
}

export const HistoryObserver = Context.GenericTag<HistoryObserver>("wearflow/HistoryObserver")

/** No history requests: nothing answers, arrivals go unrecorded. */
export const none = Layer.succeed(HistoryObserver, {
  answering: (arrivals) => Effect.succeed(arrivals.map(() => new Set())),
  answeringByProviderUser: (arrivals) => Effect.succeed(arrivals.map(() => new Set())),
  recordArrivals: () => Effect.void
})
