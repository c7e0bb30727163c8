/**
 * What operators ask of backfills: per user and provider, the latest backfill's status per
 * resource, in Junction's historical-pull shape. Read-only, so the command line can use it
 * without joining the workflow cluster.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { providerInfo } from "../connections/links.ts"
import { Providers } from "../provider.ts"
import { type BackfillRow, iso, type WindowRow } from "./backfills.ts"
import { DONE } from "./schedule.ts"

/** Junction's historical-pull status of one resource. */
export interface HistoricalPull {
  readonly status: "scheduled" | "in_progress" | "success" | "failure" | "retrying"
  readonly range_start: string | null
  readonly range_end: string | null
  readonly timeline: { readonly scheduled_at: string; readonly started_at: string | null; readonly ended_at: string | null }
  readonly days_with_data: number
  readonly windows: { readonly total: number; readonly done: number }
  readonly error_details: string | null
}

export interface BackfillView {
  readonly backfill_id: string
  readonly user_id: string
  readonly client_user_id: string
  readonly provider: { readonly name: string; readonly slug: string; readonly logo: null }
  readonly status: string
  readonly origin: string
  readonly created_at: string
  readonly ended_at: string | null
  readonly historical_pulls: Readonly<Record<string, HistoricalPull>>
}

export class BackfillStatus extends Effect.Service<BackfillStatus>()("wearflow/BackfillStatus", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers

    /** Days with stored records per resource, each within its own range: one query per backfill. */
    const daysWithData = (backfill: BackfillRow, ranges: ReadonlyArray<{ resource: string; start: Date; end: Date }>) =>
      ranges.length === 0
        ? Effect.succeed(new Map<string, number>())
        : sql<{ resource: string; n: number }>`
            select r.resource, count(distinct coalesce(x.calendar_date, (x.start_at at time zone 'UTC')::date))::int as n
            from unnest(${ranges.map((r) => r.resource)}::text[], ${ranges.map((r) => r.start.toISOString())}::timestamptz[],
                        ${ranges.map((r) => r.end.toISOString())}::timestamptz[]) as r(resource, range_start, range_end)
            join records x on x.user_id = ${backfill.user_id} and x.provider = ${backfill.provider} and x.resource = r.resource
              and x.start_at >= r.range_start and x.start_at < r.range_end
            group by r.resource`.pipe(Effect.map((rows) => new Map(rows.map((r) => [r.resource, r.n]))))

    /** The earliest or latest of the dates present, ISO; null when none is. */
    const edge = (dates: ReadonlyArray<Date | null>, pick: (...ms: Array<number>) => number) => {
      const present = dates.filter((d): d is Date => d !== null)
      return present.length ? new Date(pick(...present.map((d) => d.getTime()))).toISOString() : null
    }

    /** Junction's per-resource view of one backfill. */
    const viewOf = (backfill: BackfillRow & { client_user_id: string }) =>
      Effect.gen(function* () {
        const windows = yield* sql<WindowRow>`select * from backfill_windows where backfill_id = ${backfill.id} order by seq`
        const provider = providers.get(backfill.provider)
        const resources = [...new Set(windows.map((w) => w.resource))].map((resource) => {
          const mine = windows.filter((w) => w.resource === resource)
          const fetched = mine.filter((w) => w.status !== "skipped" && w.status !== "cancelled")
          const range = fetched.length
            ? { resource, start: new Date(Math.min(...fetched.map((w) => w.range_start.getTime()))), end: new Date(Math.max(...fetched.map((w) => w.range_end.getTime()))) }
            : undefined
          return { resource, mine, range }
        })
        const days = yield* daysWithData(backfill, resources.flatMap((r) => (r.range ? [r.range] : [])))
        const pulls: Record<string, HistoricalPull> = {}
        for (const { resource, mine, range } of resources) {
          const done = mine.filter((w) => (DONE as ReadonlyArray<string>).includes(w.status)).length
          const failed = mine.find((w) => w.status === "failed" || w.status === "cancelled")
          const status: HistoricalPull["status"] = failed
            ? "failure"
            : done === mine.length
            ? "success"
            : mine.some((w) => w.status === "retrying")
            ? "retrying"
            : mine.some((w) => w.status !== "scheduled")
            ? "in_progress"
            : "scheduled"
          pulls[resource] = {
            status,
            range_start: iso(range?.start ?? null),
            range_end: iso(range?.end ?? null),
            timeline: {
              scheduled_at: backfill.created_at.toISOString(),
              started_at: edge(mine.map((w) => w.requested_at), Math.min),
              ended_at: status === "success" || status === "failure" ? edge(mine.map((w) => w.completed_at), Math.max) : null
            },
            days_with_data: days.get(resource) ?? 0,
            windows: { total: mine.length, done },
            error_details: failed?.error ?? null
          }
        }
        return {
          backfill_id: backfill.id,
          user_id: backfill.user_id,
          client_user_id: backfill.client_user_id,
          provider: provider ? providerInfo(provider) : { name: backfill.provider, slug: backfill.provider, logo: null },
          status: backfill.status,
          origin: backfill.origin,
          created_at: backfill.created_at.toISOString(),
          ended_at: iso(backfill.ended_at),
          historical_pulls: pulls
        } satisfies BackfillView
      })

    /**
     * The latest backfill of each user (and provider) in the team, or of one user, in (user,
     * provider) order; with a page, at most `limit` after the (user, provider) `after`.
     */
    const status = Effect.fn("BackfillStatus.status")(function* (
      teamId: string | undefined,
      filter: { readonly userId?: string | undefined; readonly provider?: string | undefined },
      page?: { readonly limit: number; readonly after?: readonly [userId: string, provider: string] | undefined }
    ) {
      const rows = yield* sql<BackfillRow & { client_user_id: string }>`
        select distinct on (b.user_id, b.provider) b.*, u.client_user_id
        from backfills b join users u on u.id = b.user_id
        where u.deleted_at is null and ${teamId === undefined ? sql`true` : sql`b.team_id = ${teamId}`}
          and ${filter.userId === undefined ? sql`true` : sql`b.user_id = ${filter.userId}`}
          and ${filter.provider === undefined ? sql`true` : sql`b.provider = ${filter.provider}`}
          ${page?.after === undefined ? sql`` : sql`and (b.user_id, b.provider) > (${page.after[0]}::uuid, ${page.after[1]})`}
        order by b.user_id, b.provider, b.created_at desc
        ${page === undefined ? sql`` : sql`limit ${page.limit}`}`
      return yield* Effect.forEach(rows, viewOf)
    })

    return { status } as const
  })
}) {}
