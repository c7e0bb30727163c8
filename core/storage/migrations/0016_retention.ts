import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Retention (core/pipeline/retention.ts) finds polled pages past their age by the time they
 * were committed: the one growing table it sweeps that had no index leading there. (The
 * cluster's message table gets its index from the retention job itself: the cluster creates
 * that table when the engine starts, after migrations.)
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create index sync_pages_by_committed_at on sync_pages (committed_at)`
})
