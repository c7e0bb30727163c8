/**
 * Batching, durably. The sink runner stages each data event (a reference to its outbox row)
 * in the runner's own transaction. A sealer seals a resource's staged events into a batch
 * when they reach the record, byte or age limit — the batch's events, id and name are then
 * fixed in Postgres — while writers, beside it, write each sealed batch's data file, then its
 * manifest, then record progress. A crash or an outage between the upload and the progress write leaves the batch
 * sealed: it is written again to the same keys, overwriting, never copying.
 *
 * While the storage fails, sealed batches wait and are retried with back-off (at most a
 * minute apart); new events stay staged, unsealed, and form full batches once it is back.
 */
import { SqlClient, type SqlConnection, type SqlError } from "@effect/sql"
import type { OutboxEntry } from "@wearflow/core/sink"
import { Duration, Effect, Either, ExecutionStrategy, Exit, Metric, Queue, Schedule, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import { chunksOf, type Open } from "./chunks.ts"
import { contentTypeOf, type EncodeError, type Encoder, extensionOf, type Format, ndjsonGzip, parquet, writeSeconds } from "./encode.ts"
import type { ObjectStore, StorageError } from "./object-store.ts"
import { resourceOf, resourceRows, type ResourceRows, rowsFrom } from "./rows.ts"
import type { Settings } from "./settings.ts"

const backlogRecords = Metric.gauge("wearflow_etl_backlog_records")
const backlogBatches = Metric.gauge("wearflow_etl_backlog_sealed_batches")
const recordsWritten = Metric.counter("wearflow_etl_records_written_total")
const batchesWritten = Metric.counter("wearflow_etl_batches_written_total")
const bytesWritten = Metric.counter("wearflow_etl_bytes_written_total")
const writeErrors = Metric.counter("wearflow_etl_write_errors_total")
const batchesFailed = Metric.counter("wearflow_etl_batches_failed_total")

interface BatchRow {
  readonly id: string
  readonly resource: string
  readonly format: Format
  readonly first_seq: string
  readonly last_seq: string
  readonly events: number
  readonly records: number
  readonly sealed_at: Date
}

interface Due {
  readonly resource: string
  readonly records: number
  readonly bytes: number
  readonly age_ms: number
}

/** The manifest of one batch: written after its data file, so its presence means "complete". */
export interface Manifest {
  readonly manifest_version: 1
  readonly batch_id: string
  readonly resource: string
  readonly format: Format
  readonly schema_version: string
  readonly schema_key: string
  readonly sealed_at: string
  readonly event_count: number
  readonly record_count: number
  readonly files: ReadonlyArray<{
    readonly key: string
    readonly records: number
    readonly bytes: number
    readonly sha256: string
    readonly content_type: string
  }>
}

/** A batch's name: sortable by sealing time, unique by its id. */
const batchName = (batch: Pick<BatchRow, "id" | "sealed_at">) =>
  `${batch.sealed_at.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${batch.id.padStart(10, "0")}`

const schemaKeys = (rows: ResourceRows) => ({
  current: `_schemas/${rows.resource}.json`,
  versioned: `_schemas/${rows.resource}/${rows.schemaVersion}.json`
})

export const keysOf = (batch: Pick<BatchRow, "id" | "resource" | "format" | "sealed_at">) => {
  const date = batch.sealed_at.toISOString().slice(0, 10)
  const partition = `resource=${batch.resource}/date=${date}`
  const name = batchName(batch)
  return {
    name,
    data: `${partition}/${name}.${extensionOf[batch.format]}`,
    manifest: `_manifests/${partition}/${name}.json`
  }
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** Each write failure in a row waits longer: 1 s, 2 s, 4 s, … up to a minute. */
const backoff = (failures: number) => Duration.millis(Math.min(60_000, 1000 * 2 ** Math.min(failures - 1, 6)))

/** How often the staged totals are checked at most, however often the runner wakes the flusher. */
const CHECK_INTERVAL = Duration.millis(250)

/**
 * Rows read and encoded at a time while a batch is written, as events: the batch's average
 * rows per event decide how many events make a page (4,000 summaries, or 40 events of 100
 * samples). Fewer, larger reads: one read of a hundred summaries cost as much as a thousand.
 */
export const PAGE_RECORDS = 4000
const pageEventsOf = (batch: Pick<BatchRow, "events" | "records">) =>
  Math.max(1, Math.round((PAGE_RECORDS * batch.events) / Math.max(1, batch.records)))

/** Counts an effect's time as a stage of writing batches (encode.ts writeSeconds). */
const timed = (stage: Parameters<typeof writeSeconds>[0]) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timed(effect).pipe(
    Effect.tap(([duration]) => Metric.incrementBy(writeSeconds(stage), Duration.toMillis(duration) / 1000)),
    Effect.map(([, a]) => a)
  )

/** Batches written at once: encoding (zlib, DuckDB) and uploads overlap. */
const WRITERS = 2

export const make = (settings: Settings, store: ObjectStore) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const scope = yield* Effect.scope
    const wakeup = yield* Queue.sliding<void>(1)
    // DuckDB starts on the first Parquet batch and stays; a failed start is tried again next time.
    let duckdb: Encoder | undefined
    const starting = yield* Effect.makeSemaphore(1)
    const startParquet = starting.withPermits(1)(
      Effect.suspend(() => {
        if (duckdb) return Effect.succeed(duckdb)
        // Its own scope, closed if the start fails: a failed start leaves nothing open.
        return Effect.flatMap(Scope.fork(scope, ExecutionStrategy.sequential), (child) =>
          Scope.extend(parquet, child).pipe(
            Effect.tapBoth({
              onFailure: () => Scope.close(child, Exit.void),
              onSuccess: (encoder) => Effect.sync(() => void (duckdb = encoder))
            })
          ))
      })
    )
    const ndjson = ndjsonGzip(settings.gzipLevel)
    const encoderOf = (format: Format): Effect.Effect<Encoder, EncodeError> => (format === "parquet" ? startParquet : Effect.succeed(ndjson))

    const limits = settings.batch

    /**
     * Stages a runner batch's data events, in the runner's transaction: staged exactly when
     * the cursor moves past them. Each resource's events become chunks, one staging row each,
     * cut at the batch limits: the first chunk fills what the resource's open batch has room
     * for, the next ones a whole batch each, so sealing whole chunks gives the batches sealing
     * single events gave. Row counts and sizes are read in Postgres, so the payloads never
     * travel to this process until their batch is written. A payload stored uncompressed
     * counts its stored size (jsonb's is within a few percent of its JSON text's), read from
     * its header: printing every summary as text to measure it cost more than the rest of
     * staging together. A compressed one is printed, or the limit would count it small.
     */
    const stage = (entries: ReadonlyArray<OutboxEntry>) => {
      const positions: Array<string> = []
      const datasets: Array<string> = []
      const timeseriesTypes = new Set<string>()
      for (const entry of entries) {
        const rows = resourceOf(entry.eventType)
        if (rows === undefined) continue
        positions.push(entry.position)
        datasets.push(rows.resource)
        if (rows.kind === "timeseries") timeseriesTypes.add(entry.eventType)
      }
      if (positions.length === 0) return Effect.void
      return Effect.gen(function* () {
        // One index scan over the positions (a join to unnest() let the planner scan the whole
        // outbox). Positions are digits: an array literal built here costs less than pg's escaping.
        const sized = yield* sql<{ readonly position: string; readonly records: number; readonly bytes: number }>`
          select o.position::text as position,
                 case when not (o.event_type = any(${[...timeseriesTypes]}::text[])) then 1
                      when jsonb_typeof(o.payload -> 'data' -> 'data') = 'array' then jsonb_array_length(o.payload -> 'data' -> 'data')
                      else 0 end as records,
                 case when pg_column_compression(o.payload) is null then pg_column_size(o.payload) else octet_length(o.payload::text) end as bytes
          from outbox o where o.position = any(${`{${positions.join(",")}}`}::bigint[])`
        if (sized.length === 0) return
        // What each dataset's open batch holds: its last chunk's fill, one index look-up each (a
        // sum over the open chunks grew with them: at 50 notifications/s, 3 ms a round after a minute).
        const open = yield* sql<Open>`
          select r.resource, l.fill_records::float8 as records, l.fill_bytes::float8 as bytes
          from unnest(${[...new Set(datasets)]}::text[]) as r(resource)
          cross join lateral (select p.seq, p.fill_records, p.fill_bytes from etl_pending p where p.resource = r.resource order by p.seq desc limit 1) l
          where l.seq > coalesce((select s.through_seq from etl_sealed s where s.resource = r.resource), 0)`
        const sizes = new Map(sized.map((e) => [e.position, e]))
        // In staging order; an event whose outbox row is gone is not staged.
        const events = positions.flatMap((position, i) => {
          const size = sizes.get(position)
          return size === undefined ? [] : [{ dataset: datasets[i]!, position, records: size.records, bytes: size.bytes }]
        })
        const chunks = chunksOf(events, open, limits)
        yield* sql`
          insert into etl_pending (resource, positions, event_records, events, records, bytes, fill_records, fill_bytes)
          select c.resource, string_to_array(c.positions, ',')::bigint[], string_to_array(c.event_records, ',')::integer[], c.events, c.records, c.bytes,
                 c.fill_records, c.fill_bytes
          from unnest(${chunks.map((c) => c.dataset)}::text[], ${chunks.map((c) => c.positions.join(","))}::text[],
                      ${chunks.map((c) => c.records.join(","))}::text[], ${chunks.map((c) => c.records.length)}::integer[],
                      ${chunks.map((c) => c.totalRecords)}::integer[], ${chunks.map((c) => c.bytes)}::bigint[],
                      ${chunks.map((c) => c.before.records + c.totalRecords)}::bigint[], ${chunks.map((c) => c.before.bytes + c.bytes)}::bigint[])
            with ordinality as c(resource, positions, event_records, events, records, bytes, fill_records, fill_bytes, n)
          order by c.n`
      })
    }

    const wake = Queue.offer(wakeup, undefined).pipe(Effect.asVoid)

    /**
     * Drops the staged references to a user's events (in the erasure's transaction, before the
     * events go): out of each chunk that holds one, its size shrinking in proportion; a chunk
     * left empty goes. A sealed batch holding one writes without it.
     */
    const unstageUser = (userId: string) =>
      sql`
        with gone as (select position from outbox where user_id = ${userId}),
        kept as (
          select p.resource, p.seq,
                 coalesce(array_agg(e.position order by e.i) filter (where g.position is null), '{}') as positions,
                 coalesce(array_agg(e.records order by e.i) filter (where g.position is null), '{}') as event_records,
                 coalesce(sum(e.records) filter (where g.position is null), 0) as records
          from etl_pending p
          cross join lateral unnest(p.positions, p.event_records) with ordinality as e(position, records, i)
          left join gone g on g.position = e.position
          where p.positions && (select coalesce(array_agg(position), '{}') from gone)
          group by p.resource, p.seq
        ),
        shrunk as (
          update etl_pending p
          set positions = k.positions, event_records = k.event_records, records = k.records,
              bytes = p.bytes * cardinality(k.positions) / greatest(p.events, 1), events = cardinality(k.positions)
          from kept k where p.resource = k.resource and p.seq = k.seq and cardinality(k.positions) > 0
        )
        delete from etl_pending p using kept k where p.resource = k.resource and p.seq = k.seq and cardinality(k.positions) = 0`.pipe(Effect.asVoid)

    const openTotals = sql<Due>`
      select p.resource, sum(p.records)::float8 as records, sum(p.bytes)::float8 as bytes,
             extract(epoch from now() - min(p.staged_at))::float8 * 1000 as age_ms
      from etl_pending p left join etl_sealed s on s.resource = p.resource
      where p.seq > coalesce(s.through_seq, 0) group by p.resource`

    const ageLimit = Duration.toMillis(limits.age)
    const isDue = (d: Due) => d.records >= limits.records || d.bytes >= limits.bytes || d.age_ms >= ageLimit

    /** Seals one batch of `resource`: its oldest open chunks, up to the record and byte limits. */
    const sealOne = (resource: string) =>
      sql`
        with open as (
          select p.seq, p.events, p.records, p.bytes from etl_pending p
          where p.resource = ${resource} and p.seq > coalesce((select through_seq from etl_sealed where resource = ${resource}), 0)
          order by p.seq limit ${limits.records}
        ),
        running as (
          select seq, events, records, row_number() over w as n, sum(records) over w as total_records, sum(bytes) over w as total_bytes
          from open window w as (order by seq)
        ),
        picked as (
          select seq, events, records from running
          where n = 1 or (total_records <= ${limits.records} and total_bytes <= ${limits.bytes})
        ),
        batch as (
          insert into etl_batches (resource, format, first_seq, last_seq, events, records)
          select ${resource}, ${settings.format}, min(seq), max(seq), coalesce(sum(events), 0), coalesce(sum(records), 0) from picked having count(*) > 0
          returning last_seq
        )
        insert into etl_sealed (resource, through_seq) select ${resource}, last_seq from batch
        on conflict (resource) do update set through_seq = excluded.through_seq`

    /**
     * Seals every resource that is due, one batch each, under a lock so replicas do not seal
     * the same events twice. Returns how many were sealed and when the next one falls due.
     */
    const sealDue = sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`select pg_advisory_xact_lock(hashtextextended('wearflow:etl:seal', 0))`
        const totals = yield* openTotals
        const due = totals.filter(isDue)
        for (const d of due) yield* sealOne(d.resource)
        const waiting = totals.filter((d) => !isDue(d)).map((d) => ageLimit - d.age_ms)
        return { sealed: due.length, nextDueMs: waiting.length === 0 ? undefined : Math.max(0, Math.min(...waiting)) }
      })
    )

    const publishedSchemas = new Set<string>()
    /** The JSON Schema of a resource's rows, under its version and as the current one; once per process. */
    const publishSchema = (rows: ResourceRows) => {
      if (publishedSchemas.has(rows.schemaVersion + rows.resource)) return Effect.void
      const body = new TextEncoder().encode(JSON.stringify(rows.jsonSchema, null, 2) + "\n")
      const keys = schemaKeys(rows)
      return store.put(keys.versioned, body, "application/schema+json").pipe(
        Effect.zipRight(store.put(keys.current, body, "application/schema+json")),
        Effect.tap(() => Effect.sync(() => publishedSchemas.add(rows.schemaVersion + rows.resource)))
      )
    }

    /** Every resource's schema, so tables can be defined before any data arrives. */
    const publishSchemas = Effect.forEach(resourceRows.values(), publishSchema, { discard: true })

    /** A sealed batch's staged events: its chunks' outbox positions, in staging order. */
    const positionsOf = (batch: BatchRow) =>
      sql<{ readonly positions: string }>`
        select array_to_string(p.positions, ',') as positions from etl_pending p
        where p.resource = ${batch.resource} and p.seq between ${batch.first_seq} and ${batch.last_seq} order by p.seq`.pipe(
        Effect.map((chunks) => chunks.flatMap((c) => (c.positions === "" ? [] : c.positions.split(","))))
      )

    /**
     * One page of a batch's events, in staging order, as NDJSON lines and their counts; an
     * event whose outbox row is gone is skipped. One index scan over their positions, reading
     * only what the rows take: the payload's client user id and data (as JSON text) and the
     * emission time in milliseconds (Postgres' to_char cost a fifth of the read). The page
     * comes as one text, a line per event and a tab between fields: a result row per event
     * cost more in the driver (a message per row, a string per field) than splitting. No field
     * can hold a tab or a line break: the free-form ones (client user id, data) come as JSON
     * text, which escapes both.
     */
    const linesAt = (rows: ResourceRows, positions: ReadonlyArray<string>) =>
      sql<{ readonly page: string | null }>`
        select string_agg(concat_ws(E'\t',
                 o.position, o.event_id, o.event_type, floor(extract(epoch from o.created_at) * 1000)::bigint,
                 case when o.historical then 't' else 'f' end, o.team_id, o.user_id, coalesce(o.record_id::text, ''),
                 coalesce((o.payload -> 'client_user_id')::text, 'null'), coalesce((o.payload -> 'data')::text, 'null')), E'\n') as page
        from outbox o where o.position = any(${`{${positions.join(",")}}`}::bigint[])`.pipe(
        timed("read"),
        Effect.flatMap(([result]) => timed("render")(Effect.sync(() => {
          const byPosition = new Map<string, string>()
          for (const line of result?.page?.split("\n") ?? []) byPosition.set(line.slice(0, line.indexOf("\t")), line)
          let text = ""
          let events = 0
          let records = 0
          for (const position of positions) {
            const line = byPosition.get(position)
            if (line === undefined) continue
            const [, eventId, eventType, emittedMs, historical, teamId, userId, recordId, clientUserId, data] = line.split("\t") as [
              string, string, string, string, string, string, string, string, string, string
            ]
            const eventRows = rowsFrom(rows, {
              eventId,
              eventType,
              emittedAt: new Date(Number(emittedMs)).toISOString(),
              historical: historical === "t",
              teamId,
              userId,
              recordId: recordId === "" ? null : recordId,
              // An envelope without a client user id gave rows without the field.
              clientUserId: (JSON.parse(clientUserId) as string | null) ?? undefined,
              data: JSON.parse(data)
            })
            for (const row of eventRows) text += JSON.stringify(row) + "\n"
            records += eventRows.length
            events++
          }
          return { text, events, records }
        })))
      )

    /** Pages read at once while a batch is written: the next page is read while this one is encoded. */
    const PAGES_AHEAD = 2

    /**
     * Renders and uploads one sealed batch: data file, then manifest. The same batch always
     * goes to the same keys. Its events are read and encoded a page at a time, so a batch of
     * up to the byte limit is never held in memory as objects all at once.
     */
    const upload = (batch: BatchRow) =>
      Effect.gen(function* () {
        const rows = resourceRows.get(batch.resource as never)!
        yield* publishSchema(rows)
        let events = 0
        let records = 0
        const pageEvents = pageEventsOf(batch)
        const positions = yield* positionsOf(batch)
        const starts = Array.from({ length: Math.ceil(positions.length / pageEvents) }, (_, i) => i * pageEvents)
        const pages = Stream.fromIterable(starts).pipe(
          Stream.mapEffect((start) => linesAt(rows, positions.slice(start, start + pageEvents)), { concurrency: PAGES_AHEAD }),
          Stream.map((page) => {
            events += page.events
            records += page.records
            return page.text
          })
        )
        const encoder = yield* encoderOf(batch.format)
        const body = yield* encoder.encodeLines(rows, pages)
        const keys = keysOf(batch)
        yield* store.put(keys.data, body, contentTypeOf[batch.format]).pipe(timed("store"))
        const manifest: Manifest = {
          manifest_version: 1,
          batch_id: keys.name,
          resource: batch.resource,
          format: batch.format,
          schema_version: rows.schemaVersion,
          schema_key: store.keyOf(schemaKeys(rows).versioned),
          sealed_at: batch.sealed_at.toISOString(),
          event_count: events,
          record_count: records,
          files: [{ key: store.keyOf(keys.data), records, bytes: body.length, sha256: sha256(body), content_type: contentTypeOf[batch.format] }]
        }
        yield* store.put(keys.manifest, new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"), "application/json")
        return { records, bytes: body.length }
      })

    type Written = { readonly _tag: "Idle" } | { readonly _tag: "Written" } | { readonly _tag: "Failed"; readonly error: string }

    const sealedCandidates = sql<BatchRow>`
      select id::text as id, resource, format, first_seq::text as first_seq, last_seq::text as last_seq, events, records, sealed_at
      from etl_batches where status = 'sealed' order by id limit 8`

    /** Records a batch written and lets its staged events go, in one short transaction. */
    const markWritten = (batch: BatchRow, bytes: number) =>
      sql.withTransaction(Effect.all([
        sql`delete from etl_pending where resource = ${batch.resource} and seq between ${batch.first_seq} and ${batch.last_seq}`,
        sql`update etl_batches set status = 'written', written_at = now(), attempts = attempts + 1, last_error = null,
            data_bytes = ${bytes} where id = ${batch.id}`
      ]))

    /**
     * Takes the oldest sealed batch no other writer holds and writes it. The claim is a
     * session advisory lock on `lockConnection`, not an open transaction: an upload may take
     * minutes, and a transaction held that long would hold back every sink's outbox reads
     * (they wait for older transactions). A writer that dies loses its session and its lock,
     * and another writer takes the batch again.
     */
    const writeOne = (lockConnection: SqlConnection.Connection): Effect.Effect<Written, SqlError.SqlError> =>
      Effect.gen(function* () {
        for (const candidate of yield* sealedCandidates) {
          const key = `wearflow:etl:batch:${candidate.id}`
          const [claim] = yield* lockConnection.execute("select pg_try_advisory_lock(hashtextextended($1, 0)) as locked", [key], undefined)
          if (claim?.locked !== true) continue
          return yield* Effect.gen(function* () {
            // Another writer may have finished it between the listing and the lock.
            const [still] = yield* sql`select 1 from etl_batches where id = ${candidate.id} and status = 'sealed'`
            if (still === undefined) return yield* writeOne(lockConnection)
            const outcome = yield* upload(candidate).pipe(Effect.either)
            if (Either.isRight(outcome)) {
              yield* markWritten(candidate, outcome.right.bytes)
              yield* Metric.increment(batchesWritten)
              yield* Metric.incrementBy(recordsWritten, outcome.right.records)
              yield* Metric.incrementBy(bytesWritten, outcome.right.bytes)
              return { _tag: "Written" } as const
            }
            const error = outcome.left
            // Reading the batch's events failed: as any database failure here, the flusher restarts.
            if (error._tag === "SqlError") return yield* Effect.fail(error)
            if (!error.retryable) {
              // Rows its resource's schema refuses: set aside, so the batches after it still go.
              yield* sql`update etl_batches set status = 'failed', attempts = attempts + 1, last_error = ${error.message} where id = ${candidate.id}`
              yield* Metric.increment(batchesFailed)
              yield* Effect.logError("ETL batch cannot be encoded; set aside as failed").pipe(
                Effect.annotateLogs({ batch: batchName(candidate), resource: candidate.resource, error: error.message })
              )
              return yield* writeOne(lockConnection)
            }
            yield* sql`update etl_batches set attempts = attempts + 1, last_error = ${error.message} where id = ${candidate.id}`
            return { _tag: "Failed", error: error.message } as const
          }).pipe(
            Effect.ensuring(Effect.ignore(lockConnection.execute("select pg_advisory_unlock(hashtextextended($1, 0))", [key], undefined)))
          )
        }
        return { _tag: "Idle" } as const
      })

    const backlog = sql<{ records: number; sealed: number }>`
      select coalesce(sum(records), 0)::float8 as records,
             (select count(*) from etl_batches where status = 'sealed')::float8 as sealed
      from etl_pending`.pipe(
      Effect.map((rows) => rows[0] ?? { records: 0, sealed: 0 }),
      Effect.tap((b) => Effect.all([Metric.set(backlogRecords, b.records), Metric.set(backlogBatches, b.sealed)]))
    )

    /** Writers whose last write failed: while any has, nothing new is sealed (events wait, staged, to form full batches). */
    const failing = new Set<number>()
    /** Told when a batch is sealed, so an idle writer takes it at once. */
    const sealedNews = yield* Queue.sliding<void>(WRITERS)

    /**
     * A writer: takes sealed batches one after the other; when none is left, waits for news
     * of one from the sealer; when a write fails, retries with back-off.
     */
    const writer = (id: number) =>
      Effect.flatMap(sql.reserve, (lockConnection) =>
        Effect.gen(function* () {
          let failures = 0
          for (;;) {
            const written = yield* writeOne(lockConnection)
            if (written._tag === "Failed") {
              failures++
              failing.add(id)
              const pending = yield* backlog
              yield* Metric.increment(writeErrors)
              yield* Effect.logWarning("ETL batch could not be written; batches wait and will be retried").pipe(
                Effect.annotateLogs({
                  destination: store.location,
                  error: written.error,
                  failures,
                  backlog_records: pending.records,
                  sealed_batches: pending.sealed,
                  retry_in: Duration.format(backoff(failures))
                })
              )
              yield* Effect.sleep(backoff(failures))
              continue
            }
            if (failures > 0) yield* Effect.logInfo("ETL storage writes resumed").pipe(Effect.annotateLogs("destination", store.location))
            failures = 0
            failing.delete(id)
            // A replica's sealer does not tell this one: a second at most, then look again.
            if (written._tag === "Idle") yield* Queue.take(sealedNews).pipe(Effect.timeout("1 second"), Effect.ignore)
          }
        })).pipe(Effect.scoped)

    /**
     * The sealer: seals what is due while the writers write, so a second batch is ready
     * (and a second writer busy) before the first is written; then waits for news from the
     * runner or the next deadline.
     */
    const sealer = Effect.gen(function* () {
      for (;;) {
        if (failing.size === 0) {
          const sealed = yield* sealDue
          yield* backlog
          if (sealed.sealed > 0) {
            yield* Queue.offerAll(sealedNews, Array.from({ length: WRITERS }, () => undefined))
            continue
          }
          yield* Effect.sleep(CHECK_INTERVAL)
          // The pause just slept counts: the next batch due is looked at when it falls due, not a pause later.
          const rest = Duration.millis(Math.max(0, Math.min(1000, sealed.nextDueMs ?? 1000) - Duration.toMillis(CHECK_INTERVAL)))
          yield* Queue.take(wakeup).pipe(Effect.timeout(rest), Effect.ignore)
        } else yield* Effect.sleep(CHECK_INTERVAL)
      }
    })

    /** The flusher: the sealer and the writers, side by side. */
    const flush = Effect.all([sealer, ...Array.from({ length: WRITERS }, (_, i) => writer(i))], { concurrency: "unbounded", discard: true })

    const run = flush.pipe(
      Effect.tapError((error) => Effect.logWarning("ETL flusher failed; restarting").pipe(Effect.annotateLogs("error", error.message))),
      Effect.retry(Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("60 seconds")))),
      Effect.catchAllDefect((defect) => Effect.logError("ETL flusher crashed; restarting", defect).pipe(Effect.zipRight(Effect.sleep("5 seconds")))),
      Effect.forever
    )

    /** Proves write access: a small object written and removed. */
    const probe: Effect.Effect<void, StorageError> = store.put("_wearflow/write-check", new TextEncoder().encode("ok\n"), "text/plain").pipe(
      Effect.zipRight(store.remove("_wearflow/write-check"))
    )

    return { stage, wake, unstageUser, run, probe, publishSchemas } as const
  })
