/**
 * The normalized store: records keyed by (user, provider, resource, source record id) with a
 * content hash, timeseries samples, and, in the same transaction, the outbox events that say
 * what changed. Created vs updated vs unchanged is decided by the hash, so a re-delivery of
 * identical content writes nothing and emits nothing. A record the user deleted at the
 * provider is removed with its samples (`daily.data.<resource>.deleted`), and the deletion is
 * remembered so that an older delivery of it does not bring it back.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Metric } from "effect"
import { hash } from "node:crypto"
import { stableUuid } from "../crypto.ts"
import { arrayLiteral } from "../storage/pg-array.ts"
import type { NormalizedRecord } from "../normalizer.ts"
import { appendEvents, eventsEmitted, type NewEvent, newEvent, type Recipient } from "../outbox.ts"
import * as OutboxWake from "../outbox-wake.ts"
import type { DeletedRecord, ResourceName } from "../schema.ts"
import * as Tracing from "../tracing.ts"

export { appendEvent, appendEvents, eventsEmitted, newEvent, type Recipient } from "../outbox.ts"

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

/**
 * One caller's share of a write: records for one recipient from one inbox item. The records
 * of a batch of ingest jobs go to the database together (`writeParts`), each part keeping its
 * own inbox id for the ordering and deletion rules.
 */
export interface WritePart {
  readonly recipient: Recipient
  readonly provider: string
  readonly records: ReadonlyArray<NormalizedRecord>
  readonly inboxId: number
  /** Records whose events are marked as backfilled data. */
  readonly historical?: ReadonlySet<NormalizedRecord>
}

/** A record ready to write: its stored id, its data as JSON with its hash, and its row. */
interface Prepared {
  readonly record: NormalizedRecord
  /** Its part's place in the write, and its own place in its part. */
  readonly part: number
  readonly index: number
  readonly recipient: Recipient
  readonly provider: string
  readonly inboxId: number
  readonly id: string
  /** The JSON of the record's data, which its hash and its event are made of. */
  readonly json: string
  /** The JSON of the row's `data`: a summary's data; a timeseries batch's header (see `rowOf`). */
  readonly row: string
  readonly hash: string
  readonly calendarDate: string | null
  readonly startAt: string | null
}

/**
 * What a record's row holds as `data`: a summary's data, read back by the query API; for a
 * timeseries batch only its header (user and source). Its samples are rows of `samples`, which
 * is where they are read from; kept in the row too they were parsed and compressed twice per
 * write (about a fifth of a sample write's CPU). The hash still covers the whole batch.
 */
const rowOf = (record: NormalizedRecord, recipient: Recipient, json: string) =>
  record.kind === "summary" ? json : JSON.stringify({ user_id: recipient.userId, source: record.data.source })

/**
 * The k-th occurrence of each record in round k: one statement cannot upsert the same row twice,
 * so a body that holds a record twice writes it twice, in order, as one-by-one writes did.
 */
const rounds = (prepared: ReadonlyArray<Prepared>): ReadonlyArray<ReadonlyArray<Prepared>> => {
  const seen = new Map<string, number>()
  const out: Array<Array<Prepared>> = []
  for (const p of prepared) {
    const k = seen.get(p.id) ?? 0
    seen.set(p.id, k + 1)
    ;(out[k] ??= []).push(p)
  }
  return out
}

/**
 * Written batches' samples as columns, for `unnest`: per sample its batch's index, instant,
 * value, unit, offset and other fields; per batch its record id, resource and source type.
 * Within a batch the last sample per timestamp wins (one statement cannot insert a key twice).
 */
const sampleColumns = (batches: ReadonlyArray<Prepared>) => {
  const batch = {
    recordId: [] as Array<string>,
    userId: [] as Array<string>,
    provider: [] as Array<string>,
    resource: [] as Array<string>,
    sourceType: [] as Array<string>
  }
  const sample = {
    batch: [] as Array<number>,
    ts: [] as Array<string>,
    value: [] as Array<number | null>,
    unit: [] as Array<string>,
    timezoneOffset: [] as Array<number | null>,
    fields: [] as Array<string | null>
  }
  for (const { id, record, recipient, provider } of batches) {
    if (record.kind !== "timeseries") continue
    const index = batch.recordId.push(id)
    batch.userId.push(recipient.userId)
    batch.provider.push(provider)
    batch.resource.push(record.resource)
    batch.sourceType.push(record.data.source.type)
    const latest = new Map(record.data.data.map((s) => [s.timestamp, s]))
    for (const s of latest.values()) {
      const { timestamp, timezone_offset, unit, value, type: _type, ...fields } = s as typeof s & { value?: number }
      sample.batch.push(index)
      sample.ts.push(timestamp)
      sample.value.push(value ?? null)
      sample.unit.push(unit)
      sample.timezoneOffset.push(timezone_offset ?? null)
      sample.fields.push(Object.keys(fields).length === 0 ? null : JSON.stringify(fields))
    }
  }
  return { batch, sample }
}

/**
 * A record's event data as JSON, built around the JSON already made for its hash rather than
 * serializing the data again: a summary's data with its created_at and updated_at appended (its
 * data always has an id, so the object is never empty), a batch's data as it is.
 */
const eventDataJson = (p: Prepared, row: { created_at: Date; updated_at: Date }) =>
  p.record.kind === "summary"
    ? `${p.json.slice(0, -1)},"created_at":"${row.created_at.toISOString()}","updated_at":"${row.updated_at.toISOString()}"}`
    : p.json

/** The JSON of the EventEnvelope of `eventType` with `dataJson` as its data, keys in the envelope's order. */
const envelopeJson = (eventType: string, dataJson: string, recipient: Recipient) =>
  `{"event_type":${JSON.stringify(eventType)},"data":${dataJson},"user_id":${JSON.stringify(recipient.userId)},` +
  `"client_user_id":${JSON.stringify(recipient.clientUserId)},"team_id":${JSON.stringify(recipient.teamId)}}`

export class RecordStore extends Effect.Service<RecordStore>()("wearflow/RecordStore", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /**
     * Upserts one round of records (no id twice) in one statement; answers those written
     * (created, or changed and not older than what is stored). Each record carries its own
     * recipient, provider and inbox id, so the parts of several jobs share the statement. The
     * records' JSON travels as one JSON array: as elements of a text[] each would be escaped,
     * which cost more than the insert. Content hashes are compared in SQL; records a newer
     * inbox item deleted stay deleted: a replayed or late older delivery is not written.
     */
    const upsertRecords = (round: ReadonlyArray<Prepared>) =>
      sql<{ id: string; inserted: boolean; created_at: Date; updated_at: Date }>`
        insert into records (id, user_id, provider, resource, source_id, calendar_date, start_at, data, content_hash, inbox_id)
        select r.id, r.user_id, r.provider, r.resource, r.source_id, r.calendar_date, r.start_at, r.data,
               decode(r.content_hash, 'hex'), r.inbox_id
        from rows from (unnest(${arrayLiteral(round.map((p) => p.id))}::uuid[]), unnest(${arrayLiteral(round.map((p) => p.recipient.userId))}::uuid[]),
                        unnest(${arrayLiteral(round.map((p) => p.provider))}::text[]), unnest(${arrayLiteral(round.map((p) => p.record.resource))}::text[]),
                        unnest(${arrayLiteral(round.map((p) => p.record.sourceId))}::text[]), unnest(${arrayLiteral(round.map((p) => p.calendarDate))}::date[]),
                        unnest(${arrayLiteral(round.map((p) => p.startAt))}::timestamptz[]), jsonb_array_elements(${`[${round.map((p) => p.row).join(",")}]`}::jsonb),
                        unnest(${arrayLiteral(round.map((p) => p.hash))}::text[]), unnest(${arrayLiteral(round.map((p) => p.inboxId))}::bigint[]))
          as r(id, user_id, provider, resource, source_id, calendar_date, start_at, data, content_hash, inbox_id)
        where not exists (
          select 1 from record_deletions d
          where d.user_id = r.user_id and d.provider = r.provider and d.source_id = r.source_id and d.inbox_id > r.inbox_id)
        on conflict (user_id, provider, resource, source_id) do update
          set data = excluded.data, content_hash = excluded.content_hash, calendar_date = excluded.calendar_date,
              start_at = excluded.start_at, inbox_id = excluded.inbox_id, updated_at = now()
          where records.content_hash <> excluded.content_hash and records.inbox_id <= excluded.inbox_id
        returning id, (xmax = 0) as inserted, created_at, updated_at`

    /** What `insert into samples` takes: each sample with its batch's record, user, provider, resource and source type. */
    const samplesInsert = ({ batch, sample }: ReturnType<typeof sampleColumns>) => sql`
      (user_id, resource, provider, source_type, ts, value, unit, timezone_offset, fields, record_id)
      select b.user_id, b.resource, b.provider, b.source_type, s.ts, s.value, s.unit, s.timezone_offset, s.fields::jsonb, b.record_id
      from unnest(${arrayLiteral(sample.batch)}::int[], ${arrayLiteral(sample.ts)}::timestamptz[], ${arrayLiteral(sample.value)}::float8[],
                  ${arrayLiteral(sample.unit)}::text[], ${arrayLiteral(sample.timezoneOffset)}::int[], ${arrayLiteral(sample.fields)}::text[])
        as s(batch, ts, value, unit, timezone_offset, fields)
      join unnest(${arrayLiteral(batch.recordId)}::uuid[], ${arrayLiteral(batch.userId)}::uuid[], ${arrayLiteral(batch.provider)}::text[],
                  ${arrayLiteral(batch.resource)}::text[], ${arrayLiteral(batch.sourceType)}::text[])
        with ordinality as b(record_id, user_id, provider, resource, source_type, batch) using (batch)`

    /**
     * The samples of written timeseries batches. A written batch replaces its record's samples:
     * a revised batch (a final sleep after a tentative one) drops those it no longer has. So the
     * samples go as plain inserts after one delete of the `updated` records' samples, cheaper
     * than an upsert per sample;
     * the record's row, locked by its upsert, orders concurrent writes of one batch. A sample is
     * keyed by its record and instant, so records never overwrite each other's samples.
     */
    const replaceSamples = (batches: ReadonlyArray<Prepared>, updated: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        if (batches.length === 0) return
        const columns = sampleColumns(batches)
        // A record just inserted has no samples yet: whatever deletes a record deletes its samples.
        if (updated.length > 0) yield* sql`delete from samples where record_id = any(${arrayLiteral(updated)}::uuid[])`
        if (columns.sample.ts.length === 0) return
        yield* sql`insert into samples ${samplesInsert(columns)}`
      })

    /** Each part's records ready to write, parts in their order and each part's records in theirs. */
    const prepare = (parts: ReadonlyArray<WritePart>) =>
      parts.flatMap(({ recipient, provider, records, inboxId }, part) =>
        records.map((record, index): Prepared => {
          const id = stableUuid(recipient.userId, provider, record.resource, record.sourceId)
          const data = record.kind === "summary" ? { id, user_id: recipient.userId, ...record.data } : { user_id: recipient.userId, ...record.data }
          const json = JSON.stringify(data)
          return { record, part, index, recipient, provider, inboxId, id, json, row: rowOf(record, recipient, json), hash: hash("sha256", json, "hex"), ...placement(record) }
        })
      )

    /** In id order: concurrent writes lock shared rows in the same order, so they wait rather than deadlock. */
    const byId = (round: ReadonlyArray<Prepared>) => [...round].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))

    /**
     * Records, none twice (summaries, timeseries batches or both): the records, a written
     * batch's samples and the events in one statement, atomic without a transaction; one round
     * trip instead of four or five (BEGIN, upsert, samples, append, COMMIT), the worker's share
     * of the PUSH → webhook latency. A summary's event is made in SQL from what the upsert
     * wrote: the envelope as `envelopeJson` makes it, the data with the row's created_at and
     * updated_at as JavaScript's toISOString writes them (Postgres's microseconds cut to
     * milliseconds, as the driver reads a timestamp); a batch's event data is its JSON as sent.
     * An updated batch's old samples are deleted before its new ones go in (`cleared` is read
     * first): a tuple this transaction deleted no longer counts for the samples' key, so a
     * revised batch replaces samples at the same instants. Events in the records' order (`n`).
     */
    const writeAtOnce = (parts: ReadonlyArray<WritePart>, prepared: ReadonlyArray<Prepared>) =>
      Effect.gen(function* () {
        const order = new Map(prepared.map((p, n) => [p, n]))
        const sorted = byId(prepared)
        const batches = sorted.filter((p) => p.record.kind === "timeseries")
        const rows = yield* sql<{ id: string; inserted: boolean }>`
          with input as (
            select * from rows from (
              unnest(${arrayLiteral(sorted.map((p) => p.id))}::uuid[]), unnest(${arrayLiteral(sorted.map((p) => p.recipient.userId))}::uuid[]),
              unnest(${arrayLiteral(sorted.map((p) => p.provider))}::text[]), unnest(${arrayLiteral(sorted.map((p) => p.record.resource))}::text[]),
              unnest(${arrayLiteral(sorted.map((p) => p.record.sourceId))}::text[]), unnest(${arrayLiteral(sorted.map((p) => p.calendarDate))}::date[]),
              unnest(${arrayLiteral(sorted.map((p) => p.startAt))}::timestamptz[]), jsonb_array_elements(${`[${sorted.map((p) => p.row).join(",")}]`}::jsonb),
              unnest(${arrayLiteral(sorted.map((p) => p.hash))}::text[]), unnest(${arrayLiteral(sorted.map((p) => p.inboxId))}::bigint[]),
              unnest(${arrayLiteral(sorted.map((p) => p.recipient.teamId))}::uuid[]), unnest(${sorted.map((p) => p.recipient.clientUserId)}::text[]),
              unnest(${arrayLiteral(sorted.map((p) => parts[p.part]!.historical?.has(p.record) ?? false))}::boolean[]),
              unnest(${arrayLiteral(sorted.map((p) => order.get(p)!))}::int[]),
              jsonb_array_elements(${`[${sorted.map((p) => (p.record.kind === "summary" ? "null" : p.json)).join(",")}]`}::jsonb))
            with ordinality
              as r(id, user_id, provider, resource, source_id, calendar_date, start_at, data, content_hash, inbox_id, team_id, client_user_id, historical, n, batch_data, locking)
          ), written as (
            insert into records (id, user_id, provider, resource, source_id, calendar_date, start_at, data, content_hash, inbox_id)
            select r.id, r.user_id, r.provider, r.resource, r.source_id, r.calendar_date, r.start_at, r.data, decode(r.content_hash, 'hex'), r.inbox_id
            from input r
            where not exists (
              select 1 from record_deletions d
              where d.user_id = r.user_id and d.provider = r.provider and d.source_id = r.source_id and d.inbox_id > r.inbox_id)
            order by r.locking
            on conflict (user_id, provider, resource, source_id) do update
              set data = excluded.data, content_hash = excluded.content_hash, calendar_date = excluded.calendar_date,
                  start_at = excluded.start_at, inbox_id = excluded.inbox_id, updated_at = now()
              where records.content_hash <> excluded.content_hash and records.inbox_id <= excluded.inbox_id
            returning id, (xmax = 0) as inserted, created_at, updated_at
          ), appended as (
            insert into outbox (event_id, event_type, team_id, user_id, record_id, payload, historical)
            select gen_random_uuid(), e.event_type, r.team_id, r.user_id, r.id,
                   jsonb_build_object(
                     'event_type', e.event_type,
                     'data', case when jsonb_typeof(r.batch_data) = 'object' then r.batch_data else r.data || jsonb_build_object(
                       'created_at', to_char(w.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                       'updated_at', to_char(w.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) end,
                     'user_id', r.user_id, 'client_user_id', r.client_user_id, 'team_id', r.team_id),
                   r.historical
            from written w join input r using (id)
            cross join lateral (select 'daily.data.' || r.resource || case when w.inserted then '.created' else '.updated' end as event_type) e
            order by r.n
          )${batches.length === 0 ? sql`` : sql`, cleared as (
            delete from samples s using written w where s.record_id = w.id and not w.inserted
            returning 1
          ), sampled as (
            insert into samples ${samplesInsert(sampleColumns(batches))}
            where b.record_id in (select id from written)
              -- The old samples go first: read here, cleared runs to its end before a sample is inserted.
              and (select count(*) from cleared) >= 0
          )`}
          select id, inserted from written`
        const written = new Map(rows.map((row) => [row.id, row.inserted]))
        const outcomes = parts.map((p) => ({ created: 0, updated: 0, unchanged: p.records.length }))
        const emitted = new Map<string, number>()
        for (const p of prepared) {
          const inserted = written.get(p.id)
          if (inserted === undefined) continue
          const outcome = outcomes[p.part]!
          outcome.unchanged--
          if (inserted) outcome.created++
          else outcome.updated++
          const eventType = `daily.data.${p.record.resource}.${inserted ? "created" : "updated"}`
          emitted.set(eventType, (emitted.get(eventType) ?? 0) + 1)
        }
        yield* Effect.forEach(emitted, ([eventType, n]) => Metric.incrementBy(Metric.tagged(eventsEmitted, "event_type", eventType), n), { discard: true })
        return outcomes
      })

    /**
     * Records in rounds (a record twice, or timeseries batches with their samples), a few
     * statements per round, in one transaction.
     */
    const writeInRounds = (parts: ReadonlyArray<WritePart>, prepared: ReadonlyArray<Prepared>) =>
      Effect.gen(function* () {
        const events: Array<NewEvent & { readonly part: number; readonly index: number }> = []
        const outcomes = parts.map((p) => ({ created: 0, updated: 0, unchanged: p.records.length }))
        for (const round of rounds(prepared)) {
          const sorted = parts.length > 1 ? byId(round) : round
          const written = new Map((yield* upsertRecords(sorted)).map((row) => [row.id, row]))
          const batches = sorted.filter((p) => p.record.kind === "timeseries" && written.has(p.id))
          yield* replaceSamples(batches, batches.flatMap((p) => (written.get(p.id)!.inserted ? [] : [p.id])))
          for (const p of round) {
            const row = written.get(p.id)
            if (!row) continue
            const outcome = outcomes[p.part]!
            outcome.unchanged--
            if (row.inserted) outcome.created++
            else outcome.updated++
            const eventType = `daily.data.${p.record.resource}.${row.inserted ? "created" : "updated"}`
            events.push({
              part: p.part,
              index: p.index,
              eventType,
              teamId: p.recipient.teamId,
              userId: p.recipient.userId,
              recordId: p.id,
              historical: parts[p.part]!.historical?.has(p.record) ?? false,
              payload: envelopeJson(eventType, eventDataJson(p, row), p.recipient)
            })
          }
        }
        // Events in the records' order, whatever round wrote them: the same input emits the same sequence.
        yield* appendEvents(sql, events.sort((a, b) => a.part - b.part || a.index - b.index))
        return outcomes
      }).pipe(sql.withTransaction)

    /**
     * Upserts the records of every part and appends one outbox event per created or changed
     * record, parts in their order and each part's events in its records' order; answers each
     * part's outcome. Atomic, a few statements per call whatever its size or number of parts;
     * summaries alone (no record twice) in one statement. A record from an older inbox item
     * never overwrites one from a newer item, so out-of-order processing keeps the latest
     * delivery. The sink runners are rung once it commits, when its events can be read.
     */
    const writeParts = (yield* Tracing.fn("RecordStore.writeParts"))(function* (parts: ReadonlyArray<WritePart>) {
      const prepared = prepare(parts)
      if (prepared.length === 0) return parts.map(() => ({ created: 0, updated: 0, unchanged: 0 })) satisfies ReadonlyArray<WriteOutcome>
      const atOnce = rounds(prepared).length === 1
      const r = yield* (atOnce ? writeAtOnce(parts, prepared) : writeInRounds(parts, prepared))
      return r satisfies ReadonlyArray<WriteOutcome>
    }, (committed) => Effect.zipLeft(committed, OutboxWake.ring))

    /**
     * Upserts `records` for `recipient` and appends one outbox event per created or changed
     * record, in the records' order, in one transaction (see `writeParts`). Events of records
     * in `historical` are marked as backfilled data.
     */
    const write = (
      recipient: Recipient,
      provider: string,
      records: ReadonlyArray<NormalizedRecord>,
      inboxId: number,
      historical: ReadonlySet<NormalizedRecord> = new Set()
    ): Effect.Effect<WriteOutcome, SqlError> =>
      Effect.map(writeParts([{ recipient, provider, records, inboxId, historical }]), (outcomes) => outcomes[0]!)

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
      yield* appendEvents(sql, sorted.map((record) => {
        const data: DeletedRecord = {
          id: record.id,
          user_id: recipient.userId,
          provider,
          resource: record.resource,
          source_id: record.source_id,
          deleted_at: record.deleted_at.toISOString()
        }
        return newEvent({
          event_type: `daily.data.${record.resource}.deleted`,
          data,
          user_id: recipient.userId,
          client_user_id: recipient.clientUserId,
          team_id: recipient.teamId
        }, record.id)
      }))
      return gone.length
    }, sql.withTransaction, (committed) => Effect.zipLeft(committed, OutboxWake.ring))

    return { write, writeParts, remove } as const
  })
}) {}
