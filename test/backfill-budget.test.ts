/**
 * Backfills queued behind a busy budget: the real server, four connected users starting a
 * backfill at once with a budget that holds one of them per window. Every wait but the first
 * is longer than the engine keeps in memory, so it is a durable clock whose wake-up time the
 * engine stores (bigint epoch milliseconds); the rate limiter's computed waits must reach it
 * as whole milliseconds. Time passing is simulated by moving the stored wake-up times in.
 */
import { afterAll, beforeAll, expect, it } from "vitest"
import { backfillFinished, connectedUser, DAY, historicalPulls } from "./support/backfill.ts"
import { eventually } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "budget-consumer-key", consumerSecret: "budget-consumer-secret" }
const API_KEY = "budget-api-key"

let stack: GarminStack
const api = wearflowApi(() => stack.server.baseUrl, API_KEY)

beforeAll(async () => {
  stack = await startGarminStack({
    name: "backfill-budget",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: {
      WEARFLOW_BACKFILL_ON_CONNECT: "false",
      WEARFLOW_BACKFILL_TYPES: "dailies",
      WEARFLOW_BACKFILL_QUIET_PERIOD: "1 second",
      WEARFLOW_BACKFILL_SETTLE: "100 millis",
      // 7 days per 2 minutes (a refill rate of 17142.857… ms per day): one 7-day request per window.
      WEARFLOW_BACKFILL_BUDGET_DAYS: "7",
      WEARFLOW_BACKFILL_BUDGET_WINDOW: "2 minutes"
    }
  })
  stack.garmin.state.backfill.deliverTo = `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`
  stack.garmin.state.backfill.deliveryDelayMs = 50
})

afterAll(async () => {
  await stack?.close()
})

/** Durable clocks the engine holds for later (a wake-up time still ahead). */
const pendingClocks = async () =>
  (await stack.db.query<{ deliver_at: string }>(
    "select deliver_at::text from cluster_messages where entity_type = 'Workflow/-/DurableClock' and processed = false and deliver_at > (extract(epoch from now()) * 1000)::bigint"
  )).rows

it("four users starting backfills at once with the budget busy: the later ones wait their turn durably, and every one succeeds", async () => {
  const users = await Promise.all(["b1", "b2", "b3", "b4"].map((name) => connectedUser(stack.garmin, api, name, { types: ["dailies"] })))
  const started = await Promise.all(users.map((u) => api("POST", `/v2/user/${u.userId}/backfill/garmin`, { days: 7 })))
  expect(started.map((s) => s.status)).toEqual([202, 202, 202, 202])

  // One request goes at once; the other three wait one, two and three budget windows. Each
  // wait is a stored clock, or (before whole milliseconds) a broken chain: a failed backfill.
  const waiting = await eventually(async () => {
    const views = await Promise.all(users.map(async (u) => (await historicalPulls(api, u.userId)).data[0]!))
    const failed = views.filter((v) => v.historical_pulls.activity?.status === "failure")
    if (failed.length > 0) return { failed: failed.map((v) => v.historical_pulls.activity.error_details as string | null) }
    const clocks = await pendingClocks()
    return clocks.length === 3 && stack.garmin.state.backfillRequests.length === 1 ? { failed: [], clocks } : undefined
  }, 60_000)
  expect(waiting.failed).toEqual([])
  for (const clock of waiting.clocks!) expect(clock.deliver_at).toMatch(/^\d+$/)
  expect(stack.garmin.state.backfillRequests.map((r) => r.status)).toEqual([202])

  // The windows pass: every stored wake-up is due now.
  await stack.db.query(
    "update cluster_messages set deliver_at = (extract(epoch from now()) * 1000)::bigint where entity_type = 'Workflow/-/DurableClock' and processed = false"
  )
  const views = await Promise.all(users.map((u) => backfillFinished(api, u.userId, 60_000)))
  for (const view of views) {
    expect(view.status).toBe("done")
    expect(view.historical_pulls.activity.status).toBe("success")
    expect(view.historical_pulls.activity.error_details).toBeNull()
  }
  const requests = stack.garmin.state.backfillRequests
  expect(requests.map((r) => r.status)).toEqual([202, 202, 202, 202])
  expect(new Set(requests.map((r) => r.userId))).toEqual(new Set(users.map((u) => u.garminId)))
  for (const r of requests) expect(r.end! - r.start!).toBe(7 * DAY)
}, 150_000)
