/**
 * Silent-gap monitoring against two real server processes sharing one Postgres, with a loopback
 * operator-webhook receiver: a connection that synced daily then went silent (its arrivals
 * backdated: the monitor's clock is the database's now()) raises alerts — a row, a signed
 * `alert.opened` to the operator verified with `standardwebhooks` and `svix`, a metric, a line
 * in `GET /v2/alerts` for its team only — and clears itself when data returns. A provider
 * silent for everyone, an operator endpoint that is down for a while, and the webhooks sink's
 * notices (a message out of retries) go the same way. Alerts carry no health values.
 */
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { Redacted } from "effect"
import { Webhook as StandardWebhook } from "standardwebhooks"
import { Webhook as SvixWebhook } from "svix"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type Received, type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"
import { scrape } from "./support/metrics.ts"

const fixture = (name: string) => readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8")
const CLIENT_ID = "gap-alerts-garmin-client"
const API_KEY = "gap-alerts-api-key"
const OTHER_TEAM_KEY = "gap-alerts-other-team-key"
const ENCRYPTION_KEY = Buffer.alloc(32, 7).toString("base64")
const OPERATOR_SECRET = "whsec_" + Buffer.from("operator-webhook-secret-for-the-gap-tests!").toString("base64")

let databaseUrl: string
let db: pg.Client
let operator: Receiver
let customer: Receiver
const servers: Array<RunningServer> = []
const dirs: Array<string> = []

const api = wearflowApi(() => servers[0]!.baseUrl, API_KEY)
const otherTeam = wearflowApi(() => servers[1]!.baseUrl, OTHER_TEAM_KEY)

const ALERT_FIELDS = [
  "cleared_at", "detail", "endpoint_id", "id", "kind", "last_data_at", "message_id", "opened_at", "provider", "resource", "since", "status", "team_id", "user_id"
]

interface OperatorEvent {
  readonly event_type: "alert.opened" | "alert.cleared"
  readonly data: Record<string, unknown> & { id: string; kind: string; status: string }
}

/** The operator's deliveries, each verified with both libraries; answers the payloads. */
const operatorEvents = (): Array<OperatorEvent & { webhookId: string }> =>
  operator.received
    .filter((r) => r.headers["webhook-signature"] !== undefined)
    .map((r: Received) => {
      const payload = new StandardWebhook(OPERATOR_SECRET).verify(r.body, r.headers) as OperatorEvent
      expect(new SvixWebhook(OPERATOR_SECRET).verify(r.body, r.headers)).toEqual(payload)
      return { ...payload, webhookId: r.headers["webhook-id"]! }
    })

const eventFor = (alertId: string, type: OperatorEvent["event_type"]) =>
  eventually(async () => operatorEvents().find((e) => e.data.id === alertId && e.event_type === type), 30_000)

const rows = async (query: string, params: Array<unknown> = []) => (await db.query(query, params)).rows

/** Waits until every stored body is processed and the arrivals sink has passed every outbox event. */
const settled = () =>
  eventually(async () => {
    const [{ n }] = await rows(`
      select (select count(*) from inbox where processed_at is null)
           + (select count(*) from outbox o where not exists (
                select 1 from sink_cursors c where c.sink_id = 'data-arrivals' and (o.tx, o.position) <= (c.tx, c.position))) as n`)
    return Number(n) === 0 ? true : undefined
  }, 30_000)

const push = async (body: string) => {
  const response = await sendGarminNotification(servers[0]!.baseUrl, CLIENT_ID, "push", body)
  expect(response.status).toBe(200)
}

/** A dailies PUSH for `garminUserId` whose steps make it new content each time. */
const dailies = (garminUserId: string, steps: number) => {
  const body = JSON.parse(fixture("dailies")) as { dailies: Array<Record<string, unknown>> }
  return JSON.stringify({ dailies: [{ ...body.dailies[0], userId: garminUserId, summaryId: `daily-${garminUserId}`, steps }] })
}

let userCount = 0
const linkedUser = async (client: typeof api, garminUserId: string) => {
  const created = await client("POST", "/v2/user", { client_user_id: `gap-user-${++userCount}` })
  expect(created.status).toBe(200)
  const userId = created.body.user_id as string
  expect((await client("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })).status).toBe(200)
  return userId
}

/** Every page of the caller's alerts, following `next_cursor`. */
const allPages = async (client: typeof api, query: string, route = "/v2/alerts") => {
  const seen: Array<Record<string, unknown>> = []
  let cursor: string | null = null
  let pages = 0
  do {
    const reply = await client("GET", `${route}?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`)
    expect(reply.status, JSON.stringify(reply.body)).toBe(200)
    seen.push(...reply.body.data)
    cursor = reply.body.next_cursor
    pages++
  } while (cursor !== null && pages < 100)
  return { alerts: seen, pages }
}

const metricValue = async (kind: string, provider: string) => {
  return scrape(servers[1]!.baseUrl, "wearflow_alerts_open", { kind, provider })
}

beforeAll(async () => {
  databaseUrl = Redacted.value(await freshDatabaseUrl())
  operator = await startReceiver("/operator")
  customer = await startReceiver("/customer")
  const env = (dir: string) => ({
    DATABASE_URL: databaseUrl,
    GARMIN_CLIENT_ID: CLIENT_ID,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dir,
    // Both processes read what the other encrypted (webhook secrets, tokens).
    WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY,
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    WEARFLOW_GAP_MONITOR_INTERVAL: "300 millis",
    WEARFLOW_OPERATOR_WEBHOOK_URL: operator.url,
    WEARFLOW_OPERATOR_WEBHOOK_SECRET: OPERATOR_SECRET,
    WEARFLOW_OPERATOR_WEBHOOK_BACKOFF: "200 millis",
    WEARFLOW_OPERATOR_WEBHOOK_TIMEOUT: "2 seconds",
    WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
    WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
    WEARFLOW_WEBHOOK_RETRY_SCHEDULE: "100 millis,100 millis",
    WEARFLOW_WEBHOOK_TIMEOUT: "1 second",
    LOG_LEVEL: "Debug"
  })
  for (let i = 0; i < 2; i++) dirs.push(await fs.mkdtemp(path.join(os.tmpdir(), `wearflow-gaps-${i}-`)))
  // One first (it migrates and makes the bootstrap team), then the second beside it.
  servers.push(await startServer(env(dirs[0]!)))
  servers.push(await startServer(env(dirs[1]!)))
  db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  const team = (await db.query("insert into teams (id, name) values (gen_random_uuid(), 'other') returning id")).rows[0].id
  await db.query("insert into api_keys (key_hash, team_id, label) values ($1, $2, 'test')", [createHash("sha256").update(OTHER_TEAM_KEY).digest(), team])
}, 120_000)

afterAll(async () => {
  await db?.end()
  await Promise.all(servers.map((s) => s.stop()))
  await operator?.close()
  await customer?.close()
  await Promise.all(dirs.map((dir) => fs.rm(dir, { recursive: true, force: true })))
})

describe("silent-gap alerts", () => {
  let userId: string
  let activityAlert: Record<string, unknown>

  it("a connection that synced daily and went silent raises an alert: row, signed operator event, metric, team-scoped listing", async () => {
    userId = await linkedUser(api, "gap-garmin-user-1")
    // The other team's user syncs too, and is not silent.
    await linkedUser(otherTeam, "gap-garmin-user-2")
    await push(dailies("gap-garmin-user-1", 73131))
    await push(dailies("gap-garmin-user-2", 84191))
    await settled()
    const today = await rows("select resource, events from data_arrivals where user_id = $1 order by resource", [userId])
    expect(today.map((r) => r.resource)).toContain("activity")

    // History: data on each of the 7 days up to three days ago, then nothing (72 h > 48 h).
    await db.query(`update data_arrivals set day = day - 3, last_at = last_at - interval '3 days' where user_id = $1`, [userId])
    await db.query(`update connection_arrivals set last_day = last_day - 3, last_at = last_at - interval '3 days' where user_id = $1`, [userId])
    await db.query(`
      insert into data_arrivals (user_id, provider, resource, day, team_id, events, last_at)
      select user_id, provider, resource, day - g, team_id, 1, last_at - make_interval(days => g)
      from data_arrivals, generate_series(1, 6) g where user_id = $1`, [userId])

    const opened = await eventually(async () => {
      const found = await rows("select * from alerts where kind = 'connection.gap' and user_id = $1 and status = 'open'", [userId])
      return found.length === today.length ? found : undefined
    }, 30_000)
    const activity = opened.find((a) => a.resource === "activity")!
    expect(activity).toMatchObject({ provider: "garmin", status: "open", subject: `${userId}/garmin/activity` })
    expect(activity.team_id).not.toBeNull()
    expect(activity.last_data_at.getTime()).toBeLessThan(Date.now() - 71 * 3600_000)

    // The team's whole volume of each resource dropped to nothing as well.
    await eventually(async () => {
      const drops = await rows("select resource from alerts where kind = 'resource.volume_drop' and team_id = $1 and status = 'open'", [activity.team_id])
      return drops.length === today.length ? drops : undefined
    }, 30_000)

    // The operator hears of it once, signed, whichever process sent it.
    const event = await eventFor(activity.id, "alert.opened")
    expect(event.data).toMatchObject({ kind: "connection.gap", status: "open", user_id: userId, provider: "garmin", resource: "activity", team_id: activity.team_id })
    expect(Object.keys(event.data).sort()).toEqual(ALERT_FIELDS)
    expect(operatorEvents().filter((e) => e.data.id === activity.id && e.event_type === "alert.opened")).toHaveLength(1)

    // The metric, read from another process than the one that may have opened it.
    await eventually(async () => ((await metricValue("connection.gap", "garmin")) === today.length ? true : undefined), 30_000)

    // Listed for its team, paged; the other team sees none of it.
    const { alerts, pages } = await allPages(api, "limit=1")
    expect(pages).toBeGreaterThanOrEqual(alerts.length)
    expect(new Set(alerts.map((a) => a.id)).size).toBe(alerts.length)
    expect(alerts.filter((a) => a.kind === "connection.gap").map((a) => a.id).sort()).toEqual(opened.map((a) => a.id).sort())
    activityAlert = alerts.find((a) => a.id === activity.id)!
    expect(Object.keys(activityAlert).sort()).toEqual(ALERT_FIELDS)
    expect(activityAlert).toMatchObject({ kind: "connection.gap", status: "open", user_id: userId, provider: "garmin", resource: "activity" })
    expect((await otherTeam("GET", "/v2/alerts?status=all")).body).toEqual({ data: [], next_cursor: null })

    // No health value anywhere in an alert: the steps pushed are nowhere in the rows or events.
    const everything = JSON.stringify([await rows("select * from alerts"), operator.received.map((r) => r.body), alerts])
    expect(everything).not.toMatch(/73131|84191/)

    // A cursor that is not one is refused without being quoted.
    const bad = await api("GET", "/v2/alerts?cursor=not-a-cursor-zz")
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).not.toContain("not-a-cursor-zz")
  }, 120_000)

  it("clears itself when data returns, with an alert.cleared event", async () => {
    await push(dailies("gap-garmin-user-1", 1500))
    const cleared = await eventually(async () => {
      const [row] = await rows("select * from alerts where id = $1 and status = 'cleared'", [activityAlert.id])
      return row
    }, 30_000)
    expect(cleared.cleared_at).not.toBeNull()
    const event = await eventFor(cleared.id, "alert.cleared")
    expect(event.data).toMatchObject({ kind: "connection.gap", status: "cleared", resource: "activity" })
    // Opened before cleared, each once.
    const ofAlert = operatorEvents().filter((e) => e.data.id === cleared.id).map((e) => e.event_type)
    expect(ofAlert).toEqual(["alert.opened", "alert.cleared"])
    const listed = await allPages(api, "status=cleared")
    expect(listed.alerts.map((a) => a.id)).toContain(cleared.id)
    // The team's activity volume is back too.
    await eventually(async () =>
      (await rows("select 1 from alerts where kind = 'resource.volume_drop' and resource = 'activity' and status = 'open'")).length === 0 ? true : undefined, 30_000)
  }, 60_000)

  it("a provider with active connections that sent nothing at all raises a provider-wide alert no team lists, the admin listing does", async () => {
    await db.query("update provider_arrivals set last_received_at = now() - interval '30 hours' where provider = 'garmin'")
    const [alert] = await eventually(async () => {
      const found = await rows("select * from alerts where kind = 'provider.silent' and provider = 'garmin' and status = 'open'")
      return found.length === 1 ? found : undefined
    }, 30_000)
    expect(alert.team_id).toBeNull()
    const event = await eventFor(alert.id, "alert.opened")
    expect(event.data).toMatchObject({ kind: "provider.silent", provider: "garmin", team_id: null })
    await eventually(async () => ((await metricValue("provider.silent", "garmin")) === 1 ? true : undefined), 30_000)
    for (const client of [api, otherTeam]) {
      const { alerts } = await allPages(client, "status=all")
      expect(alerts.map((a) => a.id)).not.toContain(alert.id)
    }
    // The admin listing shows it (the bootstrap key is an admin key), a page at a time, beside
    // the teams' own; a team key is refused there.
    const admin = await allPages(api, "status=all&limit=1", "/v2/admin/alerts")
    expect(admin.alerts.map((a) => a.id)).toContain(alert.id)
    expect(new Set(admin.alerts.map((a) => a.id)).size).toBe(admin.alerts.length)
    expect(admin.alerts.some((a) => a.team_id !== null)).toBe(true)
    expect((await otherTeam("GET", "/v2/admin/alerts")).status).toBe(403)

    // Anything from the provider clears it — also past a long run of inbox ids that are gone
    // (retention deletes old bodies): the monitor's read of the inbox steps over the gap.
    await db.query("alter table inbox alter column id restart with 1000000")
    await push(dailies("gap-garmin-user-2", 2500))
    await eventFor(alert.id, "alert.cleared")
    await eventually(async () => ((await metricValue("provider.silent", "garmin")) === 0 ? true : undefined), 30_000)
  }, 60_000)

  it("an operator endpoint that is down gets the alert once it is back, under one id", async () => {
    operator.fallback = 503
    const before = operator.received.length
    await db.query("update provider_arrivals set last_received_at = now() - interval '30 hours' where provider = 'garmin'")
    const [alert] = await eventually(async () => {
      const found = await rows("select id from alerts where kind = 'provider.silent' and status = 'open'")
      return found.length === 1 ? found : undefined
    }, 30_000)
    // Several attempts fail (backing off), and the notice stays.
    await eventually(async () => {
      const [notice] = await rows("select attempts, delivered_at from operator_notices where alert_id = $1 and event_type = 'alert.opened'", [alert.id])
      return notice && notice.attempts >= 3 && notice.delivered_at === null ? true : undefined
    }, 30_000)
    operator.fallback = 204
    // The receiver records every request, failed ones included: the notice says when one was taken.
    const [notice] = await eventually(async () => {
      const found = await rows("select event_id, attempts from operator_notices where alert_id = $1 and event_type = 'alert.opened' and delivered_at is not null", [alert.id])
      return found.length === 1 ? found : undefined
    }, 30_000)
    const attempts = operator.received.slice(before).filter((r) => r.headers["webhook-id"] === notice.event_id)
    expect(attempts.length).toBe(notice.attempts)
    expect(attempts.length).toBeGreaterThanOrEqual(4)
    expect(new Set(attempts.map((r) => r.body)).size).toBe(1)
    expect((await eventFor(alert.id, "alert.opened")).data).toMatchObject({ kind: "provider.silent", provider: "garmin" })
    await push(dailies("gap-garmin-user-2", 2600))
    await eventFor(alert.id, "alert.cleared")
  }, 60_000)

  it("a customer's message out of retries is an alert for its team, cleared when it is delivered by hand", async () => {
    customer.fallback = 503
    const created = await api("POST", "/v2/webhooks", { url: customer.url })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const endpointId = created.body.id as string
    const { message_id: messageId } = (await api("POST", `/v2/webhooks/${endpointId}/test`)).body
    const [alert] = await eventually(async () => {
      const found = await rows("select * from alerts where kind = 'message.attempt.exhausted' and message_id = $1", [messageId])
      return found.length === 1 ? found : undefined
    }, 30_000)
    expect(alert).toMatchObject({ status: "open", endpoint_id: endpointId, detail: "3 attempts failed" })
    expect((await eventFor(alert.id, "alert.opened")).data).toMatchObject({ kind: "message.attempt.exhausted", endpoint_id: endpointId, message_id: messageId })
    const { alerts } = await allPages(api, "status=open")
    expect(alerts.find((a) => a.id === alert.id)).toMatchObject({ kind: "message.attempt.exhausted", team_id: alert.team_id })
    expect((await allPages(otherTeam, "status=all")).alerts.map((a) => a.id)).not.toContain(alert.id)

    customer.fallback = 204
    expect((await api("POST", `/v2/webhooks/messages/${messageId}/resend`)).status).toBe(202)
    await eventFor(alert.id, "alert.cleared")
  }, 60_000)

  it("erasing a user erases their arrivals, alerts and the operator events naming them", async () => {
    expect((await rows("select 1 from alerts where user_id = $1", [userId])).length).toBeGreaterThan(0)
    await db.query("delete from users where id = $1", [userId])
    const left = await rows(`
      select (select count(*) from data_arrivals where user_id = $1)
           + (select count(*) from connection_arrivals where user_id = $1)
           + (select count(*) from alerts where user_id = $1)
           + (select count(*) from operator_notices where payload::text like '%' || $1 || '%') as n`, [userId])
    expect(Number(left[0].n)).toBe(0)
  })
})
