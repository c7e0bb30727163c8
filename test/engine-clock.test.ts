/**
 * The workflow engine as the server builds it (core/engine.ts) on a real Postgres: a durable
 * sleep whose duration has a fraction of a millisecond. The engine stores a clock's wake-up
 * time as bigint epoch milliseconds; the fraction must not reach it, whoever computed the
 * duration (a rate limit's wait, a retry-after, a configured schedule).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { DurableClock, Workflow } from "@effect/workflow"
import { Duration, Effect, Layer, ManagedRuntime, Schema } from "effect"
import { afterAll, expect, it } from "vitest"
import * as Engine from "../core/engine.ts"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually } from "./support/server.ts"

const Sleeper = Workflow.make({
  name: "FractionalSleeper",
  payload: { id: Schema.String },
  success: Schema.String,
  idempotencyKey: ({ id }) => id
})

const SleeperLive = Sleeper.toLayer(
  Effect.fn(function* ({ id }) {
    // Longer than the engine keeps in memory (60 s): a stored clock.
    yield* DurableClock.sleep({ name: "long", duration: Duration.millis(90_000.25) })
    return `woke ${id}`
  })
)

const url = await freshDatabaseUrl()
const runtime = ManagedRuntime.make(
  SleeperLive.pipe(
    Layer.provideMerge(Engine.layer({ runnerAddress: { host: "127.0.0.1", port: 30_000 + Math.floor(Math.random() * 20_000) } })),
    Layer.provideMerge(PgClient.layer({ url }))
  )
)
afterAll(() => runtime.dispose())

const query = <A extends object>(text: string) =>
  runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text)))

it("a durable sleep of 90,000.25 ms is stored as a whole-millisecond wake-up, and the workflow wakes from it", async () => {
  await runtime.runPromise(Sleeper.execute({ id: "a" }, { discard: true }))
  const executionId = await runtime.runPromise(Sleeper.executionId({ id: "a" }))
  const poll = () => runtime.runPromise(Sleeper.poll(executionId))

  // Stored, or (before whole milliseconds) the workflow died scheduling it.
  const state = await eventually(async () => {
    const clocks = await query<{ deliver_at: string }>(
      "select deliver_at::text from cluster_messages where entity_type = 'Workflow/-/DurableClock' and processed = false"
    )
    if (clocks.length > 0) return { clocks }
    const result = await poll()
    return result?._tag === "Complete" ? { clocks, result } : undefined
  }, 30_000)
  expect(state.clocks).toHaveLength(1)
  const wakeUp = Number(state.clocks[0]!.deliver_at)
  expect(wakeUp - Date.now()).toBeGreaterThan(60_000)
  expect(wakeUp - Date.now()).toBeLessThanOrEqual(90_001)

  // The 90 s pass: the wake-up is due now.
  await query("update cluster_messages set deliver_at = (extract(epoch from now()) * 1000)::bigint where entity_type = 'Workflow/-/DurableClock'")
  const done = await eventually(async () => {
    const result = await poll()
    return result?._tag === "Complete" ? result : undefined
  }, 30_000)
  expect(done.exit._tag === "Success" && done.exit.value).toBe("woke a")
}, 90_000)
