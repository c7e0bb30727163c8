/**
 * The ETL sink's own tables, migrated under the app's migration lock with a migrations table
 * of their own: the plugin owns its schema.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { withMigrationLock } from "@wearflow/core/storage/database"
import { Effect } from "effect"

const stagingAndBatches = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // Events waiting for a file: references to the outbox, not copies. `batch_id` is set when a
  // batch is sealed; the row goes when the batch's files and manifest are written.
  yield* sql`create table etl_pending (
    position bigint primary key,
    resource text not null,
    records integer not null,
    bytes integer not null,
    staged_at timestamptz not null default now(),
    batch_id bigint
  )`
  yield* sql`create index etl_pending_open on etl_pending (resource, position) where batch_id is null`
  yield* sql`create index etl_pending_by_batch on etl_pending (batch_id) where batch_id is not null`
  // A sealed batch's content and name never change: writing it again overwrites the same objects.
  yield* sql`create table etl_batches (
    id bigint generated always as identity primary key,
    resource text not null,
    format text not null,
    events integer not null,
    records integer not null,
    status text not null default 'sealed' check (status in ('sealed', 'written')),
    sealed_at timestamptz not null default now(),
    written_at timestamptz,
    attempts integer not null default 0,
    last_error text,
    data_bytes bigint
  )`
  yield* sql`create index etl_batches_sealed on etl_batches (id) where status = 'sealed'`
})

export const migrate = withMigrationLock(
  Migrator.make({})({
    loader: Migrator.fromRecord({ "0001_staging_batches": stagingAndBatches }),
    table: "etl_migrations"
  })
)
