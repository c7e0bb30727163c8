/**
 * Data arriving while history was asked for: which items answer an open request (their
 * events are historical), and windows whose data now reaches both of their ends, answered so
 * their chains move on. The ingest worker calls this through its HistoryObserver hook.
 */
import { SqlClient } from "@effect/sql"
import { WorkflowEngine } from "@effect/workflow"
import { Effect, Layer } from "effect"
import { type Arrival, HistoryObserver, type ProviderUserArrival } from "../pipeline/history.ts"
import type { NotificationItem } from "../provider.ts"
import { answerWindow } from "./workflows.ts"

/** One row per recipient and timed item of every arrival: whose window the item may fall in, and where it came from. */
const timedRows = (arrivals: ReadonlyArray<Arrival>) => {
  const rows = { userId: [] as Array<string>, key: [] as Array<string>, time: [] as Array<string>, arrival: [] as Array<number>, item: [] as Array<number> }
  arrivals.forEach(({ provider, recipients, items }, a) => {
    const history = provider.backfill
    if (history === undefined || recipients.length === 0) return
    items.forEach((item, i) => {
      const time = history.itemTime(item)
      if (time === undefined) return
      for (const recipient of recipients) {
        rows.userId.push(recipient.userId)
        rows.key.push(item.key)
        rows.time.push(time.toISOString())
        rows.arrival.push(a)
        rows.item.push(i)
      }
    })
  })
  return rows
}

export const makeArrivals = (sql: SqlClient.SqlClient, engine: WorkflowEngine.WorkflowEngine["Type"]) => {
  /**
   * The items that answer a backfill request: inside a window asked of the provider that
   * is open, or closed less than a day ago (late stragglers). Their events are historical.
   * A window being asked or asked again counts: the provider may have taken a request whose
   * answer is still on its way, or was lost. An item answers only its own recipients' windows:
   * the arrivals of many bodies and users go in one statement.
   */
  const answering = Effect.fn("Arrivals.answering")(function* (arrivals: ReadonlyArray<Arrival>) {
    const found = arrivals.map(() => new Set<NotificationItem>())
    const rows = timedRows(arrivals)
    if (rows.key.length === 0) return found
    const hits = yield* sql<{ arrival: number; item: number }>`
      select distinct a.arrival, a.item
      from unnest(${rows.userId}::uuid[], ${rows.key}::text[], ${rows.time}::timestamptz[], ${rows.arrival}::int[], ${rows.item}::int[])
        as a(user_id, key, t, arrival, item)
      join backfill_windows w on w.user_id = a.user_id and a.key = any(w.keys) and a.t >= w.range_start and a.t < w.tracked_until
      where (w.requested_at is not null or w.status in ('sending', 'retrying')) and (w.completed_at is null or w.completed_at > now() - interval '1 day')`
    for (const hit of hits) found[hit.arrival]!.add(arrivals[hit.arrival]!.items[hit.item]!)
    return found
  })

  /**
   * `answering` for arrivals known by provider user id: their recipients are the users of the
   * provider user's active connections (as Links.recipientsOrPark finds them), joined here, so
   * the ingest worker asks this alongside its recipients' look-up rather than after it.
   */
  const answeringByProviderUser = Effect.fn("Arrivals.answeringByProviderUser")(function* (arrivals: ReadonlyArray<ProviderUserArrival>) {
    const found = arrivals.map(() => new Set<NotificationItem>())
    const rows = { provider: [] as Array<string>, providerUserId: [] as Array<string>, key: [] as Array<string>, time: [] as Array<string>, arrival: [] as Array<number>, item: [] as Array<number> }
    arrivals.forEach(({ provider, providerUserId, items }, a) => {
      const history = provider.backfill
      if (history === undefined) return
      items.forEach((item, i) => {
        const time = history.itemTime(item)
        if (time === undefined) return
        rows.provider.push(provider.id)
        rows.providerUserId.push(providerUserId)
        rows.key.push(item.key)
        rows.time.push(time.toISOString())
        rows.arrival.push(a)
        rows.item.push(i)
      })
    })
    if (rows.key.length === 0) return found
    const hits = yield* sql<{ arrival: number; item: number }>`
      select distinct a.arrival, a.item
      from unnest(${rows.provider}::text[], ${rows.providerUserId}::text[], ${rows.key}::text[], ${rows.time}::timestamptz[], ${rows.arrival}::int[], ${rows.item}::int[])
        as a(provider, provider_user_id, key, t, arrival, item)
      join provider_connections c on c.provider = a.provider and c.provider_user_id = a.provider_user_id and c.status = 'active'
      join users u on u.id = c.user_id and u.deleted_at is null
      join backfill_windows w on w.user_id = u.id and a.key = any(w.keys) and a.t >= w.range_start and a.t < w.tracked_until
      where (w.requested_at is not null or w.status in ('sending', 'retrying')) and (w.completed_at is null or w.completed_at > now() - interval '1 day')`
    for (const hit of hits) found[hit.arrival]!.add(arrivals[hit.arrival]!.items[hit.item]!)
    return found
  })

  /**
   * Notes that data arrived: per arrival, one provider user's items from one body, for its
   * recipients. Windows waiting for that data (asked, being asked, or being asked again: the
   * provider may have taken a request whose answer is on its way or was lost) record its span;
   * a window whose data now reaches both of its ends is answered, so its chain moves on
   * without waiting for the quiet period. An item counts only for its own recipients' windows,
   * once per window, however many arrivals go in the statement.
   */
  const recordArrivals = Effect.fn("Arrivals.recordArrivals")(function* (arrivals: ReadonlyArray<Arrival>) {
    const rows = timedRows(arrivals)
    if (rows.key.length === 0) return
    const answered = yield* sql<{ id: string; backfill_id: string; newly_covered: boolean }>`
      with arrived as (select * from unnest(${rows.userId}::uuid[], ${rows.key}::text[], ${rows.time}::timestamptz[]) as a(user_id, key, t)),
      hits as (
        select w.id, min(a.t) as lo, max(a.t) as hi, count(*)::int as n
        from backfill_windows w join arrived a on w.user_id = a.user_id and a.key = any(w.keys) and a.t >= w.range_start and a.t < w.tracked_until
        where w.status in ('requested', 'sending', 'retrying')
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

  return { answering, answeringByProviderUser, recordArrivals } as const
}

/** The ingest worker's history hook (pipeline/history.ts). */
export const layerHistoryObserver = Layer.effect(
  HistoryObserver,
  Effect.gen(function* () {
    return makeArrivals(yield* SqlClient.SqlClient, yield* WorkflowEngine.WorkflowEngine)
  })
)
