import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Rate-limit budgets shared by every runner on the database (core/storage/rate-limiter-store.ts):
 * fixed-window counters and token buckets, one row per key. Token counts are JS numbers.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create table rate_limit_windows (
    key text primary key,
    count double precision not null,
    expires_at timestamptz not null
  )`
  yield* sql`create table rate_limit_buckets (
    key text primary key,
    tokens double precision not null,
    refilled_at timestamptz not null
  )`
})
