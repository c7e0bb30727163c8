import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Deleting users: a deleted user is hidden at once (`deleted_at`) and erased, with every row
 * of theirs, once `erase_after` (the end of the grace period) has passed; until then
 * `POST /v2/user/undo_delete` restores them. Listing a team's users pages by (created_at, id).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table users add column deleted_at timestamptz, add column erase_after timestamptz`
  yield* sql`create index users_to_erase on users (erase_after) where erase_after is not null`
  yield* sql`create index users_by_team_page on users (team_id, created_at, id)`
})
