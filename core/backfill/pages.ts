/**
 * History a provider fetched itself (pull-style backfill): its pages go to the inbox as
 * notification bodies, each once, and the window they answer is done when all of them are
 * processed — the data is then stored, so `historical.data.*` can truthfully go out.
 */
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { type Inbox, INGEST_MAX_ATTEMPTS, ingestJobId } from "../pipeline/inbox.ts"
import { type HistoryPages, PageCommitError } from "../provider.ts"

/** Ingest job ids are this followed by the inbox row's id. */
const INGEST_JOB_PREFIX = ingestJobId(0).slice(0, -1)

export interface PageTarget {
  readonly provider: string
  readonly windowId: string
  readonly providerUserId: string
}

/**
 * The `pages` a provider's history request commits to. A page's key (window, page) is
 * claimed in the transaction that stores its inbox row and ingest job, so a page committed
 * before (by an earlier attempt at the same window) is not stored again. The first page
 * marks the window as asked for, so the items it brings count as history from the start.
 */
export const historyPages = (sql: SqlClient.SqlClient, inbox: Inbox, target: PageTarget): HistoryPages => ({
  providerUserId: target.providerUserId,
  commit: (page, content) =>
    Effect.gen(function* () {
      const claimed = yield* sql`
        insert into backfill_pages (window_id, page) values (${target.windowId}, ${page})
        on conflict do nothing returning page`
      if (claimed.length === 0) return false
      const inboxId = yield* inbox.commit({ provider: target.provider, kind: content.kind, body: content.body, itemCount: content.itemCount })
      yield* sql`update backfill_pages set inbox_id = ${inboxId} where window_id = ${target.windowId} and page = ${page}`
      yield* sql`update backfill_windows set requested_at = coalesce(requested_at, now()), items = items + ${content.itemCount}
                 where id = ${target.windowId}`
      return true
    }).pipe(
      sql.withTransaction,
      Effect.mapError(() => new PageCommitError({ message: `page ${page} of the history could not be stored` }))
    )
})

/**
 * How many of a fetched window's pages are still to be processed, and how many of those
 * never will be (their ingest job, or one of their parts', used up its attempts); undefined
 * once the window no longer waits for them (cancelled, failed, or already complete). A page
 * whose inbox row is gone was processed (retention deletes only processed rows).
 */
export const pagesWaiting = (sql: SqlClient.SqlClient, windowId: string) =>
  sql<{ status: string; waiting: number; unprocessable: number }>`
    select w.status,
      count(i.id) filter (where i.processed_at is null)::int as waiting,
      count(i.id) filter (where i.processed_at is null and exists (
        select 1 from inbox r join ingest_queue q on q.id = ${INGEST_JOB_PREFIX} || r.id
        where (r.id = i.id or r.part_of = i.id) and not q.completed and q.attempts >= ${INGEST_MAX_ATTEMPTS}
      ))::int as unprocessable
    from backfill_windows w
    left join backfill_pages p on p.window_id = w.id
    left join inbox i on i.id = p.inbox_id
    where w.id = ${windowId}
    group by w.status`.pipe(
    Effect.map(([row]) => (row?.status === "fetched" ? { waiting: row.waiting, unprocessable: row.unprocessable } : undefined))
  )
