/**
 * The sync floor's side of the ConnectionSync hook (core/connections/links.ts): a new link of
 * a polled provider's connection records its poll in the linking transaction — a new poll id
 * and a fresh cursor, so the poll of an earlier link ends; the starter (poll.ts) starts it.
 * A lifecycle item saying the data changed wakes the polls of its connections.
 */
import type { SqlClient } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow"
import { Effect, Layer } from "effect"
import { ConnectionSync } from "../connections/links.ts"
import { wake } from "./workflows.ts"

export const layer = Layer.effect(
  ConnectionSync,
  Effect.map(Effect.context<SqlClient.SqlClient | WorkflowEngine.WorkflowEngine>(), (context) =>
    ConnectionSync.of({
      schedule: (sql, { connectionId, provider }) =>
        provider.sync === undefined
          ? Effect.void
          : sql`insert into connection_sync (connection_id, poll_id, next_poll_at) values (${connectionId}, gen_random_uuid(), now())
                on conflict (connection_id) do update set poll_id = excluded.poll_id, cursor = null, failures = 0, last_error = null,
                  next_poll_at = now(), round_started_at = null, started_at = null, ended_at = null, end_reason = null`.pipe(Effect.asVoid),
      wake: (connectionIds) => Effect.forEach(connectionIds, wake, { discard: true }).pipe(Effect.provide(context))
    }))
)
