import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Polling: one row per connection of a provider that is polled — where its next poll starts
 * (`cursor`, the provider's own), when it last polled and next will, what went wrong last.
 * `poll_id` names the durable poll execution serving the connection: relinking gives a new
 * one (and a fresh cursor), so the poll of the earlier link ends; so does a poll handing over
 * to a fresh execution (its journal kept short). `round_started_at` is set while a round runs.
 *
 * `sync_pages`: the pages a round committed, keyed by (connection, round, page, digest of
 * the body): a round tried again from the same cursor stores a page again only when it
 * changed, so nothing fetched is lost and nothing is stored twice. No foreign key to the
 * inbox: retention deletes processed rows. Neither table holds health values.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create table connection_sync (
    connection_id uuid primary key references provider_connections(id) on delete cascade,
    poll_id uuid not null,
    cursor text,
    rounds integer not null default 0,
    failures integer not null default 0,
    last_poll_at timestamptz,
    next_poll_at timestamptz,
    last_error text,
    round_started_at timestamptz,
    started_at timestamptz,
    ended_at timestamptz,
    end_reason text
  )`
  yield* sql`create index connection_sync_to_start on connection_sync (connection_id) where started_at is null`
  yield* sql`create table sync_pages (
    connection_id uuid not null references provider_connections(id) on delete cascade,
    round integer not null,
    page integer not null,
    digest bytea not null,
    inbox_id bigint,
    committed_at timestamptz not null default now(),
    primary key (connection_id, round, page, digest)
  )`
})
