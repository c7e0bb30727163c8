import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Marks outbox events whose data answers a backfill request (history, not news), so each
 * sink can choose whether it receives them (Junction's push_historical_data).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table outbox add column historical boolean not null default false`
  // Ingest asks, for each body, whether its items fall in one of the user's requested windows.
  yield* sql`create index backfill_windows_by_user on backfill_windows (user_id) where requested_at is not null`
})
