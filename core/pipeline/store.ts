/**
 * The normalized store: records keyed by (user, provider, resource, source record id) with a
 * content hash, timeseries samples, and, in the same transaction, the outbox events that say
 * what changed. Created vs updated vs unchanged is decided by the hash, so a re-delivery of
 * identical content writes nothing and emits nothing.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { stableUuid } from "../crypto.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { appendEvent, type Recipient } from "../outbox.ts"
import type { EventEnvelope } from "../schema.ts"

export { appendEvent, eventsEmitted, type Recipient } from "../outbox.ts"

export interface WriteOutcome {
  readonly created: number
  readonly updated: number
  readonly unchanged: number
}

/** Where a record sits in time, for range queries: its local day and its start. */
const placement = (record: NormalizedRecord): { calendarDate: string | null; startAt: string | null } => {
  if (record.kind === "timeseries") return { calendarDate: null, startAt: record.data.data[0]?.timestamp ?? null }
  const data = record.data as unknown as Record<string, string | undefined>
  const calendarDate = data.calendar_date ?? data.period_start ?? null
  const startAt = data.time_start ?? data.bedtime_start ?? data.measured_at ?? data.date ?? (calendarDate ? `${calendarDate}T00:00:00.000Z` : null)
  return { calendarDate, startAt }
}

const contentHash = (data: unknown) => createHash("sha256").update(JSON.stringify(data)).digest()

export class RecordStore extends Effect.Service<RecordStore>()("wearflow/RecordStore", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const upsertSamples = (recipient: Recipient, provider: string, recordId: string, record: NormalizedRecord & { kind: "timeseries" }) => {
      // A sample is keyed by its record and instant, so records never overwrite each other's
      // samples. One statement cannot upsert the same key twice: within a record, the last
      // sample per timestamp wins.
      const latest = new Map(record.data.data.map((s) => [s.timestamp, s]))
      const rows = [...latest.values()].map((sample) => {
        const { timestamp, timezone_offset, unit, value, type: _type, ...fields } = sample as typeof sample & { value?: number }
        return {
          user_id: recipient.userId,
          resource: record.resource,
          provider,
          source_type: record.data.source.type,
          ts: timestamp,
          value: value ?? null,
          unit,
          timezone_offset,
          fields: Object.keys(fields).length === 0 ? null : JSON.stringify(fields),
          record_id: recordId
        }
      })
      if (rows.length === 0) return Effect.void
      return sql`
        insert into samples ${sql.insert(rows)}
        on conflict (record_id, ts) do update
          set value = excluded.value, unit = excluded.unit, timezone_offset = excluded.timezone_offset,
              fields = excluded.fields, source_type = excluded.source_type
      `.pipe(Effect.asVoid)
    }

    /**
     * Upserts `records` for `recipient` and appends one outbox event per created or changed
     * record. Runs in one transaction. A record from an older inbox item never overwrites one
     * from a newer item, so out-of-order processing keeps the latest delivery. Events of
     * records in `historical` are marked as backfilled data.
     */
    const write = Effect.fn("RecordStore.write")(function* (
      recipient: Recipient,
      provider: string,
      records: ReadonlyArray<NormalizedRecord>,
      inboxId: number,
      historical: ReadonlySet<NormalizedRecord> = new Set()
    ) {
      let created = 0
      let updated = 0
      for (const record of records) {
        const id = stableUuid(recipient.userId, provider, record.resource, record.sourceId)
        const data = record.kind === "summary" ? { id, user_id: recipient.userId, ...record.data } : { user_id: recipient.userId, ...record.data }
        const { calendarDate, startAt } = placement(record)
        const [row] = yield* sql<{ inserted: boolean; created_at: Date; updated_at: Date }>`
          insert into records (id, user_id, provider, resource, source_id, calendar_date, start_at, data, content_hash, inbox_id)
          values (${id}, ${recipient.userId}, ${provider}, ${record.resource}, ${record.sourceId}, ${calendarDate}, ${startAt},
                  ${JSON.stringify(data)}::jsonb, ${contentHash(data)}, ${inboxId})
          on conflict (user_id, provider, resource, source_id) do update
            set data = excluded.data, content_hash = excluded.content_hash, calendar_date = excluded.calendar_date,
                start_at = excluded.start_at, inbox_id = excluded.inbox_id, updated_at = now()
            where records.content_hash <> excluded.content_hash and records.inbox_id <= excluded.inbox_id
          returning (xmax = 0) as inserted, created_at, updated_at`
        if (!row) continue
        if (record.kind === "timeseries") {
          // A revised batch (a final sleep after a tentative one) replaces the whole batch:
          // samples it no longer has go too.
          if (!row.inserted) {
            const kept = record.data.data.map((s) => s.timestamp)
            yield* sql`delete from samples where record_id = ${id} and not (ts = any(${kept}::timestamptz[]))`
          }
          yield* upsertSamples(recipient, provider, id, record)
        }
        const change = row.inserted ? "created" : "updated"
        if (row.inserted) created++
        else updated++
        const eventData = record.kind === "summary"
          ? { ...data, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() }
          : data
        const envelope: EventEnvelope = {
          event_type: `daily.data.${record.resource}.${change}`,
          data: eventData,
          user_id: recipient.userId,
          client_user_id: recipient.clientUserId,
          team_id: recipient.teamId
        }
        yield* appendEvent(sql, envelope, id, historical.has(record))
      }
      return { created, updated, unchanged: records.length - created - updated } satisfies WriteOutcome
    }, sql.withTransaction)

    return { write } as const
  })
}) {}
