/**
 * Sinks leaving out backfilled data when configured to (Junction's push_historical_data):
 * with WEARFLOW_WEBHOOK_HISTORICAL_DATA=false and WEARFLOW_ETL_HISTORICAL_DATA=false, a
 * connection's backfill still lands in the store and the Postgres sink (which has no such
 * option), but webhooks carry only live data and the `historical.data.*` notices, and the ETL
 * files only live data. Real server, real Postgres, the fake Garmin delivering the history.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { gunzipSync } from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { backfillFinished, connectedUser } from "./support/backfill.ts"
import { eventually } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "optout-consumer-key", consumerSecret: "optout-consumer-secret" }
const API_KEY = "optout-api-key"

let stack: GarminStack
let receiver: Receiver
const api = wearflowApi(() => stack.server.baseUrl, API_KEY)
const count = async (query: string, params: Array<unknown> = []) => Number((await stack.db.query(query, params)).rows[0].n)

/** Every row of the ETL files under the data dir's etl/resource=<resource>. */
const etlRows = async (resource: string) => {
  const root = path.join(stack.dataDir, "etl", `resource=${resource}`)
  const files = (await fs.readdir(root, { recursive: true }).catch(() => [] as Array<string>)).filter((f) => f.endsWith(".ndjson.gz"))
  const rows: Array<{ event_id: string; historical: boolean; user_id: string }> = []
  for (const file of files) {
    const text = gunzipSync(await fs.readFile(path.join(root, file))).toString("utf8")
    for (const line of text.split("\n")) if (line.length > 0) rows.push(JSON.parse(line))
  }
  return rows
}

beforeAll(async () => {
  receiver = await startReceiver()
  stack = await startGarminStack({
    name: "optout",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: {
      WEARFLOW_BACKFILL_ON_CONNECT: "true",
      WEARFLOW_BACKFILL_DAYS: "40",
      WEARFLOW_BACKFILL_TYPES: "dailies",
      WEARFLOW_BACKFILL_QUIET_PERIOD: "2 seconds",
      WEARFLOW_BACKFILL_SETTLE: "300 millis",
      WEARFLOW_BACKFILL_BUDGET_DAYS: "10000",
      WEARFLOW_WEBHOOK_HISTORICAL_DATA: "false",
      WEARFLOW_ETL_HISTORICAL_DATA: "false",
      WEARFLOW_ETL_BATCH_SECONDS: "1",
      WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
      WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true"
    }
  })
  stack.garmin.state.backfill.deliverTo = `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`
  stack.garmin.state.backfill.deliveryDelayMs = 150
})

afterAll(async () => {
  await stack?.close()
  await receiver?.close()
})

describe("historical data opt-out", () => {
  it("keeps backfilled data out of webhooks and ETL files, but not out of the store or the Postgres sink", async () => {
    const endpoint = await api("POST", "/v2/webhooks", { url: receiver.url })
    expect(endpoint.status).toBe(201)
    const { userId, garminId, seeded } = await connectedUser(stack.garmin, api, "optout", { types: ["dailies"] })
    const view = await backfillFinished(api, userId)
    expect(view.status).toBe("done")

    // A live day, after the connection was made: not history.
    const now = Math.floor(Date.now() / 1000)
    const live = { ...seeded.dailies!.at(-1)!, userId: garminId, summaryId: `live-${garminId}`, startTimeInSeconds: now, calendarDate: new Date(now * 1000).toISOString().slice(0, 10), steps: 24_680 }
    expect((await sendGarminNotification(stack.server.baseUrl, CONSUMER.consumerKey, "push", { dailies: [live] })).status).toBe(200)

    // Drained: ingest done, every sink past every event, nothing left to send or to write.
    await eventually(async () => {
      const waiting = await count(`
        select (select count(*) from inbox where processed_at is null)
             + (select count(*) from outbox o, (values ('postgres'), ('webhooks'), ('s3')) as s(id) where not exists (
                  select 1 from sink_cursors c where c.sink_id = s.id and (o.tx, o.position) <= (c.tx, c.position)))
             + (select count(*) from webhook_messages where status <> 'delivered')
             + (select count(*) from etl_pending)
             + (select count(*) from etl_batches where status <> 'written') as n`)
      return waiting === 0 ? true : undefined
    }, 60_000)

    // The store holds both kinds, marked: otherwise this test would prove nothing.
    const events = (await stack.db.query<{ event_id: string; event_type: string; historical: boolean }>(
      "select event_id, event_type, historical from outbox where user_id = $1 and event_type like 'daily.data.%'", [userId]
    )).rows
    const historical = events.filter((e) => e.historical)
    const current = events.filter((e) => !e.historical)
    expect(historical.filter((e) => e.event_type === "daily.data.activity.created")).toHaveLength(seeded.dailies!.length)
    expect(current.filter((e) => e.event_type === "daily.data.activity.created")).toHaveLength(1)

    // The Postgres sink takes everything.
    expect(await count("select count(*) as n from wearflow_data.activity where user_id = $1", [userId])).toBe(seeded.dailies!.length + 1)

    // Webhooks: the live data and the completion notice, no backfilled data.
    const sent = receiver.received.map((r) => JSON.parse(r.body) as { event_type: string; user_id: string; data: any })
    const mine = sent.filter((e) => e.user_id === userId)
    expect(mine.filter((e) => e.event_type === "daily.data.activity.created").map((e) => e.data.steps)).toEqual([live.steps])
    expect(mine.filter((e) => e.event_type === "historical.data.activity.created")).toHaveLength(1)
    const messages = (await stack.db.query("select event_id from webhook_messages where user_id = $1 and event_type like 'daily.data.%'", [userId])).rows.map((r) => r.event_id)
    expect(messages.sort()).toEqual(current.map((e) => e.event_id).sort())

    // ETL files: the live rows, none of the backfilled ones.
    const rows = (await etlRows("activity")).filter((r) => r.user_id === userId)
    expect(rows.map((r) => r.event_id)).toEqual(current.filter((e) => e.event_type.startsWith("daily.data.activity.")).map((e) => e.event_id))
    const heartrate = (await etlRows("heartrate")).filter((r) => r.user_id === userId)
    const historicalIds = new Set(historical.map((e) => e.event_id))
    expect(heartrate.length).toBeGreaterThan(0)
    expect(heartrate.filter((r) => historicalIds.has(r.event_id) || r.historical)).toEqual([])
  })
})
