/**
 * Data arriving while history was asked for: which items answer an open request (their
 * events are historical), and windows whose data now reaches both of their ends, answered so
 * their chains move on. The ingest worker calls this through its HistoryObserver hook.
 */
import { SqlClient } from "@effect/sql"
import { WorkflowEngine } from "@effect/workflow"
import { Effect, Layer } from "effect"
import type { Recipient } from "../outbox.ts"
import { HistoryObserver } from "../pipeline/history.ts"
import type { NotificationItem, Provider } from "../provider.ts"
import { answerWindow } from "./workflows.ts"

export const makeArrivals = (sql: SqlClient.SqlClient, engine: WorkflowEngine.WorkflowEngine["Type"]) => {
  /**
   * The items that answer a backfill request: inside a window asked of the provider that
   * is open, or closed less than a day ago (late stragglers). Their events are historical.
   * A window being asked or asked again counts: the provider may have taken a request whose
   * answer is still on its way, or was lost.
   */
  const answering = Effect.fn("Arrivals.answering")(function* (
    provider: Provider,
    recipients: ReadonlyArray<Recipient>,
    items: ReadonlyArray<NotificationItem>
  ) {
    const history = provider.backfill
    const found = new Set<NotificationItem>()
    if (history === undefined || recipients.length === 0) return found
    const timed = items.flatMap((item) => {
      const time = history.itemTime(item)
      return time === undefined ? [] : [{ item, time }]
    })
    if (timed.length === 0) return found
    const hits = yield* sql<{ i: number }>`
      select distinct a.i from unnest(${timed.map((t) => t.item.key)}::text[], ${timed.map((t) => t.time.toISOString())}::timestamptz[])
        with ordinality as a(key, t, i)
      join backfill_windows w on a.key = any(w.keys) and a.t >= w.range_start and a.t < w.tracked_until
      where w.user_id in ${sql.in(recipients.map((r) => r.userId))}
        and (w.requested_at is not null or w.status in ('sending', 'retrying')) and (w.completed_at is null or w.completed_at > now() - interval '1 day')`
    for (const hit of hits) found.add(timed[Number(hit.i) - 1]!.item)
    return found
  })

  /**
   * Notes that data arrived for `recipients` (one provider user's items from one body).
   * Windows waiting for that data (asked, being asked, or being asked again: the provider may
   * have taken a request whose answer is on its way or was lost) record its span; a window whose data now reaches both
   * of its ends is answered, so its chain moves on without waiting for the quiet period.
   */
  const recordArrivals = Effect.fn("Arrivals.recordArrivals")(function* (
    provider: Provider,
    recipients: ReadonlyArray<Recipient>,
    items: ReadonlyArray<NotificationItem>
  ) {
    const history = provider.backfill
    if (history === undefined || recipients.length === 0) return
    const keys: Array<string> = []
    const times: Array<string> = []
    for (const item of items) {
      const time = history.itemTime(item)
      if (time === undefined) continue
      keys.push(item.key)
      times.push(time.toISOString())
    }
    if (keys.length === 0) return
    const answered = yield* sql<{ id: string; backfill_id: string; newly_covered: boolean }>`
      with arrived as (select * from unnest(${keys}::text[], ${times}::timestamptz[]) as a(key, t)),
      hits as (
        select w.id, min(a.t) as lo, max(a.t) as hi, count(*)::int as n
        from backfill_windows w join arrived a on a.key = any(w.keys) and a.t >= w.range_start and a.t < w.tracked_until
        where w.user_id in ${sql.in(recipients.map((r) => r.userId))} and w.status in ('requested', 'sending', 'retrying')
          -- A window whose history Wearflow fetches itself counts its pages as they are committed (pages.ts).
          and not exists (select 1 from backfill_pages p where p.window_id = w.id)
        group by w.id
      )
      update backfill_windows w set
        data_from = least(w.data_from, hits.lo),
        data_until = greatest(w.data_until, hits.hi),
        items = w.items + hits.n,
        last_data_at = now(),
        covered_at = coalesce(w.covered_at, case
          when least(w.data_from, hits.lo) < w.range_start + interval '1 day'
           and greatest(w.data_until, hits.hi) >= w.tracked_until - interval '1 day' then now() end)
      from hits, backfill_windows before
      where w.id = hits.id and before.id = hits.id
      returning w.id, w.backfill_id, (before.covered_at is null and w.covered_at is not null) as newly_covered`.pipe(
      Effect.map((rows) => rows.filter((r) => r.newly_covered))
    )
    yield* Effect.forEach(answered, (w) => answerWindow(w.backfill_id, w.id, "covered"), { discard: true }).pipe(
      Effect.provideService(WorkflowEngine.WorkflowEngine, engine)
    )
  })

  return { answering, recordArrivals } as const
}

/** The ingest worker's history hook (pipeline/history.ts). */
export const layerHistoryObserver = Layer.effect(
  HistoryObserver,
  Effect.gen(function* () {
    return makeArrivals(yield* SqlClient.SqlClient, yield* WorkflowEngine.WorkflowEngine)
  })
)
