import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * PING pulls (pulled bodies are inbox rows derived from a PING item), lookup of OAuth 1.0a
 * users by token, activity files, connect-flow sessions, token refresh bookkeeping, and
 * samples of every shape (intervals, blood-pressure pairs).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // A pulled body remembers the PING item it came from: pulling twice stores it once.
  yield* sql`alter table inbox add column source_inbox_id bigint references inbox(id), add column source_index integer`
  yield* sql`create unique index inbox_by_source on inbox (source_inbox_id, source_index) where source_inbox_id is not null`
  // OAuth 1.0a notifications name users by access token; tokens are stored encrypted, so a
  // SHA-256 of the token is kept for lookup.
  yield* sql`alter table provider_connections
    add column access_token_hash bytea,
    add column auth_version text,
    add column refresh_token_expires_at timestamptz,
    add column last_error text`
  yield* sql`create index provider_connections_by_token on provider_connections (provider, access_token_hash) where access_token_hash is not null`
  yield* sql`create table activity_files (
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    summary_id text not null,
    activity_id text,
    file_type text not null,
    content_type text not null,
    location text not null,
    size_bytes bigint not null,
    sha256 bytea not null,
    downloaded_at timestamptz not null default now(),
    primary key (user_id, provider, summary_id)
  )`
  // An OAuth flow in progress: started from a link URL, finished by the provider's callback.
  yield* sql`create table link_sessions (
    id text primary key,
    team_id uuid not null references teams(id) on delete cascade,
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    redirect_url text,
    code_verifier bytea,
    request_token text,
    request_token_secret bytea,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    completed_at timestamptz
  )`
  yield* sql`create index link_sessions_by_request_token on link_sessions (request_token) where request_token is not null`
  // Interval samples carry start/end, blood pressure a pair instead of one value: the
  // fields beyond timestamp/value/unit/offset/type are kept as they are.
  yield* sql`alter table samples alter column value drop not null, add column fields jsonb`
})
