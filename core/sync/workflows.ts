/**
 * The durable poll of one connection (definition; poll.ts runs it), and waking it.
 *
 * One execution at a time per connection (`connectionId/pollId`, the poll id stored in
 * connection_sync): the cluster engine runs an execution on one runner at a time. A relink
 * gives a new poll id (the earlier execution ends at its next round); so does an execution
 * handing over to a fresh one after `roundsPerExecution` rounds, which keeps its journal —
 * replayed whenever it resumes — short. Each round is an activity; between rounds the poll sleeps
 * on a durable clock named after the round count (`interval/<rounds>`). A durable clock is a
 * durable deferred the engine completes at its wake-up time, so waking a connection completes
 * that deferred early: the sleep ends at once. Completing it before the poll reaches the sleep
 * (a round in progress) works too: the sleep then finds it done.
 */
import { SqlClient } from "@effect/sql"
import { DurableClock, DurableDeferred, Workflow } from "@effect/workflow"
import { Duration, Effect, Exit, Schema } from "effect"

export const ConnectionPoll = Workflow.make({
  name: "ConnectionPoll",
  payload: { connectionId: Schema.String, pollId: Schema.String, provider: Schema.String },
  idempotencyKey: ({ connectionId, pollId }) => `${connectionId}/${pollId}`
})

/** What a round did, and what the poll does next. */
export const RoundOutcome = Schema.Union(
  /** The connection is gone, relinked, or refused: the poll ends. */
  Schema.TaggedStruct("Ended", {}),
  /** `rounds` rounds are done; the next starts after `afterMillis` (0: at once). */
  Schema.TaggedStruct("Polled", { rounds: Schema.Number, afterMillis: Schema.Number }),
  /** The round is to be tried again (from the same cursor) after `afterMillis`. */
  Schema.TaggedStruct("Retry", { afterMillis: Schema.Number })
)
export type RoundOutcome = typeof RoundOutcome.Type

/** The sleep after round `rounds`. Always durable (never in memory), so a wake can end it. */
export const intervalClock = (rounds: number, duration: Duration.DurationInput = Duration.zero) =>
  DurableClock.make({ name: `interval/${rounds}`, duration })

export const sleepAfter = (rounds: number, afterMillis: number) =>
  DurableClock.sleep({ name: intervalClock(rounds).name, duration: Duration.millis(Math.max(1, afterMillis)), inMemoryThreshold: Duration.zero })

/** Ends the sleep after round `rounds` of a poll execution, now or (not yet asleep) when it gets there. */
export const endSleep = (poll: typeof ConnectionPoll.payloadSchema.Type, rounds: number) =>
  Effect.gen(function* () {
    const clock = intervalClock(rounds)
    const token = yield* DurableDeferred.tokenFromPayload(clock.deferred, { workflow: ConnectionPoll, payload: poll })
    yield* DurableDeferred.done(clock.deferred, { token, exit: Exit.void })
  })

/**
 * Polls the connection at once instead of after its interval: ends the sleep after the last
 * round, or — while a round runs or is being retried — the sleep after that round, so a
 * change that round may have missed is fetched next. False when the connection is not polled.
 */
export const wake = (connectionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ poll_id: string; provider: string; rounds: number; busy: boolean }>`
      select s.poll_id, c.provider, s.rounds, (s.round_started_at is not null or s.last_error is not null) as busy
      from connection_sync s join provider_connections c on c.id = s.connection_id
      where s.connection_id = ${connectionId} and s.ended_at is null and s.started_at is not null`
    if (!row) return false
    yield* endSleep({ connectionId, pollId: row.poll_id, provider: row.provider }, row.busy ? row.rounds + 1 : row.rounds)
    return true
  })
