/**
 * The webhooks sink's own tables, migrated under the app's migration lock with a migrations
 * table of their own: the plugin owns its schema.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { withMigrationLock } from "@wearflow/core/storage/database"
import { Effect } from "effect"

const endpointsAndMessages = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // secret / previous_secret / headers are encrypted with the app's TokenCipher.
  yield* sql`create table webhook_endpoints (
    id uuid primary key,
    team_id uuid not null references teams(id) on delete cascade,
    url text not null,
    description text not null default '',
    rate_limit int check (rate_limit > 0),
    disabled boolean not null default false,
    disabled_reason text,
    filter_types text[] not null default '{}',
    signature_headers text not null default 'svix' check (signature_headers in ('svix', 'webhook')),
    fifo boolean not null default false,
    headers bytea,
    secret bytea not null,
    previous_secret bytea,
    previous_secret_until timestamptz,
    failing_since timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
  )`
  yield* sql`create index webhook_endpoints_by_team on webhook_endpoints (team_id, created_at)`
  // One row per (endpoint, event): its id is the svix-id every attempt carries.
  yield* sql`create table webhook_messages (
    id text primary key,
    seq bigint generated always as identity,
    endpoint_id uuid not null references webhook_endpoints(id) on delete cascade,
    team_id uuid not null,
    event_id uuid,
    event_type text not null,
    user_id uuid,
    payload jsonb,
    fifo boolean not null default false,
    status text not null default 'pending' check (status in ('pending', 'sending', 'retrying', 'delivered', 'failed')),
    attempts int not null default 0,
    run int not null default 0,
    lease_until timestamptz not null default '-infinity',
    leased_by text,
    last_error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    delivered_at timestamptz
  )`
  // Claims read only unclaimed messages; a claimed one is 'sending' under a lease until recorded.
  yield* sql`create index webhook_messages_pending on webhook_messages (seq) where status = 'pending'`
  yield* sql`create index webhook_messages_sending on webhook_messages (lease_until) where status = 'sending'`
  yield* sql`create index webhook_messages_by_endpoint on webhook_messages (endpoint_id, seq desc)`
  yield* sql`create index webhook_messages_fifo on webhook_messages (endpoint_id, user_id, seq) where fifo and status in ('pending', 'sending', 'retrying')`
  yield* sql`create table webhook_attempts (
    message_id text not null references webhook_messages(id) on delete cascade,
    attempt int not null,
    trigger text not null check (trigger in ('first', 'retry', 'manual')),
    attempted_at timestamptz not null,
    status text not null check (status in ('success', 'failure')),
    response_status int,
    latency_ms int not null,
    response_excerpt text,
    error text,
    primary key (message_id, attempt)
  )`
  // Operational events: an endpoint disabled, a message's attempts exhausted.
  yield* sql`create table webhook_notices (
    id bigint generated always as identity primary key,
    team_id uuid not null,
    endpoint_id uuid not null,
    message_id text,
    kind text not null,
    detail text not null,
    created_at timestamptz not null default now()
  )`
})

/**
 * Fewer writes per delivery: a first attempt that succeeds (nearly all of them) is kept in
 * its message row instead of a row of its own. Failed and later attempts stay rows, in
 * `webhook_attempt_log`; `webhook_attempts` becomes the view of both, so every attempt is read
 * in one place as before.
 */
const firstAttemptInMessage = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table webhook_messages
    add column first_attempted_at timestamptz,
    add column first_response_status int,
    add column first_latency_ms int,
    add column first_response_excerpt text`
  yield* sql`alter table webhook_attempts rename to webhook_attempt_log`
  yield* sql`create view webhook_attempts as
    select message_id, attempt, trigger, attempted_at, status, response_status, latency_ms, response_excerpt, error
    from webhook_attempt_log
    union all
    select id, 1, 'first', first_attempted_at, 'success', first_response_status, first_latency_ms, first_response_excerpt, null
    from webhook_messages where first_attempted_at is not null`
})

/**
 * Messages lose their foreign key to endpoints: its check ran once per message row (a look-up
 * and a row lock of the same endpoint, a thousand times per fan-out of a thousand events) and
 * cost about a quarter of a message's insert. Nothing is lost: the fan-out reads its endpoints
 * `for key share` (once per endpoint), so an endpoint cannot be deleted under it, and an
 * endpoint's deletion still takes its messages, once per statement through the rows it deleted.
 */
const messagesWithoutEndpointKey = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table webhook_messages drop constraint webhook_messages_endpoint_id_fkey`
  yield* sql.unsafe(`
    create function delete_webhook_messages_of_deleted_endpoints() returns trigger language plpgsql as $$
    begin
      delete from webhook_messages where endpoint_id in (select id from deleted_endpoints);
      return null;
    end $$`)
  yield* sql`
    create trigger webhook_messages_of_deleted_endpoints after delete on webhook_endpoints
    referencing old table as deleted_endpoints for each statement execute function delete_webhook_messages_of_deleted_endpoints()`
})

export const migrate = withMigrationLock(
  Migrator.make({})({
    loader: Migrator.fromRecord({
      "0001_endpoints_messages": endpointsAndMessages,
      "0002_first_attempt_in_message": firstAttemptInMessage,
      "0003_messages_without_endpoint_key": messagesWithoutEndpointKey
    }),
    table: "webhook_migrations"
  })
)
