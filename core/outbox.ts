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
import { arrayLiteral } from "./storage/pg-array.ts"

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
    // Rung at the append, maybe inside a transaction still open: runners chase it a while.
    Effect.zipRight(OutboxWake.ringBeforeCommit)
  )

/** An event about to be appended (`appendEvents`): what its outbox row is keyed by, and its envelope as JSON. */
export interface NewEvent {
  readonly eventType: string
  readonly teamId: string
  readonly userId: string
  readonly recordId: string | null
  readonly historical: boolean
  /** The `EventEnvelope`, serialized. */
  readonly payload: string
}

/** The outbox row of `envelope` (see appendEvent). */
export const newEvent = (envelope: EventEnvelope, recordId: string | null, historical = false): NewEvent => ({
  eventType: envelope.event_type,
  teamId: envelope.team_id,
  userId: envelope.user_id,
  recordId,
  historical,
  payload: JSON.stringify(envelope)
})

/**
 * Appends `events` to the outbox in their order (inside the caller's transaction, if any), in
 * one statement: a store write of hundreds of records is one round trip, not hundreds. Rows are
 * produced in order (`rows from … with ordinality`), so their positions follow the order given.
 * The caller rings the sink runners (OutboxWake.ring) once its transaction commits: a ring
 * before that sends every runner looking for events it cannot read yet.
 */
export const appendEvents = (sql: SqlClient.SqlClient, events: ReadonlyArray<NewEvent>) => {
  if (events.length === 0) return Effect.void
  const counts = new Map<string, number>()
  for (const { eventType } of events) counts.set(eventType, (counts.get(eventType) ?? 0) + 1)
  // The payloads travel as one JSON array: as elements of a text[] each would be escaped.
  return sql`
    insert into outbox (event_id, event_type, team_id, user_id, record_id, payload, historical)
    select gen_random_uuid(), event_type, team_id, user_id, record_id, payload, historical
    from rows from (unnest(${arrayLiteral(events.map((e) => e.eventType))}::text[]),
                    unnest(${arrayLiteral(events.map((e) => e.teamId))}::uuid[]), unnest(${arrayLiteral(events.map((e) => e.userId))}::uuid[]),
                    unnest(${arrayLiteral(events.map((e) => e.recordId))}::uuid[]), jsonb_array_elements(${`[${events.map((e) => e.payload).join(",")}]`}::jsonb),
                    unnest(${arrayLiteral(events.map((e) => e.historical))}::boolean[]))
      with ordinality as e(event_type, team_id, user_id, record_id, payload, historical, n)
    order by n`.pipe(
    Effect.zipRight(Effect.forEach(counts, ([eventType, n]) => Metric.incrementBy(Metric.tagged(eventsEmitted, "event_type", eventType), n), { discard: true }))
  )
}
