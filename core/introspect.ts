/**
 * Introspection of what each user's connections delivered, Junction's way: per user, provider
 * and resource, the last attempt, the oldest and newest data, and how many items were stored
 * and sent on (records for summaries, samples for timeseries). Team-scoped; users are paged
 * by id. Counts and times only: no health values.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { pageOf } from "./paging.ts"

export interface ResourceStats {
  readonly last_attempt: { readonly timestamp: string; readonly status: "success" | "failure" } | null
  readonly oldest_data: string | null
  readonly newest_data: string | null
  readonly sent_count: number
}

export interface UserResources {
  readonly user_id: string
  readonly client_user_id: string
  /** provider slug → resource → its statistics. */
  readonly provider: Record<string, Record<string, ResourceStats>>
}

interface StatsRow {
  readonly user_id: string
  readonly provider: string
  readonly resource: string
  readonly oldest: Date | null
  readonly newest: Date | null
  readonly sent: number
  readonly written: Date | null
}

interface ConnectionRow {
  readonly user_id: string
  readonly provider: string
  readonly last_poll_at: Date | null
  readonly poll_error: string | null
  readonly last_error: string | null
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString())

export class ResourceIntrospection extends Effect.Service<ResourceIntrospection>()("wearflow/ResourceIntrospection", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /** A page of the team's users with a connection or data (from `provider` when given), after the user `after`. */
    const resources = Effect.fn("ResourceIntrospection.resources")(function* (
      teamId: string,
      filter: { readonly userId?: string | undefined; readonly provider?: string | undefined },
      page: { readonly limit: number; readonly after?: string | undefined }
    ) {
      const ofProvider = (alias: string) => (filter.provider === undefined ? sql`` : sql`and ${sql(alias)}.provider = ${filter.provider}`)
      const users = yield* sql<{ id: string; client_user_id: string }>`
        select u.id, u.client_user_id from users u
        where u.team_id = ${teamId}
          ${filter.userId === undefined ? sql`` : sql`and u.id = ${filter.userId}`}
          ${page.after === undefined ? sql`` : sql`and u.id > ${page.after}`}
          and (exists (select 1 from provider_connections c where c.user_id = u.id ${ofProvider("c")})
               or exists (select 1 from records r where r.user_id = u.id ${ofProvider("r")}))
        order by u.id limit ${page.limit + 1}`
      const { items, next } = pageOf(users, page.limit, (u) => [u.id])
      if (items.length === 0) return { data: [] as Array<UserResources>, next }
      const ids = items.map((u) => u.id)
      const [records, samples, connections] = yield* Effect.all([
        sql<StatsRow>`
          select user_id, provider, resource, min(coalesce(start_at, calendar_date::timestamptz)) as oldest,
                 max(coalesce(start_at, calendar_date::timestamptz)) as newest, count(*)::int as sent, max(updated_at) as written
          from records r where r.user_id = any(${ids}::uuid[]) ${ofProvider("r")}
          group by user_id, provider, resource`,
        sql<StatsRow>`
          select user_id, provider, resource, min(ts) as oldest, max(ts) as newest, count(*)::int as sent, null::timestamptz as written
          from samples s where s.user_id = any(${ids}::uuid[]) ${ofProvider("s")}
          group by user_id, provider, resource`,
        sql<ConnectionRow>`
          select c.user_id, c.provider, s.last_poll_at, s.last_error as poll_error, c.last_error
          from provider_connections c left join connection_sync s on s.connection_id = c.id
          where c.user_id = any(${ids}::uuid[]) ${ofProvider("c")}`
      ], { concurrency: 3 })

      const byUser = new Map(items.map((u) => [u.id, { user_id: u.id, client_user_id: u.client_user_id, provider: {} as Record<string, Record<string, ResourceStats>> }]))
      const providerOf = (userId: string, provider: string) => (byUser.get(userId)!.provider[provider] ??= {})
      const polls = new Map(connections.map((c) => [`${c.user_id}/${c.provider}`, c]))
      for (const c of connections) providerOf(c.user_id, c.provider)
      // The provider's latest write for the user: the last attempt of its timeseries (samples are written with their record).
      const lastWrite = new Map<string, number>()
      for (const r of records) {
        const key = `${r.user_id}/${r.provider}`
        if (r.written) lastWrite.set(key, Math.max(lastWrite.get(key) ?? 0, r.written.getTime()))
      }
      const attempt = (userId: string, provider: string, written: number | undefined): ResourceStats["last_attempt"] => {
        const poll = polls.get(`${userId}/${provider}`)
        const polled = poll?.last_poll_at?.getTime()
        if (polled !== undefined && (written === undefined || polled >= written)) {
          return { timestamp: new Date(polled).toISOString(), status: poll!.poll_error === null ? "success" : "failure" }
        }
        return written === undefined ? null : { timestamp: new Date(written).toISOString(), status: "success" }
      }
      for (const row of [...records, ...samples]) {
        const written = row.written?.getTime() ?? lastWrite.get(`${row.user_id}/${row.provider}`)
        providerOf(row.user_id, row.provider)[row.resource] = {
          last_attempt: attempt(row.user_id, row.provider, written),
          oldest_data: iso(row.oldest),
          newest_data: iso(row.newest),
          sent_count: row.sent
        }
      }
      return { data: [...byUser.values()] as Array<UserResources>, next }
    })

    return { resources } as const
  })
}) {}
