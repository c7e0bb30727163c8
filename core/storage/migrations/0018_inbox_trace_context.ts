import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The W3C traceparent of the request that stored a body (core/tracing.ts), so the worker that
 * processes it and the sinks that deliver its events continue the same trace. Null when the
 * server exports no traces.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table inbox add column trace_context text`
})
