/**
 * Backfills: fetching a connection's history by chaining provider history requests, and
 * saying truthfully when each resource's history has arrived. This service is what operators
 * and the chain use: an operator's request and cancel (here), the chain's steps (steps.ts) and
 * plan (rows.ts). Data arriving for open requests is arrivals.ts, behind the ingest worker's hook.
 *
 * State lives in Postgres (backfills, backfill_windows); the chain itself is a durable
 * workflow (workflows.ts, chain.ts).
 */
import { WorkflowEngine } from "@effect/workflow"
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { Connections } from "../connections/connections.ts"
import { Links } from "../connections/links.ts"
import { Inbox } from "../pipeline/inbox.ts"
import { Providers } from "../provider.ts"
import { Accounts } from "../tenancy/accounts.ts"
import { BackfillConflict, BackfillNotFound, type BackfillRequest, makeRows, type PlannedRange } from "./rows.ts"
import { BackfillSettings } from "./settings.ts"
import { cancelWindows, scheduleBackfill } from "./schedule.ts"
import { makeSteps } from "./steps.ts"
import { BackfillChain } from "./workflows.ts"

export {
  BackfillConflict,
  BackfillNotFound,
  type BackfillRequest,
  type BackfillRow,
  iso,
  type PlannedRange,
  type RequestedRange,
  type WindowRow
} from "./rows.ts"
export { layerHistoryObserver } from "./arrivals.ts"

export class Backfills extends Effect.Service<Backfills>()("wearflow/Backfills", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers
    const accounts = yield* Accounts
    const settings = yield* BackfillSettings
    const rows = makeRows({ sql, providers, settings })
    const { plan } = rows
    const steps = makeSteps({ sql, settings, accounts, links: yield* Links, connections: yield* Connections, inbox: yield* Inbox, rows })

    /** Schedules and plans a backfill an operator asked for; explains what cannot be asked again. */
    const requestFor = Effect.fn("Backfills.requestFor")(function* (teamId: string, userId: string, providerId: string, input: BackfillRequest) {
      yield* accounts.getUser(teamId, userId)
      const provider = providers.get(providerId)
      if (provider?.backfill === undefined) return yield* new BackfillNotFound({ message: "this provider is not loaded, or cannot backfill history" })
      const unknown = (input.types ?? []).filter((t) => !provider.backfill!.types.some((bt) => bt.type === t))
      if (unknown.length > 0) {
        // The known types, never the caller's: error bodies do not echo input.
        const known = provider.backfill.types.map((bt) => bt.type).join(", ")
        return yield* new BackfillNotFound({ message: `${unknown.length} of the requested types ${unknown.length === 1 ? "is" : "are"} not ${provider.name} backfill types (${known})` })
      }
      const [connection] = yield* sql<{ id: string }>`
        select id from provider_connections where user_id = ${userId} and provider = ${providerId} and status = 'active'`
      if (!connection) return yield* new BackfillNotFound({ message: `the user has no active ${provider.name} connection` })
      const [active] = yield* sql<{ id: string }>`select id from backfills where user_id = ${userId} and provider = ${providerId} and status in ('scheduled', 'running')`
      if (active) {
        return yield* new BackfillConflict({ message: "a backfill is already running for this connection; cancel it first", alreadyRequested: [] })
      }
      const id = yield* scheduleBackfill(sql, { teamId, userId, provider: providerId, origin: "request", days: input.days, types: input.types })
      const planned = yield* plan(id)
      if (planned.windows.length === 0) {
        // Nothing new to ask for: the provider would only answer 409. Leave no empty backfill behind.
        yield* sql`delete from backfills where id = ${id}`
        return yield* new BackfillConflict({
          message: `${provider.name} was already asked for all of this history since the user connected; ` +
            `it does not send a range twice — the user must reconnect for it to be requested again`,
          alreadyRequested: planned.alreadyRequested
        })
      }
      return {
        backfillId: id,
        planned: planned.windows.map((w): PlannedRange => ({ type: w.type, resource: w.resource, range_start: w.range_start.toISOString(), range_end: w.range_end.toISOString() })),
        alreadyRequested: planned.alreadyRequested
      }
    }, sql.withTransaction)

    /** Cancels the user's running backfill: its windows stop; data already on its way is still processed. */
    const cancel = Effect.fn("Backfills.cancel")(function* (teamId: string, userId: string, providerId: string) {
      yield* accounts.getUser(teamId, userId)
      const rows = yield* sql<{ id: string }>`
        update backfills set status = 'cancelled', ended_at = now(), error = 'cancelled'
        where team_id = ${teamId} and user_id = ${userId} and provider = ${providerId} and status in ('scheduled', 'running')
        returning id`
      if (rows.length === 0) return Option.none<string>()
      yield* cancelWindows(sql, rows[0]!.id, "cancelled")
      return Option.some(rows[0]!.id)
    }, sql.withTransaction)

    /** Backfills recorded but not yet running (their start was lost to a crash). */
    const scheduled = sql<{ id: string }>`select id from backfills where status = 'scheduled' order by created_at`.pipe(
      Effect.map((rows) => rows.map((r) => r.id))
    )

    return { plan, ...steps, requestFor, cancel, scheduled } as const
  })
}) {}

/** Starts (or re-attaches to) a backfill's chain; idempotent. */
export const startChain = (backfillId: string): Effect.Effect<void, never, WorkflowEngine.WorkflowEngine> =>
  BackfillChain.execute({ backfillId }, { discard: true }).pipe(Effect.asVoid)

/** Stops a backfill's chain now (its state was already marked cancelled). */
export const interruptChain = (backfillId: string) =>
  Effect.flatMap(BackfillChain.executionId({ backfillId }), (executionId) => BackfillChain.interrupt(executionId))
