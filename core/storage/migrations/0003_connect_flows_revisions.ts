import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Connect flows remember the OAuth version they started with; refreshes find due tokens fast;
 * a connection moved to OAuth 2.0 keeps its OAuth 1.0a pair while the provider honours it; a
 * revised sample batch finds the samples it replaces.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table link_sessions add column auth_version text not null default 'oauth2'`
  yield* sql`create index provider_connections_refresh_due on provider_connections (access_token_expires_at)
    where status = 'active' and auth_version = 'oauth2' and refresh_token is not null`
  yield* sql`alter table provider_connections
    add column oauth1_token bytea,
    add column oauth1_token_secret bytea,
    add column oauth1_valid_until timestamptz`
  yield* sql`create index samples_by_record on samples (record_id)`
})
