/**
 * The normalized store: records keyed by (user, provider, resource, source record id) with a
 * content hash, timeseries samples, and, in the same transaction, the outbox events that say
 * what changed. Created vs updated vs unchanged is decided by the hash, so a re-delivery of
 * identical content writes nothing and emits nothing. A record the user deleted at the
 * provider is removed with its samples (`daily.data.<resource>.deleted`), and the deletion is
 * remembered so that an older delivery of it does not bring it back.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { stableUuid } from "../crypto.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { appendEvent, type Recipient } from "../outbox.ts"
import type { DeletedRecord, EventEnvelope, ResourceName } from "../schema.ts"

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
      // Records a newer inbox item deleted stay deleted: a replayed or late older delivery is
      // not written. One look-up per write, so the upsert itself stays as it was.
      const deleted = records.length === 0 ? new Set<string>() : new Set((yield* sql<{ source_id: string }>`
        select source_id from record_deletions
        where user_id = ${recipient.userId} and provider = ${provider}
          and source_id = any(${[...new Set(records.map((r) => r.sourceId))]}::text[]) and inbox_id > ${inboxId}`).map((r) => r.source_id))
      for (const record of records) {
        if (deleted.has(record.sourceId)) continue
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

    /**
     * Removes `recipient`'s records stored from the provider's records `sourceIds` (every
     * resource each yielded) with their samples, and appends `daily.data.<resource>.deleted`
     * per removed record, in one transaction. A record stored from a newer inbox item than the
     * deletion's stays: it was sent again after it was deleted. What is not stored is only
     * remembered as deleted: no event, so the same deletion twice adds nothing.
     */
    const remove = Effect.fn("RecordStore.remove")(function* (
      recipient: Recipient,
      provider: string,
      sourceIds: ReadonlyArray<string>,
      inboxId: number
    ) {
      const ids = [...new Set(sourceIds)]
      if (ids.length === 0) return 0
      const gone = yield* sql<{ id: string; resource: ResourceName; source_id: string; deleted_at: Date }>`
        delete from records
        where user_id = ${recipient.userId} and provider = ${provider} and source_id = any(${ids}::text[]) and inbox_id <= ${inboxId}
        returning id, resource, source_id, now() as deleted_at`
      if (gone.length > 0) yield* sql`delete from samples where record_id = any(${gone.map((r) => r.id)}::uuid[])`
      yield* sql`
        insert into record_deletions (user_id, provider, source_id, inbox_id)
        select ${recipient.userId}, ${provider}, source_id, ${inboxId} from unnest(${ids}::text[]) as d(source_id)
        on conflict (user_id, provider, source_id) do update
          set inbox_id = excluded.inbox_id, deleted_at = excluded.deleted_at
          where record_deletions.inbox_id < excluded.inbox_id`
      // Events in the deletions' order, then by resource: the same input emits the same sequence.
      const order = new Map(ids.map((id, i) => [id, i]))
      const sorted = [...gone].sort((a, b) => order.get(a.source_id)! - order.get(b.source_id)! || a.resource.localeCompare(b.resource))
      for (const record of sorted) {
        const data: DeletedRecord = {
          id: record.id,
          user_id: recipient.userId,
          provider,
          resource: record.resource,
          source_id: record.source_id,
          deleted_at: record.deleted_at.toISOString()
        }
        yield* appendEvent(sql, {
          event_type: `daily.data.${record.resource}.deleted`,
          data,
          user_id: recipient.userId,
          client_user_id: recipient.clientUserId,
          team_id: recipient.teamId
        }, record.id)
      }
      return gone.length
    }, sql.withTransaction)

    return { write, remove } as const
  })
}) {}
