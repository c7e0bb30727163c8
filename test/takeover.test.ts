/**
 * Another process taking over a dead one's work: a server is killed with `kill -9` while it
 * holds ingest jobs and webhook retry workflows (sleeping until their retry), or a backfill
 * chain; a second server with a different WEARFLOW_RUNNER_ADDRESS on the same database
 * finishes all of it, once the dead one's queue locks and shard locks have expired.
 */
import { Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { backfillFinished, connectedUser } from "./support/backfill.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { startGarminStack } from "./support/stack.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, any>
const API_KEY = "takeover-api-key"
const CLIENT_ID = "takeover-client"
const DAY = 86_400
const BODIES = 30
const RETRIED = 4
const ENCRYPTION_KEY = randomBytes(32).toString("base64")

const dirs: Array<string> = []
const servers: Array<RunningServer> = []
let receiver: Receiver | undefined

afterAll(async () => {
  for (const server of servers) await server.stop("SIGKILL")
  await receiver?.close()
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true })
})

describe("a second runner takes over a dead one's work", () => {
  it("finishes the ingest jobs and webhook retries a kill -9'd server held", async () => {
    const url = Redacted.value(await freshDatabaseUrl())
    const envFor = async (runner: string) => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-takeover-"))
      dirs.push(dir)
      return {
        DATABASE_URL: url,
        GARMIN_CLIENT_ID: CLIENT_ID,
        GARMIN_API_URL: "http://127.0.0.1:9",
        WEARFLOW_API_KEY: API_KEY,
        WEARFLOW_DATA_DIR: dir,
        // Replicas share the key that encrypts tokens and webhook secrets.
        WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY,
        WEARFLOW_BACKFILL_ON_CONNECT: "false",
        WEARFLOW_RUNNER_ADDRESS: runner,
        WEARFLOW_RUNNER_LOCK_EXPIRATION: "3 seconds",
        WEARFLOW_QUEUE_LOCK_EXPIRATION: "2 seconds",
        WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
        WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
        // Long enough that the retries are certainly still asleep when the first server dies.
        WEARFLOW_WEBHOOK_RETRY_SCHEDULE: "15 seconds"
      }
    }
    const db = new pg.Client({ connectionString: url })
    await db.connect()
    try {
      // One ingest worker, so that work is certainly in flight when the kill lands.
      const first = await startServer({ ...(await envFor("runner-a:7001")), WEARFLOW_INGEST_CONCURRENCY: "1" })
      servers.push(first)
      const api = wearflowApi(() => first.baseUrl, API_KEY)
      const user = (await api("POST", "/v2/user", { client_user_id: "takeover" })).body.user_id as string
      expect((await api("POST", `/v2/user/${user}/connections/garmin`, { provider_user_id: "takeover-garmin-user" })).status).toBe(200)

      // Webhook messages whose first attempt fails: each has a retry workflow asleep on the first server.
      receiver = await startReceiver()
      receiver.answers = Array.from({ length: RETRIED }, () => 500)
      const endpoint = await api("POST", "/v2/webhooks", { url: receiver.url, filter_types: ["webhook.test"] })
      expect(endpoint.status).toBe(201)
      const messageIds: Array<string> = []
      for (let i = 0; i < RETRIED; i++) messageIds.push((await api("POST", `/v2/webhooks/${endpoint.body.id}/test`)).body.message_id)
      await eventually(async () => {
        const { rows } = await db.query("select count(*)::int as n from webhook_messages where id = any($1) and status = 'retrying'", [messageIds])
        return rows[0].n === RETRIED ? true : undefined
      }, 30_000)

      // A burst of notifications, acknowledged; then the server dies mid-work.
      const bodies = Array.from({ length: BODIES }, (_, n) => {
        const start = (daily.startTimeInSeconds as number) + n * DAY
        return { dailies: [{ ...daily, userId: "takeover-garmin-user", summaryId: `takeover-${n}`, startTimeInSeconds: start, calendarDate: new Date(start * 1000).toISOString().slice(0, 10) }] }
      })
      const statuses = await Promise.all(bodies.map((body) => sendGarminNotification(first.baseUrl, CLIENT_ID, "push", body).then((r) => r.status)))
      await first.stop("SIGKILL")
      expect(statuses).toEqual(bodies.map(() => 200))
      const pending = Number((await db.query("select count(*) as n from inbox where processed_at is null")).rows[0].n)
      // The kill must land while work is in flight, and before any retry ran, or this test proves nothing.
      expect(pending).toBeGreaterThan(0)
      expect(receiver.received).toHaveLength(RETRIED)

      // Another runner (another address) on the same database.
      const second = await startServer(await envFor("runner-b:7002"))
      servers.push(second)
      await eventually(async () => {
        const { rows } = await db.query("select count(*)::int as n from inbox where processed_at is null")
        return rows[0].n === 0 ? true : undefined
      }, 60_000)
      const records = Number((await db.query("select count(*) as n from records where user_id = $1 and resource = 'activity'", [user])).rows[0].n)
      expect(records).toBe(BODIES)
      expect(Number((await db.query("select count(*) as n from outbox where user_id = $1 and event_type = 'daily.data.activity.created'", [user])).rows[0].n)).toBe(BODIES)

      const delivered = await eventually(async () => {
        const { rows } = await db.query("select id, status, attempts from webhook_messages where id = any($1)", [messageIds])
        return rows.every((r) => r.status === "delivered") ? rows : undefined
      }, 60_000)
      expect(delivered.map((r) => r.attempts)).toEqual(messageIds.map(() => 2))
      const attempts = (await db.query("select message_id, attempt, trigger, status from webhook_attempts where message_id = any($1) order by message_id, attempt", [messageIds])).rows
      expect(attempts.map((a) => [a.attempt, a.trigger, a.status])).toEqual(messageIds.flatMap(() => [[1, "first", "failure"], [2, "retry", "success"]]))
      // Each message retried once, under its own id.
      for (const id of messageIds) expect(receiver.withId(id)).toHaveLength(2)
      expect(receiver.received).toHaveLength(2 * RETRIED)
    } finally {
      await db.end()
    }
  }, 150_000)

  it("finishes the backfill chain a kill -9'd server was running", async () => {
    const stack = await startGarminStack({
      name: "takeover-backfill",
      consumer: { consumerKey: "takeover-consumer-key", consumerSecret: "takeover-consumer-secret" },
      apiKey: API_KEY,
      env: {
        WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY,
        WEARFLOW_RUNNER_ADDRESS: "runner-a:7101",
        WEARFLOW_RUNNER_LOCK_EXPIRATION: "3 seconds",
        WEARFLOW_BACKFILL_ON_CONNECT: "true",
        WEARFLOW_BACKFILL_DAYS: "40",
        WEARFLOW_BACKFILL_TYPES: "dailies,sleeps,activities",
        WEARFLOW_BACKFILL_QUIET_PERIOD: "3 seconds",
        WEARFLOW_BACKFILL_SETTLE: "300 millis",
        WEARFLOW_BACKFILL_BUDGET_DAYS: "10000",
        WEARFLOW_BACKFILL_RETRY_BACKOFF: "200 millis"
      }
    })
    try {
      stack.garmin.state.backfill.deliverTo = `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`
      // Data comes a second after each request: the chain is certainly mid-way at the kill.
      stack.garmin.state.backfill.deliveryDelayMs = 1000
      const firstApi = wearflowApi(() => stack.server.baseUrl, API_KEY)
      const { userId, garminId } = await connectedUser(stack.garmin, firstApi, "takeover")
      const requests = () => stack.garmin.state.backfillRequests.filter((r) => r.userId === garminId)
      // Killed between requests (one in flight would be sent again by design), mid-chain.
      await eventually(async () => {
        const { rows } = await stack.db.query(
          "select count(*) filter (where status = 'sending')::int as sending, count(requested_at)::int as answered from backfill_windows where user_id = $1",
          [userId]
        )
        return rows[0].sending === 0 && rows[0].answered >= 2 ? true : undefined
      }, 30_000)
      await stack.server.stop("SIGKILL")
      const before = requests().length
      expect(before).toBeLessThan(4)

      const second = await startServer({ ...stack.env, WEARFLOW_RUNNER_ADDRESS: "runner-b:7102" })
      servers.push(second)
      stack.garmin.state.backfill.deliverTo = `${second.baseUrl}/api/v1/webhooks/garmin/push`
      const view = await backfillFinished(wearflowApi(() => second.baseUrl, API_KEY), userId, 90_000)
      expect(view.status).toBe("done")
      expect(Object.values(view.historical_pulls).map((p) => p.status)).toEqual(["success", "success", "success"])
      // The chain went on where it stopped: every window once, in order.
      expect(requests().map((r) => [r.type, r.status])).toEqual([["dailies", 202], ["sleeps", 202], ["activities", 202], ["activities", 202]])
      for (const resource of ["activity", "sleep", "workouts"]) {
        const { rows } = await stack.db.query("select count(*)::int as n from outbox where user_id = $1 and event_type = $2", [userId, `historical.data.${resource}.created`])
        expect(rows[0].n, resource).toBe(1)
      }
    } finally {
      await stack.close()
    }
  }, 150_000)
})
