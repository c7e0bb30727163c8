/**
 * Oura's request budget is one for every process on the database: two budgets built apart
 * (as two servers would build them) draw on the same OURA_RATE_LIMIT, and the one that finds
 * it used up is told how long until the window ends.
 */
import * as Database from "@wearflow/core/storage/database"
import { freshDatabase, stopEmbedded } from "@wearflow/core/testing/database"
import { ConfigProvider, Duration, Effect, Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, expect, it } from "vitest"
import * as Budget from "./budget.ts"

let runtimes: Array<ManagedRuntime.ManagedRuntime<Budget.OuraBudget, unknown>> = []

beforeAll(async () => {
  const url = await freshDatabase()
  const config = ConfigProvider.fromMap(new Map([["OURA_RATE_LIMIT", "3"], ["OURA_RATE_LIMIT_WINDOW", "10 minutes"]]))
  // Two processes: each builds its own database pool and budget.
  runtimes = [0, 1].map(() =>
    ManagedRuntime.make(
      Budget.layer.pipe(
        Layer.provide(Database.layer({ url: Option.some(url), dataDir: "unused" })),
        Layer.provide(Layer.setConfigProvider(config))
      )
    )
  )
})

afterAll(async () => {
  await Promise.all(runtimes.map((runtime) => runtime.dispose()))
  await stopEmbedded()
})

it("shares OURA_RATE_LIMIT across processes and says how long to wait once it is used up", async () => {
  const take = (process: number) => runtimes[process]!.runPromise(Effect.flatMap(Budget.OuraBudget, (budget) => budget.take))
  const turns = [await take(0), await take(1), await take(0), await take(1), await take(0)]
  expect(turns.map((turn) => turn._tag)).toEqual(["Go", "Go", "Go", "Wait", "Wait"])
  const wait = turns[3]!
  expect(wait._tag === "Wait" && Duration.greaterThan(wait.after, Duration.minutes(9))).toBe(true)
  expect(wait._tag === "Wait" && Duration.lessThanOrEqualTo(wait.after, Duration.minutes(10))).toBe(true)
})
