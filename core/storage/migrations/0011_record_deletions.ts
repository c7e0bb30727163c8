import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Deletions: the provider records a user deleted, by (user, provider, source id), with the
 * newest inbox item that deleted them. The records themselves are removed; this row keeps a
 * record from an older inbox item (a replay, a late retry, a parked body replayed after the
 * deletion) from coming back, as `records.inbox_id` keeps an older delivery from overwriting a
 * newer one. A newer item re-creates the record. It holds no health values.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create table record_deletions (
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    source_id text not null,
    inbox_id bigint not null,
    deleted_at timestamptz not null default now(),
    primary key (user_id, provider, source_id)
  )`
  // A deletion finds every resource's record of one source id.
  yield* sql`create index records_by_source on records (user_id, provider, source_id)`
})
