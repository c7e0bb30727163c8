/**
 * A sink runner wakes when this process appends to the outbox, instead of sleeping out its idle
 * pause; a wake never lets it read past a transaction still open (pg_snapshot_xmin). The tests
 * run on the test clock: a runner's pauses never end by themselves, only a ring wakes it. Events
 * are appended outside a transaction, so each is committed by the time it rings.
 */
import { layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { appendEvent } from "@wearflow/core/outbox"
import * as OutboxWake from "@wearflow/core/outbox-wake"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import { SinkError } from "@wearflow/core/sink"
import type { EventEnvelope } from "@wearflow/core/schema"
import * as Database from "@wearflow/core/storage/database"
import { Chunk, Deferred, Effect, Layer, Option, Redacted, TestClock } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { expect } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()
const Services = Layer.orDie(Database.layer({ url: Option.some(url), dataDir: "unused" }))

const TEAM = randomUUID()
const USER = randomUUID()
const envelope = (n: number): EventEnvelope =>
  ({ event_type: "daily.data.activity.created", data: { n }, user_id: USER, client_user_id: "c", team_id: TEAM }) as unknown as EventEnvelope

/** Until `condition` holds, looking every few milliseconds of the real clock (the test clock stands still). */
const until = (condition: Effect.Effect<boolean>) =>
  Effect.gen(function* () {
    while (!(yield* condition)) yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
  })

/** Until a runner waits for a ring, its round done. */
const atRest = until(Effect.map(OutboxWake.waiting, (n) => n > 0))

/** A sink that records event ids, and a runner feeding it from the end of the outbox, at rest. */
const recording = (expected: number) =>
  Effect.gen(function* () {
    const received: Array<string> = []
    const done = yield* Deferred.make<void>()
    const sink = {
      id: `wake-${randomUUID().slice(0, 8)}`,
      health: Effect.void,
      deliver: (batch: ReadonlyArray<{ readonly eventId: string }>) =>
        Effect.suspend(() => {
          received.push(...batch.map((e) => e.eventId))
          return received.length >= expected ? Deferred.succeed(done, undefined) : Effect.void
        })
    }
    // No gather pause: on the test clock it would never end.
    const runner = yield* SinkRunner.make(sink, { gather: 0 })
    // Start at the end of the outbox: earlier tests' events are not this runner's.
    yield* runner.once
    received.length = 0
    yield* Effect.forkScoped(runner.run)
    yield* atRest
    return { received, done: Deferred.await(done) }
  })

const eventIdAt = (sql: SqlClient.SqlClient, n: number) =>
  Effect.map(sql<{ event_id: string }>`select event_id from outbox where payload->'data'->>'n' = ${String(n)}`, (rows) => rows[0]!.event_id)

layer(Services, { timeout: 60_000 })("sink runner wake", (it) => {
  it.scoped("an event appended in this process reaches an idle runner at once", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const sink = yield* recording(1)
      yield* appendEvent(sql, envelope(1), null)
      yield* sink.done
      expect(sink.received).toEqual([yield* eventIdAt(sql, 1)])
    }))

  it.scoped("a wake reads no further than a transaction still open: its event comes first, none skipped", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const sink = yield* recording(3)
      // A slow transaction takes the earlier outbox position; a fast one commits after it and rings.
      const slow = new pg.Client({ connectionString: Redacted.value(url) })
      yield* Effect.acquireRelease(Effect.promise(() => slow.connect()), () => Effect.promise(() => slow.end()))
      yield* Effect.promise(() =>
        slow.query("begin").then(() =>
          slow.query(
            `insert into outbox (event_id, event_type, team_id, user_id, payload) values ($1, 'daily.data.activity.created', $2, $3, $4)`,
            [randomUUID(), TEAM, USER, JSON.stringify({ data: { n: 10 } })]
          )
        )
      )
      yield* appendEvent(sql, envelope(11), null)
      // Woken, the runner looked and took nothing: the slow transaction is still open.
      yield* atRest
      expect(sink.received).toEqual([])
      // The slow one commits without a ring (as another process would); the next append rings again.
      yield* Effect.promise(() => slow.query("commit"))
      yield* appendEvent(sql, envelope(12), null)
      yield* sink.done
      expect(sink.received).toEqual([yield* eventIdAt(sql, 10), yield* eventIdAt(sql, 11), yield* eventIdAt(sql, 12)])
    }))

  it.scoped("a ring after a rest is read at once; while events keep coming, they gather for the gather pause into one round", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const batches: Array<Array<string>> = []
      const sink = {
        id: `gather-${randomUUID().slice(0, 8)}`,
        health: Effect.void,
        deliver: (batch: ReadonlyArray<{ readonly eventId: string }>) => Effect.sync(() => void batches.push(batch.map((e) => e.eventId)))
      }
      const runner = yield* SinkRunner.make(sink, { gather: "10 millis" })
      yield* runner.once
      batches.length = 0
      yield* Effect.forkScoped(runner.run)
      yield* atRest
      const delivered = (n: number) => until(Effect.sync(() => batches.flat().length >= n))
      /** Until the runner sleeps out its gather pause: a sleep ending 10 ms from now. */
      const gathering = until(Effect.gen(function* () {
        const end = (yield* TestClock.currentTimeMillis) + 10
        return Chunk.some(yield* TestClock.sleeps(), (at) => at === end)
      }))

      // At rest since it started: the ring is read at once (the test clock never reaches a pause's end).
      yield* appendEvent(sql, envelope(20), null)
      yield* delivered(1)
      // Nothing left past its batch: it rests, no gather pause.
      yield* atRest
      yield* TestClock.adjust("10 millis")
      yield* atRest
      // At rest a gather pause after its last round: again at once.
      yield* appendEvent(sql, envelope(21), null)
      yield* delivered(2)
      // Busy: events rung within a gather pause of the last round wait for its end, then come in one round.
      yield* atRest
      yield* appendEvent(sql, envelope(22), null)
      yield* gathering
      yield* appendEvent(sql, envelope(23), null)
      yield* TestClock.adjust("10 millis")
      yield* delivered(4)
      expect(batches).toEqual([[yield* eventIdAt(sql, 20)], [yield* eventIdAt(sql, 21)], [yield* eventIdAt(sql, 22), yield* eventIdAt(sql, 23)]])
    }))

  /**
   * Another sink's first round stays open until released, then `ends` (a failure is retried only
   * after a back-off the test clock never reaches); an event appended while it is open is read
   * by the recording runner once that round ends.
   */
  const heldBackUntilTheRoundEnds = (ends: "commits" | "fails", first: number) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const holding = yield* Deferred.make<void>()
      const released = yield* Deferred.make<void>()
      let armed = false
      const ending = ends === "commits" ? Effect.void : Effect.fail(new SinkError({ message: "unavailable", retryable: true }))
      const holder = {
        id: `holder-${randomUUID().slice(0, 8)}`,
        health: Effect.void,
        deliver: () => (armed ? Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(released)).pipe(Effect.zipRight(ending)) : Effect.void)
      }
      const holderRunner = yield* SinkRunner.make(holder, { gather: 0 })
      // From the end of the outbox, like the recording runner.
      yield* holderRunner.once
      armed = true
      const sink = yield* recording(Infinity)
      yield* Effect.forkScoped(holderRunner.run)
      yield* until(Effect.map(OutboxWake.waiting, (n) => n >= 2))

      yield* appendEvent(sql, envelope(first), null)
      yield* Deferred.await(holding)
      yield* until(Effect.sync(() => sink.received.length === 1))
      // Appended while the holder's round is open: rung, but not readable until that round ends.
      yield* appendEvent(sql, envelope(first + 1), null)
      yield* atRest
      expect(sink.received).toEqual([yield* eventIdAt(sql, first)])
      // The holder's round ends: the runner reads at once (its pauses never end on the test clock).
      yield* Deferred.succeed(released, undefined)
      yield* until(Effect.sync(() => sink.received.length === 2))
      expect(sink.received).toEqual([yield* eventIdAt(sql, first), yield* eventIdAt(sql, first + 1)])
    })

  it.scoped("a runner that could not read a rung event yet, held back by another sink's round, looks again when that round commits", () =>
    heldBackUntilTheRoundEnds("commits", 30))

  it.scoped("a committed ring that finds nothing past the cursor sends the runner back to its idle pause, not chasing", () =>
    Effect.gen(function* () {
      const sink = {
        id: `rest-${randomUUID().slice(0, 8)}`,
        health: Effect.void,
        deliver: () => Effect.void
      }
      const runner = yield* SinkRunner.make(sink, { gather: 0, idle: "1 second" })
      yield* runner.once
      yield* Effect.forkScoped(runner.run)
      yield* atRest
      yield* TestClock.adjust("500 millis")
      const now = yield* TestClock.currentTimeMillis
      // Pauses begun before the ring (the test clock keeps even those a ring cut short).
      const before = new Set(yield* TestClock.sleeps())
      const newPauses = Effect.map(TestClock.sleeps(), (at) => Chunk.toReadonlyArray(at).filter((t) => !before.has(t)))
      // Rung after a commit (as the store rings), with nothing appended: the look finds no event at all.
      yield* OutboxWake.ring
      yield* until(Effect.map(newPauses, (ends) => ends.length > 0))
      // Its next pause: the idle one (ending 1 s from now), not a chase step of a few milliseconds.
      expect(yield* newPauses).toEqual([now + 1000])
    }))

  it.scoped("a runner held back by another sink's round that fails looks again when that round rolls back", () =>
    heldBackUntilTheRoundEnds("fails", 40))
})
