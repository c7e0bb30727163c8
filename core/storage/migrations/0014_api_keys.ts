import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * API keys an operator manages: each gets an id to list, revoke and rotate it by (never its
 * hash), when it was last used, an optional expiry (a rotation sets the old key's), a scope
 * (`read_only` keys may only read), an admin flag (admin keys manage teams and keys) and when
 * it was revoked. The bootstrap key (WEARFLOW_API_KEY) becomes its team's admin key.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table api_keys
    add column id uuid not null default gen_random_uuid(),
    add column last_used_at timestamptz,
    add column expires_at timestamptz,
    add column scope text not null default 'full' check (scope in ('full', 'read_only')),
    add column admin boolean not null default false,
    add column revoked_at timestamptz`
  yield* sql`alter table api_keys add constraint api_keys_id_unique unique (id)`
  // A team's keys are listed oldest first, paged by (created_at, id).
  yield* sql`create index api_keys_by_team on api_keys (team_id, created_at, id)`
  yield* sql`create index teams_by_creation on teams (created_at, id)`
  yield* sql`update api_keys set admin = true where label = 'bootstrap'`
})
