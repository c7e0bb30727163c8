import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Backfills: one chain of history requests per connection, its windows (one request each)
 * with what the provider answered and what data arrived for them, the historical events
 * already sent, and how far back each provider type turned out to allow.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // Relinking starts a new connection generation: the provider forgets what was requested before.
  yield* sql`alter table provider_connections add column linked_at timestamptz not null default now()`
  yield* sql`create table backfills (
    id uuid primary key,
    team_id uuid not null,
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    linked_at timestamptz not null,
    origin text not null,
    status text not null default 'scheduled',
    days integer,
    types text[],
    range_end timestamptz not null,
    error text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    ended_at timestamptz
  )`
  yield* sql`create index backfills_by_user on backfills (user_id, provider, created_at desc)`
  yield* sql`create unique index backfills_one_active on backfills (user_id, provider) where status in ('scheduled', 'running')`
  yield* sql`create table backfill_windows (
    id uuid primary key,
    backfill_id uuid not null references backfills(id) on delete cascade,
    user_id uuid not null,
    seq integer not null,
    type text not null,
    resource text not null,
    keys text[] not null,
    range_start timestamptz not null,
    range_end timestamptz not null,
    tracked_until timestamptz not null,
    status text not null default 'scheduled',
    attempts integer not null default 0,
    narrowed boolean not null default false,
    requested_at timestamptz,
    completed_at timestamptz,
    completion text,
    data_from timestamptz,
    data_until timestamptz,
    items integer not null default 0,
    last_data_at timestamptz,
    covered_at timestamptz,
    error text,
    unique (backfill_id, seq)
  )`
  yield* sql`create index backfill_windows_listening on backfill_windows (user_id) where status = 'requested'`
  yield* sql`create table backfill_notices (
    backfill_id uuid not null references backfills(id) on delete cascade,
    resource text not null,
    primary key (backfill_id, resource)
  )`
  yield* sql`create table backfill_earliest (
    provider text not null,
    type text not null,
    max_days integer not null,
    learned_at timestamptz not null default now(),
    primary key (provider, type)
  )`
})
