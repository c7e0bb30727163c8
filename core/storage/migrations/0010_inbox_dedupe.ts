import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Pages of history a provider fetched itself, each stored in the inbox once: the key
 * (window, page) — the window being one type's range of one backfill — is claimed in the
 * transaction that commits the page's inbox row and ingest job, so a request tried again
 * stores nothing it stored before. The window is done once every page's row is processed.
 * No foreign key to the inbox: retention deletes processed rows, and a page without its row
 * was processed.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create table backfill_pages (
    window_id uuid not null references backfill_windows(id) on delete cascade,
    page integer not null,
    inbox_id bigint,
    committed_at timestamptz not null default now(),
    primary key (window_id, page)
  )`
})
