import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Providers own their connection state: one encrypted value per connection (`provider_state`)
 * in place of the secret columns core kept for one provider's older flow. Those columns are
 * encrypted, so their values move at start-up, with the key (core/legacy-credentials.ts);
 * this migration only adds the new places and moves what needs no key:
 * - a connection's aliases (routing keys derived from a secret, kept as digests) get a table
 *   of their own, starting with the digest the connection kept in `access_token_hash`;
 * - token refreshes find due connections by their refresh token, whatever the flow;
 * - a connect flow's session is found by the key its callback carries (`session_key`) and
 *   keeps the flow's secret (`pending_secret`), for flows whose callback has no `state`;
 * - an activity file names the record it belongs to by the provider's source id.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table provider_connections add column provider_state bytea`
  yield* sql`create table connection_aliases (
    digest bytea not null,
    connection_id uuid not null references provider_connections(id) on delete cascade,
    primary key (digest, connection_id)
  )`
  yield* sql`create index connection_aliases_by_connection on connection_aliases (connection_id)`
  yield* sql`insert into connection_aliases (digest, connection_id)
    select access_token_hash, id from provider_connections where access_token_hash is not null`
  yield* sql`drop index provider_connections_by_token`
  yield* sql`alter table provider_connections drop column access_token_hash`
  yield* sql`drop index provider_connections_refresh_due`
  yield* sql`create index provider_connections_refresh_due on provider_connections (access_token_expires_at)
    where status = 'active' and refresh_token is not null`
  yield* sql`alter table link_sessions rename column request_token to session_key`
  yield* sql`alter table link_sessions rename column request_token_secret to pending_secret`
  yield* sql`alter index link_sessions_by_request_token rename to link_sessions_by_session_key`
  yield* sql`alter table activity_files rename column summary_id to source_id`
})
