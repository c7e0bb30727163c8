/** The handler of the ETL sink's read route (Api.ts): the team's staged events and batches, from Postgres. */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { SqlClient } from "@effect/sql"
import { ApiId, CurrentTeam, unavailable, within } from "@wearflow/core/http"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Effect } from "effect"
import { EtlApi } from "./Api.ts"
import { config } from "./settings.ts"

const EtlHttpApi = HttpApi.make(ApiId).add(EtlApi)

export const EtlLive = HttpApiBuilder.group(EtlHttpApi, "etl", (handlers) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { enabled } = yield* config
    const deadline = within(yield* DatabaseWait)
    return handlers.handle("batches", () =>
      Effect.gen(function* () {
        if (!enabled) return { enabled, staged: [], batches: [] }
        const { teamId } = yield* CurrentTeam
        const [staged, batches] = yield* Effect.all([
          sql<{ resource: string; events: number; records: number; oldest_staged_at: Date }>`
            select p.resource, count(*)::int as events, coalesce(sum(e.records), 0)::int as records, min(p.staged_at) as oldest_staged_at
            from etl_pending p
            cross join lateral unnest(p.positions, p.event_records) as e(position, records)
            join outbox o on o.position = e.position
            where o.team_id = ${teamId}
              and p.seq > coalesce((select s.through_seq from etl_sealed s where s.resource = p.resource), 0)
            group by p.resource order by p.resource`,
          sql<{ id: string; resource: string; format: string; status: "sealed" | "failed"; sealed_at: Date; attempts: number; failing: boolean; events: number; records: number }>`
            select b.id::text as id, b.resource, b.format, b.status, b.sealed_at, b.attempts, b.last_error is not null as failing,
                   count(*)::int as events, coalesce(sum(e.records), 0)::int as records
            from etl_batches b
            join etl_pending p on p.resource = b.resource and p.seq between b.first_seq and b.last_seq
            cross join lateral unnest(p.positions, p.event_records) as e(position, records)
            join outbox o on o.position = e.position
            where b.status in ('sealed', 'failed') and o.team_id = ${teamId}
            group by b.id order by b.id desc limit 100`
        ], { concurrency: 2 })
        return {
          enabled,
          staged: staged.map((s) => ({ ...s, oldest_staged_at: s.oldest_staged_at.toISOString() })),
          batches: batches.map((b) => ({ ...b, sealed_at: b.sealed_at.toISOString() }))
        }
      }).pipe(Effect.mapError(() => unavailable()), deadline))
  })
)
