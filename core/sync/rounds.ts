/**
 * One round of a connection's poll: under the connection's advisory lock (so two runners
 * never poll one connection at once, even while a shard moves between them), take the stored
 * cursor, ask the provider what changed since, and — once every page is committed — advance
 * the cursor in one transaction with the round's bookkeeping. A crash at any point leaves the
 * cursor where it was: the round is fetched again, its pages not stored twice (pages.ts).
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import { Connections } from "../connections/connections.ts"
import { Links } from "../connections/links.ts"
import { Inbox } from "../pipeline/inbox.ts"
import { type PollAnswer, Providers } from "../provider.ts"
import { retryWhileTransient } from "../storage/errors.ts"
import { syncPages } from "./pages.ts"
import { SyncSettings } from "./settings.ts"
import type { RoundOutcome } from "./workflows.ts"

interface SyncState {
  readonly poll_id: string
  readonly cursor: string | null
  readonly rounds: number
  readonly failures: number
  readonly ended_at: Date | null
  readonly status: string
  readonly provider: string
  readonly provider_user_id: string
  readonly user_id: string
  readonly team_id: string
  readonly client_user_id: string
}

const lockKey = (connectionId: string) => `wearflow:sync:${connectionId}`

/** Why a poll that broke (a bug) ended; such polls are started afresh when a process starts. */
export const BROKEN = "stopped by an internal error"

export class SyncRounds extends Effect.Service<SyncRounds>()("wearflow/SyncRounds", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const providers = yield* Providers
    const connections = yield* Connections
    const links = yield* Links
    const inbox = yield* Inbox
    const settings = yield* SyncSettings
    // Each round holds a pooled connection for its lock: a bounded number at once, so the rest of the pool serves their queries.
    const slots = yield* Effect.makeSemaphore(settings.concurrency)

    const end = (connectionId: string, pollId: string, reason: string) =>
      sql`update connection_sync set ended_at = now(), end_reason = ${reason}, round_started_at = null, next_poll_at = null
          where connection_id = ${connectionId} and poll_id = ${pollId} and ended_at is null`.pipe(
        Effect.as({ _tag: "Ended" } satisfies RoundOutcome)
      )

    const backoff = (failures: number) =>
      Duration.min(Duration.times(settings.retryBackoff, 2 ** Math.max(0, failures - 1)), settings.maxBackoff)

    /** Records a round that did not complete; the cursor stays. */
    const retryLater = (connectionId: string, error: string, after: Duration.Duration, failed: boolean) =>
      sql`update connection_sync set last_error = ${error}, round_started_at = null, failures = failures + ${failed ? 1 : 0},
            next_poll_at = now() + ${Duration.toMillis(after)} * interval '1 millisecond'
          where connection_id = ${connectionId}`.pipe(Effect.as({ _tag: "Retry", afterMillis: Duration.toMillis(after) } satisfies RoundOutcome))

    const locked = (connectionId: string, pollId: string) =>
      Effect.gen(function* () {
        const [state] = yield* sql<SyncState>`
          select s.poll_id, s.cursor, s.rounds, s.failures, s.ended_at, c.status, c.provider, c.provider_user_id,
                 u.id as user_id, u.team_id, u.client_user_id
          from connection_sync s join provider_connections c on c.id = s.connection_id join users u on u.id = c.user_id
          where s.connection_id = ${connectionId}`
        if (!state || state.poll_id !== pollId || state.ended_at !== null) return { _tag: "Ended" } satisfies RoundOutcome
        if (state.status !== "active") return yield* end(connectionId, pollId, `the connection is ${state.status}`)
        const provider = providers.get(state.provider)
        const sync = provider?.sync
        if (provider === undefined || sync === undefined) return yield* end(connectionId, pollId, "the provider is not loaded, or is not polled")
        const credentials = yield* connections.credentialsFor(provider.id, { _tag: "UserId", id: state.provider_user_id }).pipe(
          Effect.catchTag("DecryptionError", () => Effect.succeed(undefined))
        )
        if (credentials === undefined) return yield* end(connectionId, pollId, "the connection's tokens are gone")
        yield* sql`update connection_sync set round_started_at = now() where connection_id = ${connectionId}`
        const round = state.rounds + 1
        const pages = syncPages(sql, inbox, { provider: provider.id, connectionId, round, providerUserId: state.provider_user_id })
        const answer: PollAnswer = yield* sync.poll(credentials, state.cursor ?? undefined, pages)
        yield* Effect.logDebug("poll answered").pipe(Effect.annotateLogs({ connection_id: connectionId, answer: answer._tag, round }))
        switch (answer._tag) {
          case "Polled": {
            const interval = settings.interval ?? sync.interval
            const wait = answer.more ? 0 : Math.round(Duration.toMillis(interval) + Math.random() * Duration.toMillis(settings.jitter))
            // Only the round that read this cursor advances it (a guard; the lock already makes it so).
            const advanced = yield* sql`
              update connection_sync set cursor = ${answer.cursor ?? null}, rounds = ${round}, last_poll_at = now(),
                next_poll_at = now() + ${wait} * interval '1 millisecond', last_error = null, failures = 0, round_started_at = null
              where connection_id = ${connectionId} and poll_id = ${pollId} and rounds = ${state.rounds} and ended_at is null
              returning rounds`
            if (advanced.length === 0) return { _tag: "Ended" } satisfies RoundOutcome
            return { _tag: "Polled", rounds: round, afterMillis: wait } satisfies RoundOutcome
          }
          case "RateLimited":
            return yield* retryLater(connectionId, "rate limited by the provider", answer.retryAfter ?? settings.budgetWindow, false)
          case "Unavailable":
            return yield* retryLater(connectionId, answer.message, backoff(state.failures + 1), true)
          case "Forbidden": {
            yield* sql`update connection_sync set last_error = ${answer.message} where connection_id = ${connectionId}`
            // As a refused token refresh does: no more refreshes until the user connects again (relinking clears it).
            yield* sql`update provider_connections set last_error = 'provider_credential_error', updated_at = now() where id = ${connectionId}`
            yield* links.connectionError(
              provider,
              { userId: state.user_id, teamId: state.team_id, clientUserId: state.client_user_id },
              "provider_credential_error",
              `polling refused: ${answer.message}`
            )
            return yield* end(connectionId, pollId, "the provider refused the poll")
          }
        }
      })

    /**
     * Runs one round unless another runner holds the connection's lock (then it is tried
     * again shortly). A session advisory lock on a connection of its own: it holds across
     * the page commits' transactions, and dies with the process. At most
     * `settings.concurrency` rounds run at once in a process; the others wait their turn.
     */
    const round = Effect.fn("SyncRounds.round")(function* (connectionId: string, pollId: string) {
      yield* Effect.acquireRelease(slots.take(1), () => slots.release(1))
      const conn = yield* sql.reserve
      const [lock] = yield* conn.execute("select pg_try_advisory_lock(hashtextextended($1, 0)) as locked", [lockKey(connectionId)], undefined)
      if (lock?.locked !== true) return { _tag: "Retry", afterMillis: Duration.toMillis(settings.retryBackoff) } satisfies RoundOutcome
      yield* Effect.addFinalizer(() =>
        Effect.ignore(conn.execute("select pg_advisory_unlock(hashtextextended($1, 0))", [lockKey(connectionId)], undefined)))
      return yield* locked(connectionId, pollId)
    }, Effect.scoped, retryWhileTransient("10 minutes"), (effect, connectionId) =>
      effect.pipe(
        Effect.catchAll((error) =>
          retryLater(connectionId, "the round could not be stored", settings.retryBackoff, true).pipe(
            Effect.tap(() => Effect.logWarning("poll round failed; it is tried again").pipe(Effect.annotateLogs({ connection_id: connectionId, error: error._tag }))),
            Effect.orElseSucceed((): RoundOutcome => ({ _tag: "Retry", afterMillis: Duration.toMillis(settings.retryBackoff) }))
          ))
      ))

    /** Gives the poll a new id for a fresh execution to take over; undefined when the poll is no longer this one. */
    const handOver = Effect.fn("SyncRounds.handOver")(function* (connectionId: string, pollId: string) {
      const [row] = yield* sql<{ poll_id: string }>`
        update connection_sync set poll_id = gen_random_uuid()
        where connection_id = ${connectionId} and poll_id = ${pollId} and ended_at is null
        returning poll_id::text`
      return row?.poll_id
    }, retryWhileTransient("10 minutes"), Effect.orDie)

    /** A poll that broke ends, saying so (and is started afresh at the next process start). */
    const abandon = Effect.fn("SyncRounds.abandon")(function* (connectionId: string, pollId: string) {
      yield* end(connectionId, pollId, BROKEN)
    }, retryWhileTransient("10 minutes"), Effect.orDie)

    return { round, handOver, abandon } as const
  })
}) {}
