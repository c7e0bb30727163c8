/**
 * The durable poll of a connection, and what starts it. Each round is an activity under the
 * provider's app-wide budget (a durable rate limiter on the shared budget store); between
 * rounds the poll sleeps on a durable clock a wake can end (workflows.ts). A killed runner's
 * poll resumes on another from its journal; the round it was in runs again from the stored
 * cursor.
 *
 * Starting: linking records the connection's poll (on-connect.ts); a starter in every process
 * starts polls recorded but not started, and wakes the polls of connections no longer active
 * so they end now rather than after their interval. At process start every active polled
 * connection's poll is started again (starting a running one does nothing), and one that
 * broke (a bug) is started afresh.
 */
import { SqlClient } from "@effect/sql"
import { Activity, DurableClock, DurableRateLimiter } from "@effect/workflow"
import { Duration, Effect, Layer, Schedule, Schema } from "effect"
import { Providers } from "../provider.ts"
import { BROKEN, SyncRounds } from "./rounds.ts"
import { SyncSettings } from "./settings.ts"
import { ConnectionPoll, endSleep, RoundOutcome, sleepAfter } from "./workflows.ts"

const PollLive = ConnectionPoll.toLayer(
  Effect.fn(function* ({ connectionId, pollId, provider }) {
    const rounds = yield* SyncRounds
    const settings = yield* SyncSettings
    for (let attempt = 0; ; attempt++) {
      if (attempt >= settings.roundsPerExecution) {
        const next = yield* Activity.make({ name: "hand-over", success: Schema.UndefinedOr(Schema.String), execute: rounds.handOver(connectionId, pollId) })
        if (next !== undefined) yield* startPoll({ connectionId, pollId: next, provider })
        return
      }
      yield* DurableRateLimiter.rateLimit({
        name: `budget/${attempt}`,
        key: `sync:${provider}`,
        algorithm: "fixed-window",
        window: settings.budgetWindow,
        limit: settings.budgetRounds
      }).pipe(Effect.orDie)
      const outcome = yield* Activity.make({ name: `round/${attempt}`, success: RoundOutcome, execute: rounds.round(connectionId, pollId) })
      if (outcome._tag === "Ended") return
      if (outcome._tag === "Polled") {
        if (outcome.afterMillis > 0) yield* sleepAfter(outcome.rounds, outcome.afterMillis)
        continue
      }
      yield* DurableClock.sleep({ name: `retry/${attempt}`, duration: Duration.millis(Math.max(1, outcome.afterMillis)) })
    }
  }, (poll, { connectionId, pollId }) =>
    poll.pipe(
      Effect.catchAllDefect((defect) =>
        Effect.logError("connection poll broke; it ends, and is started again at the next process start", defect).pipe(
          Effect.zipRight(Activity.make({ name: "abandon", execute: Effect.flatMap(SyncRounds, (rounds) => rounds.abandon(connectionId, pollId)) }))
        ))
    ))
)

/** Starts (or re-attaches to) a connection's poll; idempotent. */
export const startPoll = (poll: { readonly connectionId: string; readonly pollId: string; readonly provider: string }) =>
  ConnectionPoll.execute(poll, { discard: true }).pipe(Effect.asVoid)

/**
 * Polls recorded but not started are started. Those of connections no longer active are ended
 * here and woken once, so their executions end now rather than after their interval (a round
 * in progress is left to finish first).
 */
const startRecorded = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const started = yield* sql<{ connection_id: string; poll_id: string; provider: string }>`
    update connection_sync s set started_at = now() from provider_connections c
    where c.id = s.connection_id and s.started_at is null and s.ended_at is null and c.status = 'active'
    returning s.connection_id, s.poll_id, c.provider`
  yield* Effect.forEach(started, (row) => startPoll({ connectionId: row.connection_id, pollId: row.poll_id, provider: row.provider }), { discard: true })
  const stopped = yield* sql<{ connection_id: string; poll_id: string; provider: string; rounds: number }>`
    update connection_sync s set ended_at = now(), end_reason = 'the connection is ' || c.status, next_poll_at = null
    from provider_connections c
    where c.id = s.connection_id and s.started_at is not null and s.ended_at is null and s.round_started_at is null and c.status <> 'active'
    returning s.connection_id, s.poll_id, c.provider, s.rounds`
  yield* Effect.forEach(stopped, (row) =>
    Effect.zipRight(
      endSleep({ connectionId: row.connection_id, pollId: row.poll_id, provider: row.provider }, row.rounds),
      endSleep({ connectionId: row.connection_id, pollId: row.poll_id, provider: row.provider }, row.rounds + 1)
    ), { discard: true })
})

/**
 * At process start: every active connection of a polled provider has its poll recorded (one
 * linked before polling existed, too) and started again.
 */
const resumeAll = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const providers = yield* Providers
  const polled = [...providers.values()].filter((p) => p.sync !== undefined).map((p) => p.id)
  if (polled.length === 0) return
  yield* sql`insert into connection_sync (connection_id, poll_id, next_poll_at)
    select c.id, gen_random_uuid(), now() from provider_connections c where c.status = 'active' and c.provider in ${sql.in(polled)}
    on conflict do nothing`
  yield* sql`update connection_sync s set started_at = null from provider_connections c
    where c.id = s.connection_id and s.ended_at is null and c.status = 'active' and c.provider in ${sql.in(polled)}`
  // A poll that broke gets a fresh execution (its own ended with the defect in its journal).
  yield* sql`update connection_sync s set poll_id = gen_random_uuid(), started_at = null, ended_at = null, end_reason = null
    from provider_connections c
    where c.id = s.connection_id and s.end_reason = ${BROKEN} and c.status = 'active' and c.provider in ${sql.in(polled)}`
})

/** Starts polls: those left at the last stop, then newly linked ones as they come. */
export const layerStarter = Layer.scopedDiscard(
  Effect.gen(function* () {
    const settings = yield* SyncSettings
    yield* resumeAll.pipe(Effect.catchAllCause((cause) => Effect.logError("could not resume connection polls", cause)))
    const round = startRecorded.pipe(Effect.catchAllCause((cause) => Effect.logError("could not start connection polls", cause)))
    yield* Effect.forkScoped(Effect.repeat(round, Schedule.spaced(settings.startInterval)))
  })
)

/** The poll workflow, registered with the engine. */
export const layer = PollLive.pipe(Layer.provideMerge(SyncRounds.Default))
