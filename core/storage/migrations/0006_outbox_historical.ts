import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Marks outbox events whose data answers a backfill request (history, not news), so each
 * sink can choose whether it receives them (Junction's push_historical_data).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table outbox add column historical boolean not null default false`
})
