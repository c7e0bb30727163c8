/**
 * `wearflow sync status`: each polled connection's poll, read from the database (so it works
 * while the server is down): its state, cursor, last and next poll, and last error.
 */
import { type ConnectionSyncStatus, SyncStatus } from "@wearflow/core/sync/status"
import { Effect } from "effect"
import { EnvironmentError, loadConfig, syncStatusLayer } from "./environment.ts"
import { fail, write } from "./io.ts"

const COLUMNS = ["user", "provider", "state", "rounds", "last poll", "next poll", "cursor", "last error"] as const

const rowOf = (s: ConnectionSyncStatus) => [
  s.user_id,
  s.provider,
  s.state === "ended" && s.end_reason !== null ? `ended: ${s.end_reason}` : s.state,
  String(s.rounds),
  s.last_poll_at ?? "-",
  s.next_poll_at ?? "-",
  s.cursor ?? "-",
  s.last_error ?? "-"
]

/** One line a connection, in aligned columns. */
export const statusText = (polls: ReadonlyArray<ConnectionSyncStatus>) => {
  const rows = [[...COLUMNS], ...polls.map(rowOf)]
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n") + "\n"
}

/** `wearflow sync status`: exit 0 (also when there is nothing to show). */
export const status = (options: { readonly userId: string | undefined; readonly json: boolean }) =>
  Effect.gen(function* () {
    const config = yield* loadConfig
    return yield* Effect.gen(function* () {
      const polls = yield* Effect.flatMap(SyncStatus, (s) => s.list(undefined, options.userId))
      if (polls.length === 0) yield* fail(`no polled connections found${options.userId ? ` (user ${options.userId})` : ""}`)
      if (options.json) yield* write(process.stdout, JSON.stringify({ data: polls }, null, 2) + "\n")
      else if (polls.length > 0) yield* write(process.stdout, statusText(polls))
      return 0
    }).pipe(
      Effect.provide(syncStatusLayer(config)),
      Effect.catchTag("SqlError", (e) => new EnvironmentError({ message: `the database is unusable: ${e.message}` }))
    )
  })
