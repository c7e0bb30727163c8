/**
 * The ETL sink's own tables, migrated under the app's migration lock with a migrations table
 * of their own: the plugin owns its schema.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { withMigrationLock } from "@wearflow/core/storage/database"
import { Effect } from "effect"

const stagingAndBatches = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // Events waiting for a file: references to the outbox, not copies, numbered in the order
  // they were staged (the runner stages one batch at a time, so later stagings number higher).
  // A batch is a range of one resource's numbers; its rows go once its files are written.
  yield* sql`create table etl_pending (
    resource text not null,
    seq bigint generated always as identity,
    position bigint not null,
    records integer not null,
    bytes integer not null,
    staged_at timestamptz not null default now(),
    primary key (resource, seq)
  )`
  // A sealed batch's range and name never change: writing it again overwrites the same objects.
  // 'failed': rows its schema refuses (kept, with their staged events, for an operator).
  yield* sql`create table etl_batches (
    id bigint generated always as identity primary key,
    resource text not null,
    format text not null,
    first_seq bigint not null,
    last_seq bigint not null,
    events integer not null,
    records integer not null,
    status text not null default 'sealed' check (status in ('sealed', 'written', 'failed')),
    sealed_at timestamptz not null default now(),
    written_at timestamptz,
    attempts integer not null default 0,
    last_error text,
    data_bytes bigint
  )`
  yield* sql`create index etl_batches_sealed on etl_batches (id) where status = 'sealed'`
  // How far each resource's staged events are sealed into batches.
  yield* sql`create table etl_sealed (
    resource text primary key,
    through_seq bigint not null
  )`
})

/**
 * One staging row per runner batch and resource (a chunk of its events, cut so a chunk alone
 * stays within the batch limits) instead of one per event: staging 2,000 events was 2,000
 * inserted rows, and every check summed and every write listed them again. A chunk keeps its
 * events' outbox positions in staging order and each one's record count; batches are still
 * ranges of `seq`. Rows staged before keep their number as chunks of one event.
 */
const chunkedStaging = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table etl_pending
    add column positions bigint[],
    add column event_records integer[],
    add column events integer,
    alter column bytes type bigint`
  yield* sql`update etl_pending set positions = array[position], event_records = array[records], events = 1`
  yield* sql`alter table etl_pending
    drop column position,
    alter column positions set not null,
    alter column event_records set not null,
    alter column events set not null`
  // A chunk's arrays are written once and read once: compressing them cost more than they save.
  yield* sql`alter table etl_pending alter column positions set storage external, alter column event_records set storage external`
})

/**
 * Each chunk keeps what its batch holds once it is staged (its fill), so staging reads the open
 * batch's fill from the last chunk instead of summing every open chunk at each round. Rows
 * staged before get their own size, and each resource's last open chunk the open batch's sum.
 */
const chunkFill = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table etl_pending add column fill_records bigint, add column fill_bytes bigint`
  yield* sql`update etl_pending set fill_records = records, fill_bytes = bytes`
  yield* sql`
    update etl_pending p set fill_records = o.records, fill_bytes = o.bytes
    from (
      select p.resource, max(p.seq) as seq, sum(p.records) as records, sum(p.bytes) as bytes
      from etl_pending p left join etl_sealed s on s.resource = p.resource
      where p.seq > coalesce(s.through_seq, 0) group by p.resource
    ) o
    where p.resource = o.resource and p.seq = o.seq`
  yield* sql`alter table etl_pending alter column fill_records set not null, alter column fill_bytes set not null`
})

/** The migrations in their order, by name. */
export const migrations = { "0001_staging_batches": stagingAndBatches, "0002_chunked_staging": chunkedStaging, "0003_chunk_fill": chunkFill }

export const migrate = withMigrationLock(Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: "etl_migrations" }))
