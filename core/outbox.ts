/**
 * The event outbox: every event Wearflow emits is one row, appended in the transaction that
 * made the change, read in order by the sink runner. Below every floor of core: linking a
 * connection, storing a record and finishing a backfill all append to it.
 */
import type { SqlClient } from "@effect/sql"
import { Effect, Metric } from "effect"
import { randomUUID } from "node:crypto"
import * as OutboxWake from "./outbox-wake.ts"
import type { EventEnvelope } from "./schema.ts"

/** The user an event (and the record it is about) belongs to, with what the envelope names. */
export interface Recipient {
  readonly userId: string
  readonly teamId: string
  readonly clientUserId: string
}

export const eventsEmitted = Metric.counter("wearflow_events_emitted_total")

/**
 * Appends one event to the outbox (inside the caller's transaction, if any). `historical`
 * marks data that answers a backfill request; sinks may opt out of it.
 */
export const appendEvent = (sql: SqlClient.SqlClient, envelope: EventEnvelope, recordId: string | null, historical = false) =>
  sql`
    insert into outbox (event_id, event_type, team_id, user_id, record_id, payload, historical)
    values (${randomUUID()}, ${envelope.event_type}, ${envelope.team_id}, ${envelope.user_id}, ${recordId}, ${JSON.stringify(envelope)}::jsonb, ${historical})`.pipe(
    Effect.zipRight(Metric.increment(Metric.tagged(eventsEmitted, "event_type", envelope.event_type))),
    Effect.zipRight(OutboxWake.ring)
  )
