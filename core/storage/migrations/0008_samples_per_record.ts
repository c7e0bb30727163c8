import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A sample belongs to the provider record it came from: two records with a value at the same
 * instant (a provider may send one epoch per activity type per 15-minute slice) keep both values,
 * where the old key (user, resource, provider, source type, time) let the last one overwrite
 * the other. A record's revision still replaces its own samples. Existing rows are unique
 * under the new key, since each had one record at its old key.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table samples drop constraint samples_pkey`
  yield* sql`alter table samples add primary key (record_id, ts)`
  // The primary key now finds a record's samples; range reads go by user, resource and time.
  yield* sql`drop index samples_by_record`
  yield* sql`create index samples_by_user_resource_ts on samples (user_id, resource, ts)`
})
