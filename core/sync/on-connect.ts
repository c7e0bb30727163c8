/**
 * A new link of a polled provider's connection records its poll in the linking transaction —
 * a new link id and a fresh cursor, so the poll of an earlier link ends — the sync floor's
 * side of the ConnectionSync hook (core/connections/links.ts). The starter (poll.ts) starts it.
 */
import { Effect, Layer } from "effect"
import { ConnectionSync } from "../connections/links.ts"

export const layer = Layer.succeed(ConnectionSync, {
  schedule: (sql, { connectionId, provider }) =>
    provider.sync === undefined
      ? Effect.void
      : sql`insert into connection_sync (connection_id, poll_id, next_poll_at) values (${connectionId}, gen_random_uuid(), now())
            on conflict (connection_id) do update set poll_id = excluded.poll_id, cursor = null, failures = 0, last_error = null,
              next_poll_at = now(), round_started_at = null, started_at = null, ended_at = null, end_reason = null`.pipe(Effect.asVoid)
})
