/**
 * Backfilled history arriving the other ways Garmin sends it: by PING (Wearflow pulls each
 * chunk's upload window) and batched into bodies with other notification items (another
 * user's live data, the user's own live data). Each backfill must still complete truthfully:
 * every window answered by its data, the history counted, nothing else taken for history.
 */
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { backfillFinished, connectedUser, DAY, NOW } from "./support/backfill.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "delivery-consumer-key", consumerSecret: "delivery-consumer-secret" }
const API_KEY = "delivery-api-key"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>

let stack: GarminStack
const api = wearflowApi(() => stack.server.baseUrl, API_KEY)

beforeAll(async () => {
  stack = await startGarminStack({
    name: "backfill-delivery",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: {
      WEARFLOW_BACKFILL_ON_CONNECT: "true",
      WEARFLOW_BACKFILL_DAYS: "40",
      WEARFLOW_BACKFILL_TYPES: "dailies,sleeps,activities",
      WEARFLOW_BACKFILL_QUIET_PERIOD: "3 seconds",
      WEARFLOW_BACKFILL_SETTLE: "300 millis",
      WEARFLOW_BACKFILL_BUDGET_DAYS: "10000"
    }
  })
  Object.assign(stack.garmin.state.backfill, {
    deliverTo: `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`,
    deliveryDelayMs: 100,
    chunkSize: 7,
    chunkGapMs: 20
  })
})

afterAll(async () => {
  await stack?.close()
})

/** Every window of the user's backfill, as stored. */
const windowsOf = async (userId: string) =>
  (await stack.db.query<{ type: string; status: string; completion: string; items: number }>(
    "select type, status, completion, items from backfill_windows where user_id = $1 order by seq",
    [userId]
  )).rows

/** The user's daily activity summary events (one record per Garmin daily), historical and live. */
const activityEvents = async (userId: string) => {
  const rows = (await stack.db.query<{ historical: boolean; n: number }>(
    "select historical, count(*)::int as n from outbox where user_id = $1 and event_type like 'daily.data.activity.%' group by historical",
    [userId]
  )).rows
  return { historical: rows.find((r) => r.historical)?.n ?? 0, live: rows.find((r) => !r.historical)?.n ?? 0 }
}

/** The backfill ended with every window answered by its data and every seeded day counted. */
const expectTruthful = async (userId: string, seeded: Record<string, Array<Record<string, unknown>>>) => {
  const view = await backfillFinished(api, userId, 60_000)
  expect(view.status).toBe("done")
  expect(Object.values(view.historical_pulls).map((p) => p.status)).toEqual(["success", "success", "success"])
  expect(view.historical_pulls.activity.days_with_data).toBe(seeded.dailies!.length)
  expect(view.historical_pulls.sleep.days_with_data).toBe(seeded.sleeps!.length)
  // Every window was answered by data it recognised as its own (a window whose data stops short
  // of an edge — activities come every second day — then waits out its quiet period).
  const windows = await windowsOf(userId)
  expect(windows.map((w) => w.type)).toEqual(["dailies", "sleeps", "activities", "activities"])
  for (const w of windows) {
    expect(w.status).toBe("complete")
    expect(["data", "data_then_quiet"]).toContain(w.completion)
    expect(w.items).toBeGreaterThan(0)
  }
  expect(windows.reduce((sum, w) => sum + w.items, 0)).toBe(seeded.dailies!.length + seeded.sleeps!.length + seeded.activities!.length)
  return view
}

describe("backfilled history", () => {
  it("delivered by PING: Wearflow pulls each upload window, and the backfill completes by its data", async () => {
    Object.assign(stack.garmin.state.backfill, { deliverAs: "ping", pingTo: `${stack.server.baseUrl}/api/v1/webhooks/garmin/ping` })
    try {
      const { userId, garminId, seeded } = await connectedUser(stack.garmin, api, "by-ping")
      await expectTruthful(userId, seeded)
      // Every pull was of a window the fake announced (it serves nothing for any other).
      const pulls = stack.garmin.requests.filter((r) => /^\/wellness-api\/rest\/(dailies|sleeps|activities)$/.test(r.path))
      const deliveries = stack.garmin.state.deliveries.filter((d) => d.userId === garminId)
      expect(pulls.length).toBe(deliveries.length)
      for (const pull of pulls) expect(pull.query.uploadStartTimeInSeconds).toBe(pull.query.uploadEndTimeInSeconds)
      expect(await activityEvents(userId)).toEqual({ historical: seeded.dailies!.length, live: 0 })
    } finally {
      stack.garmin.state.backfill.deliverAs = "push"
    }
  })

  it("batched with other users' and the user's own live notifications: each is itself, the history completes", async () => {
    // A bystander with no backfill of its own (cancelled at once) whose live data rides along.
    const other = await connectedUser(stack.garmin, api, "bystander", { history: false })
    expect((await api("DELETE", `/v2/user/${other.userId}/backfill/garmin`)).status).toBe(200)
    const liveDay = new Date((NOW + DAY) * 1000).toISOString().slice(0, 10)
    let batches = 0
    const liveDaily = (garminId: string) => ({
      ...daily,
      userId: garminId,
      summaryId: `live-${garminId}`,
      calendarDate: liveDay,
      startTimeInSeconds: Date.parse(`${liveDay}T00:00:00Z`) / 1000,
      startTimeOffsetInSeconds: 0,
      steps: 1000 + batches
    })
    stack.garmin.state.backfill.alongside = (userId) => {
      batches++
      return { dailies: [liveDaily(other.garminId), liveDaily(userId)] }
    }
    try {
      const { userId, seeded } = await connectedUser(stack.garmin, api, "batched")
      await expectTruthful(userId, seeded)
      expect(batches).toBeGreaterThan(3)
      // History is historical; the live items in the same bodies are not, for either user.
      const mine = await activityEvents(userId)
      expect(mine.historical).toBe(seeded.dailies!.length)
      expect(mine.live).toBeGreaterThan(0)
      const theirs = await activityEvents(other.userId)
      expect(theirs).toEqual({ historical: 0, live: expect.any(Number) })
      expect(theirs.live).toBeGreaterThan(0)
      // The live day lies after the backfill's range: not counted as a day of history.
      const live = await stack.db.query("select 1 from records where user_id = $1 and calendar_date = $2", [userId, liveDay])
      expect(live.rowCount).toBe(1)
    } finally {
      stack.garmin.state.backfill.alongside = undefined
    }
  })
})
