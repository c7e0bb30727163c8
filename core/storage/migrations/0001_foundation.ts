import { Effect } from "effect"
import { SqlClient } from "@effect/sql"

/**
 * Teams, users and provider connections; the raw inbox; normalized records and samples;
 * the event outbox and the cursors sinks keep in it.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create table teams (
    id uuid primary key,
    name text not null,
    created_at timestamptz not null default now()
  )`
  // Only a SHA-256 of each key is kept; a lookup by hash compares in constant time per byte of input.
  yield* sql`create table api_keys (
    key_hash bytea primary key,
    team_id uuid not null references teams(id) on delete cascade,
    label text not null,
    created_at timestamptz not null default now()
  )`
  yield* sql`create table users (
    id uuid primary key,
    team_id uuid not null references teams(id) on delete cascade,
    client_user_id text not null,
    created_at timestamptz not null default now(),
    unique (team_id, client_user_id)
  )`
  // Token columns hold AES-256-GCM ciphertext (core/crypto.ts), never plaintext.
  yield* sql`create table provider_connections (
    id uuid primary key,
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    provider_user_id text not null,
    status text not null default 'active',
    scopes text[] not null default '{}',
    access_token bytea,
    refresh_token bytea,
    token_secret bytea,
    access_token_expires_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (user_id, provider)
  )`
  yield* sql`create index provider_connections_by_provider_user on provider_connections (provider, provider_user_id)`
  // Every notification body exactly as received, committed before the provider gets its 200.
  yield* sql`create table inbox (
    id bigint generated always as identity primary key,
    provider text not null,
    kind text not null,
    received_at timestamptz not null default now(),
    body text not null,
    item_count integer not null,
    processed_at timestamptz,
    outcome jsonb
  )`
  // Items for provider users nobody has linked yet: replayed when the user is linked.
  yield* sql`create table unlinked_notifications (
    provider text not null,
    provider_user_id text not null,
    inbox_id bigint not null references inbox(id) on delete cascade,
    item_count integer not null,
    received_at timestamptz not null default now(),
    primary key (provider, provider_user_id, inbox_id)
  )`
  yield* sql`create table records (
    id uuid primary key,
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    resource text not null,
    source_id text not null,
    calendar_date date,
    start_at timestamptz,
    data jsonb not null,
    content_hash bytea not null,
    inbox_id bigint not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (user_id, provider, resource, source_id)
  )`
  yield* sql`create index records_by_user_resource_date on records (user_id, resource, calendar_date)`
  yield* sql`create index records_by_user_resource_start on records (user_id, resource, start_at)`
  // A sample is identified by (resource, provider, source type, timestamp); the latest value wins.
  yield* sql`create table samples (
    user_id uuid not null references users(id) on delete cascade,
    resource text not null,
    provider text not null,
    source_type text not null,
    ts timestamptz not null,
    value double precision not null,
    unit text not null,
    timezone_offset integer,
    record_id uuid not null,
    primary key (user_id, resource, provider, source_type, ts)
  )`
  // Readers consume only rows whose transaction id is below every running transaction
  // (pg_snapshot_xmin), ordered by (tx, position): no event is skipped when transactions
  // commit out of order.
  yield* sql`create table outbox (
    position bigint generated always as identity primary key,
    tx xid8 not null default pg_current_xact_id(),
    event_id uuid not null unique,
    event_type text not null,
    team_id uuid not null,
    user_id uuid not null,
    record_id uuid,
    payload jsonb not null,
    created_at timestamptz not null default now()
  )`
  yield* sql`create index outbox_by_tx_position on outbox (tx, position)`
  yield* sql`create table sink_cursors (
    sink_id text primary key,
    tx xid8 not null default '0',
    position bigint not null default 0,
    updated_at timestamptz not null default now()
  )`
  // Batches a sink rejected for good (SinkError with retryable = false).
  yield* sql`create table sink_dead_letters (
    sink_id text not null,
    event_id uuid not null,
    position bigint not null,
    error text not null,
    created_at timestamptz not null default now(),
    primary key (sink_id, event_id)
  )`
})
