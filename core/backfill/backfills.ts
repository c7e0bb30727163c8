/**
 * Backfills: fetching a connection's history by chaining provider history requests, and
 * saying truthfully when each resource's history has arrived.
 *
 * State lives in Postgres (backfills, backfill_windows); the chain itself is a durable
 * workflow (workflows.ts, chain.ts) whose steps call the activities here. A window is
 * complete when data reaching both of its ends arrived (then a short settle), or when no
 * data came for a quiet period after the request or its last data. Only then does
 * `historical.data.<resource>.created` go out, with the range actually covered.
 */
import { WorkflowEngine } from "@effect/workflow"
import { SqlClient } from "@effect/sql"
import { Data, Duration, Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { Accounts } from "../tenancy/accounts.ts"
import { Links } from "../connections/links.ts"
import { Connections } from "../connections/connections.ts"
import type { BackfillAnswer, NotificationItem, Provider } from "../provider.ts"
import { Providers } from "../provider.ts"
import { HistoryObserver } from "../pipeline/history.ts"
import { Inbox } from "../pipeline/inbox.ts"
import { appendEvent, type Recipient } from "../outbox.ts"
import { retryWhileTransient } from "../storage/errors.ts"
import { historyPages } from "./pages.ts"
import { DAY_MS, planWindows } from "./plan.ts"
import { BackfillSettings } from "./settings.ts"
import { cancelWindows, DONE, FINAL, scheduleBackfill } from "./schedule.ts"
import { answerWindow, BackfillChain, type Step, type WindowAnswer } from "./workflows.ts"

const MAX_UNAVAILABLE_ATTEMPTS = 8
const MAX_ATTEMPTS = 30
const MAX_BACKOFF = Duration.minutes(10)

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

/** Database outages inside an activity are waited out (ten minutes) rather than failing the chain. */
const retryTransient = retryWhileTransient("10 minutes")

export class Backfills extends Effect.Service<Backfills>()("wearflow/Backfills", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers
    const connections = yield* Connections
    const accounts = yield* Accounts
    const links = yield* Links
    const settings = yield* BackfillSettings
    const engine = yield* WorkflowEngine.WorkflowEngine
    const inbox = yield* Inbox

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

    // Users are deleted with their backfills, so the user is always there.
    const recipientOf = (backfill: BackfillRow) =>
      accounts.getUser(backfill.team_id, backfill.user_id).pipe(
        Effect.map((user): Recipient => ({ userId: user.user_id, teamId: user.team_id, clientUserId: user.client_user_id })),
        Effect.catchTag("UserNotFound", Effect.die)
      )

    /**
     * Sends `historical.data.<resource>.created` once every window of the resource is done —
     * complete, already requested, or before what the provider allows — with the range the
     * requests really covered. Nothing is sent for a resource with a failed window.
     */
    const noticeIfDone = (backfill: BackfillRow, resource: string) =>
      Effect.gen(function* () {
        const windows = yield* sql<{ status: string; range_start: Date; range_end: Date }>`
          select status, range_start, range_end from backfill_windows where backfill_id = ${backfill.id} and resource = ${resource}`
        if (windows.some((w) => !(DONE as ReadonlyArray<string>).includes(w.status))) return
        const fetched = windows.filter((w) => w.status !== "skipped")
        if (fetched.length === 0) return
        const noticed = yield* sql`insert into backfill_notices (backfill_id, resource) values (${backfill.id}, ${resource})
          on conflict do nothing returning resource`
        if (noticed.length === 0) return
        const recipient = yield* recipientOf(backfill)
        yield* appendEvent(sql, {
          event_type: `historical.data.${resource}.created`,
          data: {
            user_id: backfill.user_id,
            start_date: new Date(Math.min(...fetched.map((w) => w.range_start.getTime()))).toISOString(),
            end_date: new Date(Math.max(...fetched.map((w) => w.range_end.getTime()))).toISOString(),
            is_final: true,
            provider: backfill.provider
          },
          user_id: recipient.userId,
          client_user_id: recipient.clientUserId,
          team_id: recipient.teamId
        }, null)
      })

    const finishWindow = (backfill: BackfillRow, window: WindowRow, status: (typeof FINAL)[number], completion: string, error: string | null = null) =>
      sql`update backfill_windows set status = ${status}, completion = ${completion}, error = ${error}, completed_at = now()
          where id = ${window.id}`.pipe(Effect.zipRight(noticeIfDone(backfill, window.resource)))

    /** Stops the whole chain: every window not yet done fails with `reason`. */
    const stopChain = (backfill: BackfillRow, reason: string) =>
      Effect.gen(function* () {
        yield* sql`update backfill_windows set status = 'failed', error = ${reason}, completed_at = now()
                   where backfill_id = ${backfill.id} and status not in ${sql.in([...FINAL])}`
        yield* sql`update backfills set status = 'done', error = ${reason}, ended_at = now() where id = ${backfill.id} and status in ('scheduled', 'running')`
      })

    const backoff = (attempts: number) =>
      Duration.min(Duration.times(settings.retryBackoff, 2 ** Math.max(0, attempts - 1)), MAX_BACKOFF)

    /**
     * Checks a window is still to be requested and marks it `sending`, committed before the
     * provider is called: should the process die mid-request, the retry knows a 409 may
     * answer its own earlier request. So may a 409 to a retry: the provider may have taken
     * the earlier attempt and its answer been lost (a timeout, a dropped connection, a 5xx
     * after the fact). Such a window then waits for its data, or its quiet period.
     */
    const prepare = (windowId: string) =>
      Effect.gen(function* () {
        const [window] = yield* sql<WindowRow>`select * from backfill_windows where id = ${windowId} for update`
        if (!window) return { _tag: "Stop" } satisfies Step
        const backfill = yield* loadBackfill(window.backfill_id)
        if (backfill.status === "cancelled") return { _tag: "Stop" } satisfies Step
        if (window.status === "requested") return { _tag: "Waiting" } satisfies Step
        if (window.status === "fetched") return { _tag: "Fetched" } satisfies Step
        if ((FINAL as ReadonlyArray<string>).includes(window.status)) return { _tag: "Finished" } satisfies Step
        // The connection the backfill was made for: a relink since then starts a backfill of its own.
        const [connection] = yield* sql<{ provider_user_id: string }>`
          select c.provider_user_id from provider_connections c join backfills b on b.user_id = c.user_id and b.provider = c.provider
          where b.id = ${backfill.id} and c.status = 'active' and c.linked_at = b.linked_at`
        if (!connection) {
          yield* stopChain(backfill, "the connection is no longer active")
          return { _tag: "Stop" } satisfies Step
        }
        yield* sql`update backfill_windows set status = 'sending', attempts = attempts + 1 where id = ${window.id}`
        yield* sql`update backfills set status = 'running', started_at = coalesce(started_at, now()) where id = ${backfill.id} and status = 'scheduled'`
        const resent = window.status === "sending" || window.status === "retrying"
        return { _tag: "Send", window, backfill, providerUserId: connection.provider_user_id, resent } as const
      }).pipe(sql.withTransaction)

    /** One request for a window, and what the chain does next. */
    const request = Effect.fn("Backfills.request")(function* (windowId: string) {
      const prepared = yield* prepare(windowId)
      if (prepared._tag !== "Send") return prepared
      const { window, backfill, resent } = prepared
      const provider = yield* providerOf(backfill.provider)
      const history = yield* backfillOf(provider)
      const credentials = yield* connections.credentialsFor(provider.id, { _tag: "UserId", id: prepared.providerUserId }).pipe(
        Effect.catchTag("DecryptionError", () => Effect.succeed(undefined))
      )
      if (credentials === undefined) {
        yield* sql.withTransaction(stopChain(backfill, "the connection's tokens are gone"))
        return { _tag: "Stop" } satisfies Step
      }
      const attempts = window.attempts + 1
      const pages = historyPages(sql, inbox, { provider: provider.id, windowId: window.id, providerUserId: prepared.providerUserId })
      const answer = yield* history.request(credentials, window.type, { start: window.range_start, end: window.range_end }, pages)
      yield* Effect.logInfo("backfill request answered").pipe(
        Effect.annotateLogs({ backfill_id: backfill.id, type: window.type, answer: answer._tag, attempts })
      )
      return yield* sql.withTransaction(applyAnswer(backfill, window, provider, answer, attempts, resent))
    }, retryTransient)

    const applyAnswer = (backfill: BackfillRow, window: WindowRow, provider: Provider, answer: BackfillAnswer, attempts: number, resent: boolean) =>
      Effect.gen(function* () {
      const accepted = sql`update backfill_windows set status = 'requested', requested_at = now(), error = null where id = ${window.id}`
      // Cancelled while the provider answered: what it accepted is still on record (it will not send it twice).
      const [current] = yield* sql<{ status: string }>`select status from backfill_windows where id = ${window.id} for update`
      if (current?.status !== "sending") {
        if (answer._tag === "Accepted" || (answer._tag === "AlreadyRequested" && resent)) {
          yield* sql`update backfill_windows set requested_at = now() where id = ${window.id}`
        }
        return { _tag: "Stop" } satisfies Step
      }
      switch (answer._tag) {
        case "Accepted":
          yield* accepted
          return { _tag: "Waiting" } satisfies Step
        case "Fetched":
          // Its pages are in the inbox: the chain waits for them to be processed (pages.ts).
          yield* sql`update backfill_windows set status = 'fetched', requested_at = coalesce(requested_at, now()), error = null where id = ${window.id}`
          return { _tag: "Fetched" } satisfies Step
        case "AlreadyRequested":
          if (resent) {
            yield* accepted
            return { _tag: "Waiting" } satisfies Step
          }
          yield* finishWindow(backfill, window, "already_requested", "already_requested")
          return { _tag: "Finished" } satisfies Step
        case "TooFarBack": {
          // Remember how far back the provider allows, for this window's older siblings and later connections.
          const earliest = answer.earliest ?? new Date(backfill.linked_at.getTime() - 30 * DAY_MS)
          const maxDays = Math.max(0, Math.floor((Date.now() - earliest.getTime()) / DAY_MS))
          yield* sql`insert into backfill_earliest (provider, type, max_days) values (${provider.id}, ${window.type}, ${maxDays})
                     on conflict (provider, type) do update set max_days = least(backfill_earliest.max_days, excluded.max_days), learned_at = now()`
          const older = yield* sql<WindowRow>`
            update backfill_windows set status = 'skipped', completion = 'before_earliest', completed_at = now()
            where backfill_id = ${backfill.id} and type = ${window.type} and status = 'scheduled' and range_end <= ${earliest}
            returning *`
          // Providers take whole seconds: what is left must hold at least one, or nothing is left to ask for.
          const start = new Date(Math.ceil(earliest.getTime() / 1000) * 1000)
          if (start.getTime() >= Math.floor(window.range_end.getTime() / 1000) * 1000) {
            yield* finishWindow(backfill, window, "skipped", "before_earliest")
          } else if (window.narrowed) {
            yield* finishWindow(backfill, window, "failed", "failed", `refused as too far back even after narrowing: ${answer.message}`)
          } else {
            yield* sql`update backfill_windows set status = 'scheduled', narrowed = true, range_start = greatest(range_start, ${start}) where id = ${window.id}`
            return { _tag: "Retry", afterMillis: 0 } satisfies Step
          }
          if (older.length > 0) yield* noticeIfDone(backfill, window.resource)
          return { _tag: "Finished" } satisfies Step
        }
        case "Forbidden": {
          yield* stopChain(backfill, answer.message)
          const recipient = yield* recipientOf(backfill)
          const errorType = answer.status === 401 ? "provider_credential_error" : "required_scopes_not_granted"
          yield* links.connectionError(provider, recipient, errorType, `history request refused: ${answer.message}`, {
            status: answer.status,
            hint: provider.backfill?.forbiddenHint ?? "the user may not have granted access to their history"
          })
          return { _tag: "Stop" } satisfies Step
        }
        case "RateLimited":
        case "Unavailable": {
          const limit = answer._tag === "RateLimited" ? MAX_ATTEMPTS : MAX_UNAVAILABLE_ATTEMPTS
          const reason = answer._tag === "RateLimited" ? "rate limited by the provider" : answer.message
          if (attempts >= limit) {
            yield* finishWindow(backfill, window, "failed", "failed", `${reason}; gave up after ${attempts} attempts`)
            return { _tag: "Finished" } satisfies Step
          }
          yield* sql`update backfill_windows set status = 'retrying', error = ${reason} where id = ${window.id}`
          const after = answer._tag === "RateLimited" ? answer.retryAfter ?? settings.budgetWindow : backoff(attempts)
          return { _tag: "Retry", afterMillis: Duration.toMillis(after) } satisfies Step
        }
        case "Rejected":
          yield* finishWindow(backfill, window, "failed", "failed", answer.message)
          return { _tag: "Finished" } satisfies Step
      }
      })

    /** How long until the window's quiet period ends; undefined when it no longer waits. */
    const quietRemaining = Effect.fn("Backfills.quietRemaining")(function* (windowId: string) {
      const [row] = yield* sql<{ remaining: number | null }>`
        select case when status = 'requested'
          then extract(epoch from (greatest(requested_at, last_data_at) + ${Duration.toMillis(settings.quietPeriod)} * interval '1 millisecond' - now())) * 1000
        end::float8 as remaining
        from backfill_windows where id = ${windowId}`
      return row?.remaining ?? undefined
    }, retryTransient)

    /** The window's data is in (or it went quiet): mark it complete, send the resource's notice if it was the last. */
    const complete = Effect.fn("Backfills.complete")(function* (windowId: string, answer: WindowAnswer) {
      const [window] = yield* sql<WindowRow>`select * from backfill_windows where id = ${windowId}`
      if (!window || (window.status !== "requested" && window.status !== "fetched")) return
      const backfill = yield* loadBackfill(window.backfill_id)
      if (answer === "unprocessed") return yield* finishWindow(backfill, window, "failed", "failed", "some pages of the fetched history could not be processed")
      yield* finishWindow(backfill, window, "complete", answer === "fetched" ? "fetched" : answer === "covered" ? "data" : window.items > 0 ? "data_then_quiet" : "quiet")
    }, sql.withTransaction, retryTransient)

    const finish = Effect.fn("Backfills.finish")(function* (backfillId: string) {
      yield* sql`
        update backfills b set status = 'done', ended_at = now(),
          error = coalesce(b.error, (select w.error from backfill_windows w where w.backfill_id = b.id and w.status = 'failed' order by w.seq limit 1))
        where b.id = ${backfillId} and b.status in ('scheduled', 'running')`
    }, retryTransient)

    /** A chain that broke (a bug, or storage gone for longer than its retries) ends its backfill as failed, not forever running. */
    const abandon = Effect.fn("Backfills.abandon")(function* (backfillId: string, reason: string) {
      const backfill = yield* loadBackfill(backfillId)
      yield* stopChain(backfill, reason)
    }, sql.withTransaction, retryTransient)

    /**
     * The items that answer a backfill request: inside a window asked of the provider that
     * is open, or closed less than a day ago (late stragglers). Their events are historical.
     */
    const answering = Effect.fn("Backfills.answering")(function* (
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
          and w.requested_at is not null and (w.completed_at is null or w.completed_at > now() - interval '1 day')`
      for (const hit of hits) found.add(timed[Number(hit.i) - 1]!.item)
      return found
    })

    /**
     * Notes that data arrived for `recipients` (one provider user's items from one body).
     * Windows waiting for that data record its span; a window whose data now reaches both
     * of its ends is answered, so its chain moves on without waiting for the quiet period.
     */
    const recordArrivals = Effect.fn("Backfills.recordArrivals")(function* (
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
          where w.user_id in ${sql.in(recipients.map((r) => r.userId))} and w.status = 'requested'
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

    return { plan, request, quietRemaining, complete, finish, abandon, answering, recordArrivals, requestFor, cancel, scheduled } as const
  })
}) {}

/** Starts (or re-attaches to) a backfill's chain; idempotent. */
export const startChain = (backfillId: string): Effect.Effect<void, never, WorkflowEngine.WorkflowEngine> =>
  BackfillChain.execute({ backfillId }, { discard: true }).pipe(Effect.asVoid)

/** Stops a backfill's chain now (its state was already marked cancelled). */
export const interruptChain = (backfillId: string) =>
  Effect.flatMap(BackfillChain.executionId({ backfillId }), (executionId) => BackfillChain.interrupt(executionId))

/** The ingest worker's history hook (pipeline/history.ts), answered by the backfills. */
export const layerHistoryObserver = Layer.effect(
  HistoryObserver,
  Effect.map(Backfills, (backfills) => ({ answering: backfills.answering, recordArrivals: backfills.recordArrivals }))
)
