/**
 * The chain's steps (workflows.ts, chain.ts call them as activities): one request per window,
 * what its answer means, and when a window is complete. A window is complete when data
 * reaching both of its ends arrived, when its fetched pages are processed, or when no data
 * came for a quiet period; only then does `historical.data.<resource>.created` go out, with
 * the range actually covered.
 */
import type { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import type { Connections } from "../connections/connections.ts"
import type { Links } from "../connections/links.ts"
import { appendEvent, type Recipient } from "../outbox.ts"
import type { Inbox } from "../pipeline/inbox.ts"
import type { BackfillAnswer, Provider } from "../provider.ts"
import { retryWhileTransient } from "../storage/errors.ts"
import type { Accounts } from "../tenancy/accounts.ts"
import { historyPages } from "./pages.ts"
import { DAY_MS } from "./plan.ts"
import type { BackfillRow, Rows, WindowRow } from "./rows.ts"
import type { BackfillSettings } from "./settings.ts"
import { DONE, FINAL } from "./schedule.ts"
import type { Step, WindowAnswer } from "./workflows.ts"

const MAX_UNAVAILABLE_ATTEMPTS = 8
const MAX_ATTEMPTS = 30
const MAX_BACKOFF = Duration.minutes(10)

/** Database outages inside an activity are waited out (ten minutes) rather than failing the chain. */
export const retryTransient = retryWhileTransient("10 minutes")

export interface StepDeps {
  readonly sql: SqlClient.SqlClient
  readonly settings: BackfillSettings["Type"]
  readonly accounts: Accounts
  readonly links: Links
  readonly connections: Connections
  readonly inbox: Inbox
  readonly rows: Rows
}

export const makeSteps = ({ accounts, connections, inbox, links, rows, settings, sql }: StepDeps) => {
  const { backfillOf, loadBackfill, providerOf } = rows
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

  return { request, quietRemaining, complete, finish, abandon } as const
}
