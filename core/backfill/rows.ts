/**
 * A backfill's rows and what every part of the backfills reads from them: its provider, its
 * windows planned once (the enabled types, as deep as asked and as the provider allows,
 * minus what was already requested for this connection).
 */
import type { SqlClient } from "@effect/sql"
import { Data, Effect } from "effect"
import { randomUUID } from "node:crypto"
import type { Provider } from "../provider.ts"
import { DAY_MS, planWindows } from "./plan.ts"
import type { BackfillSettings } from "./settings.ts"

export class BackfillNotFound extends Data.TaggedError("BackfillNotFound")<{ readonly message: string }> {}
/** The request cannot be honoured as asked: another backfill is running, or nothing new can be asked for. */
export class BackfillConflict extends Data.TaggedError("BackfillConflict")<{
  readonly message: string
  readonly alreadyRequested: ReadonlyArray<RequestedRange>
}> {}

export interface RequestedRange {
  readonly type: string
  readonly resource: string
  readonly range_start: string
  readonly range_end: string
  readonly requested_at: string | null
}

export interface PlannedRange {
  readonly type: string
  readonly resource: string
  readonly range_start: string
  readonly range_end: string
}

export interface BackfillRequest {
  readonly days?: number | undefined
  readonly types?: ReadonlyArray<string> | undefined
}

export interface BackfillRow {
  readonly id: string
  readonly team_id: string
  readonly user_id: string
  readonly provider: string
  readonly linked_at: Date
  readonly origin: string
  readonly status: string
  readonly days: number | null
  readonly types: Array<string> | null
  readonly range_end: Date
  readonly created_at: Date
  readonly started_at: Date | null
  readonly ended_at: Date | null
}

export interface WindowRow {
  readonly id: string
  readonly backfill_id: string
  readonly seq: number
  readonly type: string
  readonly resource: string
  readonly range_start: Date
  readonly range_end: Date
  readonly status: string
  readonly attempts: number
  readonly narrowed: boolean
  readonly requested_at: Date | null
  readonly completed_at: Date | null
  readonly items: number
  readonly error: string | null
}

export const iso = (date: Date | null) => (date === null ? null : date.toISOString())

export interface BackfillDeps {
  readonly sql: SqlClient.SqlClient
  readonly providers: ReadonlyMap<string, Provider>
  readonly settings: BackfillSettings["Type"]
}

export const makeRows = ({ providers, settings, sql }: BackfillDeps) => {
  const backfillOf = (provider: Provider) =>
    provider.backfill === undefined ? Effect.die(new Error(`provider ${provider.id} has no backfill`)) : Effect.succeed(provider.backfill)

  const providerOf = (id: string) => {
    const provider = providers.get(id)
    return provider ? Effect.succeed(provider) : Effect.die(new Error(`no provider plugin loaded for ${id}`))
  }

  const loadBackfill = (id: string) =>
    sql<BackfillRow>`select * from backfills where id = ${id}`.pipe(
      Effect.flatMap((rows) => (rows[0] ? Effect.succeed(rows[0]) : Effect.die(new Error(`backfill ${id} vanished`))))
    )

  /** Ranges the provider already accepted for this connection (it answers 409 to them again). */
  const requestedBefore = (backfill: BackfillRow) =>
    sql<{ type: string; resource: string; range_start: Date; range_end: Date; requested_at: Date | null }>`
      select w.type, w.resource, w.range_start, w.range_end, w.requested_at
      from backfill_windows w join backfills b on b.id = w.backfill_id
      join backfills this on this.id = ${backfill.id}
      where b.user_id = this.user_id and b.provider = this.provider and b.linked_at = this.linked_at
        and b.id <> this.id and w.requested_at is not null
      order by w.requested_at`

  /**
   * The backfill's windows, planned once: the enabled types, as deep as asked and as the
   * provider allows, minus what was already requested for this connection.
   */
  const plan = Effect.fn("Backfills.plan")(function* (backfillId: string) {
    const backfill = yield* loadBackfill(backfillId)
    const existing = yield* sql<{ id: string; type: string; resource: string; range_start: Date; range_end: Date }>`
      select id, type, resource, range_start, range_end from backfill_windows where backfill_id = ${backfillId} order by seq`
    if (existing.length > 0) return { provider: backfill.provider, windows: existing, alreadyRequested: [] as ReadonlyArray<RequestedRange> }
    const provider = yield* providerOf(backfill.provider)
    const backfill_ = yield* backfillOf(provider)
    const wanted = backfill.types ?? settings.types
    const types = backfill_.types.filter((t) => wanted === undefined || wanted.includes(t.type))
    const learned = yield* sql<{ type: string; max_days: number }>`select type, max_days from backfill_earliest where provider = ${provider.id}`
    const days = backfill.days ?? settings.days
    const before = yield* requestedBefore(backfill)
    const requested = new Map<string, Array<{ start: Date; end: Date }>>()
    for (const b of before) requested.set(b.type, [...(requested.get(b.type) ?? []), { start: b.range_start, end: b.range_end }])
    const fresh = planWindows({
      types,
      end: backfill.range_end,
      days,
      maxDays: new Map(learned.map((l) => [l.type, l.max_days])),
      requested
    })
    const from = backfill.range_end.getTime() - days * DAY_MS
    const alreadyRequested = before
      .filter((b) => types.some((t) => t.type === b.type) && b.range_end.getTime() > from)
      .map((b): RequestedRange => ({ type: b.type, resource: b.resource, range_start: b.range_start.toISOString(), range_end: b.range_end.toISOString(), requested_at: iso(b.requested_at) }))
    const rows = fresh.map((w, seq) => ({
      id: randomUUID(),
      backfill_id: backfillId,
      user_id: backfill.user_id,
      seq,
      type: w.type,
      resource: w.resource,
      keys: [...w.keys],
      range_start: w.start,
      range_end: w.end,
      tracked_until: w.trackedUntil
    }))
    if (rows.length > 0) yield* sql`insert into backfill_windows ${sql.insert(rows)}`
    return {
      provider: backfill.provider,
      windows: rows.map((r) => ({ id: r.id, type: r.type, resource: r.resource, range_start: r.range_start, range_end: r.range_end })),
      alreadyRequested
    }
  }, sql.withTransaction)

  return { backfillOf, providerOf, loadBackfill, requestedBefore, plan } as const
}

export type Rows = ReturnType<typeof makeRows>
