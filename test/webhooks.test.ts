/**
 * The webhooks sink against the real server: Garmin PUSH → outbox → signed POSTs to customer
 * receivers on loopback, verified with the real `svix` and `standardwebhooks` packages;
 * failures, retries, rotation, filters, FIFO, resend and recover; the management API.
 */
import { Webhook as StandardWebhook } from "standardwebhooks"
import { Webhook as SvixWebhook } from "svix"
import { createHash, randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { healthProbe, leakedProbeValues, probeNeedles, probeValues } from "./support/health-probe.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type Received, type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const fixture = (name: string) => readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8")
const CLIENT_ID = "webhooks-garmin-client"
const API_KEY = "webhooks-api-key"
const OTHER_TEAM_KEY = "webhooks-other-team-key"
const SPEC_USER = "4aacafe82427c251df9c9592d0c06768"

let dir: string
let databaseUrl: string
let server: RunningServer
let db: pg.Client
const receivers: Array<Receiver> = []

const api = wearflowApi(() => server.baseUrl, API_KEY)
const otherTeam = wearflowApi(() => server.baseUrl, OTHER_TEAM_KEY)

const receiver = async () => {
  const r = await startReceiver()
  receivers.push(r)
  return r
}

const createEndpoint = async (body: Record<string, unknown>) => {
  const reply = await api("POST", "/v2/webhooks", body)
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  await secretOf(reply.body.id)
  return reply.body as { id: string; url: string; filter_types: Array<string>; disabled: boolean; updated_at: string }
}

/** Every signing secret an endpoint had during the run, rotated-out ones included: none may reach a log. */
const secretsSeen = new Set<string>()

const secretOf = async (endpointId: string) => {
  const reply = await api("GET", `/v2/webhooks/${endpointId}/secret`)
  expect(reply.status).toBe(200)
  secretsSeen.add(reply.body.key as string)
  return reply.body.key as string
}

const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)

/**
 * Waits until the pipeline has drained for an endpoint: every stored body processed, the
 * webhooks sink past every outbox event, and none of the endpoint's messages still to send
 * or retry. Answers how many requests the endpoint was sent (its recorded attempts).
 */
const drainedFor = (endpointId: string) =>
  waitFor(async () => {
    const waiting = await count(`
      select (select count(*) from inbox where processed_at is null)
           + (select count(*) from outbox o where not exists (
                select 1 from sink_cursors c where c.sink_id = 'webhooks' and (o.tx, o.position) <= (c.tx, c.position)))
           + (select count(*) from webhook_messages where endpoint_id = $1 and status in ('pending', 'sending', 'retrying')) as n`, [endpointId])
    if (waiting > 0) return undefined
    return count("select count(*) as n from webhook_attempts a join webhook_messages m on m.id = a.message_id where m.endpoint_id = $1", [endpointId])
  }, 30_000)

/** Verifies a delivery with svix (svix-* headers) or standardwebhooks (webhook-* headers); the payload. */
const verified = (received: Received, secret: string) =>
  received.headers["svix-id"] !== undefined
    ? (new SvixWebhook(secret).verify(received.body, received.headers) as Record<string, unknown>)
    : (new StandardWebhook(secret).verify(received.body, received.headers) as Record<string, unknown>)

const idOf = (received: Received) => received.headers["svix-id"] ?? received.headers["webhook-id"]!

const messagesOf = async (endpointId: string, query = "") => {
  const reply = await api("GET", `/v2/webhooks/${endpointId}/messages${query}`)
  expect(reply.status).toBe(200)
  return reply.body.data as Array<{
    id: string
    event_id: string | null
    event_type: string
    status: string
    attempts: Array<{ attempt: number; trigger: string; status: string; response_status_code: number | null; latency_ms: number; response_excerpt: string | null; error: string | null }>
  }>
}

const waitFor = <A>(probe: () => A | undefined | Promise<A | undefined>, timeoutMs = 20_000) =>
  eventually(async () => await probe(), timeoutMs)

let userCount = 0
/** A new Wearflow user linked to `garminUserId` (re-linking moves the Garmin user to them). */
const linkedUser = async (garminUserId = SPEC_USER) => {
  const created = await api("POST", "/v2/user", { client_user_id: `webhook-user-${++userCount}` })
  expect(created.status).toBe(200)
  const userId = created.body.user_id as string
  const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: `${garminUserId}` })
  expect(linked.status).toBe(200)
  return userId
}

const push = async (body: string) => {
  const response = await sendGarminNotification(server.baseUrl, CLIENT_ID, "push", body)
  expect(response.status).toBe(200)
}

/** A dailies PUSH for `garminUserId` whose steps make it new content each time. */
const dailies = (garminUserId: string, steps: number) => {
  const body = JSON.parse(fixture("dailies")) as { dailies: Array<Record<string, unknown>> }
  return JSON.stringify({ dailies: [{ ...body.dailies[0], userId: garminUserId, summaryId: `daily-${garminUserId}`, steps }] })
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-webhooks-"))
  databaseUrl = Redacted.value(await freshDatabaseUrl())
  server = await startServer({
    DATABASE_URL: databaseUrl,
    GARMIN_CLIENT_ID: CLIENT_ID,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dir,
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
    WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
    WEARFLOW_WEBHOOK_RETRY_SCHEDULE: "200 millis,200 millis,200 millis,200 millis",
    WEARFLOW_WEBHOOK_TIMEOUT: "1 second",
    WEARFLOW_WEBHOOK_DISABLE_AFTER: "8 seconds",
    // The most a log carries: secrets and health values must stay out of it even then.
    LOG_LEVEL: "Debug"
  })
  db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  // A second team, to prove tenants never see each other's endpoints.
  const team = (await db.query("insert into teams (id, name) values (gen_random_uuid(), 'other') returning id")).rows[0].id
  await db.query("insert into api_keys (key_hash, team_id, label) values ($1, $2, 'test')", [
    createHash("sha256").update(OTHER_TEAM_KEY).digest(),
    team
  ])
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  await Promise.all(receivers.map((r) => r.close()))
  await fs.rm(dir, { recursive: true, force: true })
})

describe("signed delivery", () => {
  it("a Garmin PUSH reaches endpoints signed so that svix and standardwebhooks verify it", async () => {
    const svixReceiver = await receiver()
    const standardReceiver = await receiver()
    const svixEndpoint = await createEndpoint({ url: svixReceiver.url, filter_types: ["daily.data.*"] })
    const standardEndpoint = await createEndpoint({ url: standardReceiver.url, signature_headers: "webhook", filter_types: ["daily.data.activity.created"] })
    const userId = await linkedUser()
    await push(fixture("dailies"))

    const activities = await waitFor(() => {
      const got = standardReceiver.received
      return got.length >= 2 ? got : undefined
    })
    const svixSecret = await secretOf(svixEndpoint.id)
    const standardSecret = await secretOf(standardEndpoint.id)
    expect(svixSecret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/)

    for (const delivery of activities) {
      const payload = verified(delivery, standardSecret)
      expect(payload).toMatchObject({ event_type: "daily.data.activity.created", user_id: userId, data: { user_id: userId, source: { provider: "garmin" } } })
      expect(delivery.headers["svix-id"]).toBeUndefined()
      // The other endpoint's secret does not verify it.
      expect(() => new StandardWebhook(svixSecret).verify(delivery.body, delivery.headers)).toThrow()
    }
    expect(activities.map((d) => (JSON.parse(d.body) as { data: { steps: number } }).data.steps).sort()).toEqual([3305, 4210])

    // daily.data.* takes the activity and its heartrate / stress timeseries, each exactly once.
    const outbox = await db.query("select event_id, event_type, payload from outbox where user_id = $1 and event_type like 'daily.data.%' order by position", [userId])
    const svixDeliveries = await waitFor(() => (svixReceiver.received.length >= outbox.rowCount! ? svixReceiver.received : undefined))
    expect(await drainedFor(svixEndpoint.id)).toBe(outbox.rowCount)
    expect(svixReceiver.received.length).toBe(outbox.rowCount)
    for (const delivery of svixDeliveries) {
      const payload = verified(delivery, svixSecret)
      expect(delivery.headers["svix-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/)
      expect(delivery.headers["content-type"]).toBe("application/json")
      expect(outbox.rows.map((r) => r.payload)).toContainEqual(payload)
    }
    expect(new Set(svixDeliveries.map(idOf)).size).toBe(svixDeliveries.length)

    const log = await waitFor(async () => {
      const messages = await messagesOf(svixEndpoint.id)
      return messages.length === outbox.rowCount && messages.every((m) => m.status === "delivered") ? messages : undefined
    })
    expect(log.map((m) => m.event_id).sort()).toEqual(outbox.rows.map((r) => r.event_id).sort())
    expect(new Set(log.map((m) => m.id))).toEqual(new Set(svixDeliveries.map(idOf)))
    for (const message of log) {
      expect(message.attempts).toHaveLength(1)
      expect(message.attempts[0]).toMatchObject({ attempt: 1, trigger: "first", status: "success", response_status_code: 204, error: null })
    }
    // A first attempt that succeeds is kept in its message row: no attempt row of its own.
    expect(await count("select count(*) as n from webhook_attempt_log where message_id = any($1)", [log.map((m) => m.id)])).toBe(0)
  })

  it("sends custom headers, and re-sends nothing when the same PUSH arrives again", async () => {
    const target = await receiver()
    const endpoint = await createEndpoint({ url: target.url, filter_types: ["daily.data.activity.*"], headers: { Authorization: "Bearer customer-token" } })
    expect((await api("GET", `/v2/webhooks/${endpoint.id}/headers`)).body).toEqual({ headers: { Authorization: "Bearer customer-token" } })
    await linkedUser("hdr-user")
    await push(dailies("hdr-user", 7_391_001))
    const first = await waitFor(() => target.received[0])
    expect(first.headers["authorization"]).toBe("Bearer customer-token")

    const put = await api("PUT", `/v2/webhooks/${endpoint.id}/headers`, { headers: { "X-Customer": "one" } })
    expect(put.status).toBe(200)
    await push(dailies("hdr-user", 7_391_001)) // identical content: no event, no message
    await push(dailies("hdr-user", 7_391_002)) // changed: one .updated event
    const second = await waitFor(() => target.received[1])
    expect(JSON.parse(second.body).event_type).toBe("daily.data.activity.updated")
    expect(second.headers["x-customer"]).toBe("one")
    expect(second.headers["authorization"]).toBeUndefined()
    expect(await drainedFor(endpoint.id)).toBe(2)
    expect(target.received).toHaveLength(2)

    const reserved = await api("PUT", `/v2/webhooks/${endpoint.id}/headers`, { headers: { "svix-id": "forged" } })
    expect(reserved.status).toBe(400)
    expect(reserved.body.message).toContain("one Wearflow sets")
    expect(reserved.body.message).not.toContain("svix-id") // never echoing the caller's value
  })

  it("delivers deletion events like any other, to endpoints whose filters take them", async () => {
    const exact = await receiver()
    const other = await receiver()
    const exactEndpoint = await createEndpoint({ url: exact.url, filter_types: ["daily.data.sleep.deleted"] })
    const otherEndpoint = await createEndpoint({ url: other.url, filter_types: ["daily.data.sleep.created"] })
    const userId = await linkedUser("deleting-user")
    // As the store appends it when the user deleted a sleep at the provider (no provider here sends deletions).
    const data = { id: randomUUID(), user_id: userId, provider: "oura", resource: "sleep", source_id: "sleep-doc-1", deleted_at: new Date().toISOString() }
    await db.query(
      `insert into outbox (event_id, event_type, team_id, user_id, record_id, payload)
       select gen_random_uuid(), 'daily.data.sleep.deleted', u.team_id, u.id, $2,
              jsonb_build_object('event_type', 'daily.data.sleep.deleted', 'data', $3::jsonb, 'user_id', u.id, 'client_user_id', u.client_user_id, 'team_id', u.team_id)
       from users u where u.id = $1`,
      [userId, data.id, JSON.stringify(data)]
    )
    const delivery = await waitFor(() => exact.received[0])
    expect(verified(delivery, await secretOf(exactEndpoint.id))).toMatchObject({ event_type: "daily.data.sleep.deleted", user_id: userId, data })
    expect(await drainedFor(exactEndpoint.id)).toBe(1)
    expect(await drainedFor(otherEndpoint.id)).toBe(0)
    expect(other.received).toHaveLength(0)
  })
})

describe("failures and retries", () => {
  it("retries a failing, redirecting, hanging and vanishing receiver under one message id until it succeeds", async () => {
    const target = await receiver()
    target.answers = [{ status: 500, body: "boom" }, { status: 302, location: "https://example.com/" }, { hangMs: 2500 }, "drop"]
    const endpoint = await createEndpoint({ url: target.url })
    const test = await api("POST", `/v2/webhooks/${endpoint.id}/test`)
    expect(test.status).toBe(202)
    const messageId = test.body.message_id as string

    const message = await waitFor(async () => {
      const [m] = await messagesOf(endpoint.id)
      return m?.status === "delivered" ? m : undefined
    })
    expect(message.id).toBe(messageId)
    expect(target.withId(messageId)).toHaveLength(5)
    expect(target.received.every((r) => idOf(r) === messageId)).toBe(true)
    const secret = await secretOf(endpoint.id)
    for (const r of target.received) expect(verified(r, secret)).toMatchObject({ event_type: "webhook.test" })

    expect(message.attempts.map((a) => [a.attempt, a.trigger, a.status, a.response_status_code])).toEqual([
      [1, "first", "failure", 500],
      [2, "retry", "failure", 302],
      [3, "retry", "failure", null],
      [4, "retry", "failure", null],
      [5, "retry", "success", 204]
    ])
    expect(message.attempts[0]!.response_excerpt).toBe("boom")
    expect(message.attempts[1]!.error).toContain("redirect")
    expect(message.attempts[2]!.error).toBe("timed out")
    expect(message.attempts[2]!.latency_ms).toBeGreaterThanOrEqual(900)
    expect(message.attempts[3]!.error).toMatch(/socket|closed|ECONNRESET/i)
  })

  it("sends an event's retry the same bytes as its first attempt, and logs both attempts", async () => {
    const target = await receiver()
    target.answers = [500]
    const endpoint = await createEndpoint({ url: target.url, filter_types: ["daily.data.activity.*"] })
    await linkedUser("retried-user")
    await push(dailies("retried-user", 7))
    const [message] = await waitFor(async () => {
      const messages = await messagesOf(endpoint.id)
      return messages.length === 1 && messages[0]!.status === "delivered" ? messages : undefined
    })
    expect(target.withId(message!.id)).toHaveLength(2)
    const [first, retried] = target.received
    expect(retried!.body).toBe(first!.body)
    expect(verified(retried!, await secretOf(endpoint.id))).toMatchObject({ data: { steps: 7 } })
    expect(message!.attempts.map((a) => [a.attempt, a.trigger, a.status, a.response_status_code])).toEqual([
      [1, "first", "failure", 500],
      [2, "retry", "success", 204]
    ])
  })

  it("fails a message after the last retry, keeps the record, and recovers it under the same id", async () => {
    const target = await receiver()
    target.fallback = 503
    const endpoint = await createEndpoint({ url: target.url })
    const before = new Date().toISOString()
    const { message_id: messageId } = (await api("POST", `/v2/webhooks/${endpoint.id}/test`)).body
    const failed = await waitFor(async () => {
      const [m] = await messagesOf(endpoint.id, "?status=failed")
      return m
    })
    expect(failed.id).toBe(messageId)
    expect(failed.attempts).toHaveLength(5) // the first attempt and 4 retries
    const notice = await db.query("select kind, detail from webhook_notices where message_id = $1", [messageId])
    expect(notice.rows).toEqual([{ kind: "message.attempt.exhausted", detail: "5 attempts failed" }])

    target.fallback = 200
    const recovered = await api("POST", `/v2/webhooks/${endpoint.id}/recover`, { since: before })
    expect(recovered).toEqual({ status: 202, body: { recovered: 1 } })
    const delivered = await waitFor(async () => {
      const [m] = await messagesOf(endpoint.id)
      return m?.status === "delivered" ? m : undefined
    })
    expect(delivered.id).toBe(messageId)
    expect(delivered.attempts.at(-1)).toMatchObject({ attempt: 6, trigger: "manual", status: "success", response_status_code: 200 })
    expect(target.withId(messageId)).toHaveLength(6)

    // Resending a delivered message sends it once more, same id.
    const resent = await api("POST", `/v2/webhooks/messages/${messageId}/resend`)
    expect(resent).toEqual({ status: 202, body: { message_id: messageId, status: "pending" } })
    await waitFor(() => (target.withId(messageId).length === 7 ? true : undefined))
    expect((await api("POST", "/v2/webhooks/messages/msg_unknown/resend")).status).toBe(404)
  })

  it("disables an endpoint that keeps failing, with an operational notice, and sends it nothing more", async () => {
    const target = await receiver()
    target.fallback = 500
    const endpoint = await createEndpoint({ url: target.url })
    // Failures keep coming for longer than WEARFLOW_WEBHOOK_DISABLE_AFTER (8 s).
    const disabled = await waitFor(async () => {
      await api("POST", `/v2/webhooks/${endpoint.id}/test`)
      const { body } = await api("GET", `/v2/webhooks/${endpoint.id}`)
      return body.disabled ? body : await new Promise<undefined>((r) => setTimeout(() => r(undefined), 700))
    }, 30_000)
    expect(disabled.disabled_reason).toMatch(/^failing continuously since \d{4}-/)
    const notices = await db.query("select kind from webhook_notices where endpoint_id = $1 and kind = 'endpoint.disabled'", [endpoint.id])
    expect(notices.rowCount).toBe(1)
    // The operator's alert for it is open (test/gap-alerts.test.ts follows alerts to the operator webhook).
    const alert = await db.query("select status, team_id, detail from alerts where kind = 'endpoint.disabled' and endpoint_id = $1", [endpoint.id])
    expect(alert.rows).toEqual([{ status: "open", team_id: expect.any(String), detail: expect.stringMatching(/^failing continuously since \d{4}-/) }])
    const listed = await api("GET", "/v2/alerts")
    expect(listed.body.data.filter((a: { endpoint_id: string }) => a.endpoint_id === endpoint.id).map((a: { kind: string }) => a.kind)).toContain("endpoint.disabled")
    expect((await otherTeam("GET", "/v2/alerts?status=all")).body.data).toEqual([])

    // Events for a disabled endpoint make no messages; re-enabling starts again.
    const sent = await drainedFor(endpoint.id)
    expect(target.received.length).toBe(sent)
    const disabledUser = await linkedUser("disabled-user")
    await push(dailies("disabled-user", 5))
    await waitFor(async () => ((await count("select count(*) as n from outbox where user_id = $1", [disabledUser])) > 0 ? true : undefined))
    expect(await drainedFor(endpoint.id)).toBe(sent)
    expect(await count("select count(*) as n from webhook_messages where endpoint_id = $1 and user_id = $2", [endpoint.id, disabledUser])).toBe(0)
    expect(target.received.length).toBe(sent)
    target.fallback = 200
    const enabled = await api("PATCH", `/v2/webhooks/${endpoint.id}`, { disabled: false })
    expect(enabled.body).toMatchObject({ disabled: false, disabled_reason: null })
    expect((await db.query("select status from alerts where kind = 'endpoint.disabled' and endpoint_id = $1", [endpoint.id])).rows).toEqual([{ status: "cleared" }])
    await api("POST", `/v2/webhooks/${endpoint.id}/test`)
    await waitFor(() => (target.received.length > sent ? true : undefined))
  })
})

describe("rate limit", () => {
  it("spaces an endpoint's deliveries to its rate limit", async () => {
    const target = await receiver()
    const endpoint = await createEndpoint({ url: target.url, rate_limit: 5 })
    for (let i = 0; i < 6; i++) await api("POST", `/v2/webhooks/${endpoint.id}/test`)
    await waitFor(() => (target.received.length === 6 ? true : undefined))
    const at = target.received.map((r) => r.at).sort((a, b) => a - b)
    // 5 per second: at least ~200 ms between sends (a busy machine only widens the gaps).
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(150)
  })
})

describe("secret rotation", () => {
  it("signs with old and new secrets during the grace period, so receivers holding either verify", async () => {
    const target = await receiver()
    const endpoint = await createEndpoint({ url: target.url })
    const old = await secretOf(endpoint.id)
    // No body at all, as most callers send it.
    const rotated = await fetch(`${server.baseUrl}/v2/webhooks/${endpoint.id}/secret/rotate`, { method: "POST", headers: { "x-api-key": API_KEY } })
    expect(rotated.status).toBe(200)
    const fresh = ((await rotated.json()) as { key: string }).key
    expect(fresh).not.toBe(old)
    expect(await secretOf(endpoint.id)).toBe(fresh)

    await api("POST", `/v2/webhooks/${endpoint.id}/test`)
    const delivery = await waitFor(() => target.received[0])
    expect(delivery.headers["svix-signature"]!.split(" ")).toHaveLength(2)
    expect(verified(delivery, fresh)).toMatchObject({ event_type: "webhook.test" })
    expect(verified(delivery, old)).toMatchObject({ event_type: "webhook.test" })
    expect(new StandardWebhook(fresh).verify(delivery.body, {
      "webhook-id": delivery.headers["svix-id"]!,
      "webhook-timestamp": delivery.headers["svix-timestamp"]!,
      "webhook-signature": delivery.headers["svix-signature"]!
    })).toMatchObject({ event_type: "webhook.test" })

    // A key of the caller's own; a bad one is refused without echoing it.
    const own = `whsec_${Buffer.alloc(32, 7).toString("base64")}`
    secretsSeen.add(own)
    expect((await api("POST", `/v2/webhooks/${endpoint.id}/secret/rotate`, { key: own })).body).toEqual({ key: own })
    const bad = await api("POST", `/v2/webhooks/${endpoint.id}/secret/rotate`, { key: "whsec_short" })
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).not.toContain("whsec_short")
  })
})

describe("ordering", () => {
  it("FIFO endpoints deliver each user's messages in order, holding later ones while one is retried", async () => {
    const target = await receiver()
    const endpoint = await createEndpoint({ url: target.url, fifo: true, filter_types: ["daily.data.activity.*"] })
    const userId = await linkedUser("fifo-user")
    target.answers = [500, 500]
    const eventsOfUser = async () =>
      (await db.query("select event_id from outbox where user_id = $1 and event_type like 'daily.data.activity.%' order by position", [userId])).rows.map((r) => r.event_id as string)
    // Five days in one PUSH: five events, all in the outbox before the first attempt's retry.
    const base = JSON.parse(dailies("fifo-user", 1)).dailies[0]
    await push(JSON.stringify({ dailies: [1, 2, 3, 4, 5].map((day) => ({ ...base, summaryId: `fifo-${day}`, calendarDate: `2016-01-1${day}`, steps: day })) }))
    await waitFor(async () => ((await eventsOfUser()).length === 5 ? true : undefined))
    const events = await eventsOfUser()
    await waitFor(async () => {
      const delivered = await messagesOf(endpoint.id)
      return delivered.length === 5 && delivered.every((m) => m.status === "delivered") ? true : undefined
    })
    const bodies = target.received.map((r) => JSON.parse(r.body) as { data: { id: string } })
    const outbox = await db.query("select event_id, payload from outbox where event_id = any($1)", [events])
    const eventOf = new Map(outbox.rows.map((r) => [JSON.stringify(r.payload), r.event_id as string]))
    const sequence = target.received.map((r, i) => eventOf.get(JSON.stringify(JSON.parse(r.body))) ?? `unknown ${i} ${bodies[i]!.data.id}`)
    // The first message is tried three times before anything after it; then the rest, in order.
    expect(sequence).toEqual([events[0], events[0], ...events])
  })
})

describe("management API", () => {
  it("creates, lists, reads, updates and deletes endpoints, per team", async () => {
    const created = await createEndpoint({ url: "http://127.0.0.1:9/x", description: "crm", rate_limit: 50, filter_types: ["provider.connection.*"] })
    expect(created).toMatchObject({ url: "http://127.0.0.1:9/x", description: "crm", rate_limit: 50, disabled: false, filter_types: ["provider.connection.*"], signature_headers: "svix", fifo: false })
    expect(Object.keys(created).sort()).toEqual(["created_at", "description", "disabled", "disabled_reason", "fifo", "filter_types", "id", "rate_limit", "signature_headers", "updated_at", "url"])

    const listed = await api("GET", "/v2/webhooks")
    expect(listed.body.data.map((e: { id: string }) => e.id)).toContain(created.id)
    const patched = await api("PATCH", `/v2/webhooks/${created.id}`, { rate_limit: null, description: "crm v2" })
    expect(patched.body).toMatchObject({ rate_limit: null, description: "crm v2", url: created.url })
    expect(Date.parse(patched.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.updated_at))

    // Another team sees none of it.
    expect((await otherTeam("GET", "/v2/webhooks")).body).toEqual({ data: [], next_cursor: null })
    expect((await otherTeam("GET", `/v2/webhooks/${created.id}`)).status).toBe(404)
    expect((await otherTeam("GET", `/v2/webhooks/${created.id}/secret`)).status).toBe(404)
    expect((await otherTeam("DELETE", `/v2/webhooks/${created.id}`)).status).toBe(404)

    expect(await api("DELETE", `/v2/webhooks/${created.id}`)).toEqual({ status: 204, body: null })
    expect((await api("GET", `/v2/webhooks/${created.id}`)).status).toBe(404)
    expect((await api("GET", "/v2/webhooks/not-a-uuid")).status).toBe(404)
  })

  it("deleting an endpoint deletes its messages and their attempts (messages have no foreign key to endpoints)", async () => {
    const failing = await receiver()
    failing.answers = [500]
    const doomed = await createEndpoint({ url: failing.url })
    const kept = await createEndpoint({ url: (await receiver()).url })
    const { message_id: failed } = (await api("POST", `/v2/webhooks/${doomed.id}/test`)).body
    await api("POST", `/v2/webhooks/${kept.id}/test`)
    // The doomed endpoint's message has a failed first attempt in the attempt log.
    await eventually(async () => ((await count("select count(*) as n from webhook_attempt_log where message_id = $1", [failed])) >= 1 ? true : undefined))
    await eventually(async () => ((await count("select count(*) as n from webhook_messages where endpoint_id = $1 and status = 'delivered'", [kept.id])) === 1 ? true : undefined))

    expect((await api("DELETE", `/v2/webhooks/${doomed.id}`)).status).toBe(204)
    expect(await count("select count(*) as n from webhook_messages where endpoint_id = $1", [doomed.id])).toBe(0)
    expect(await count("select count(*) as n from webhook_attempt_log where message_id = $1", [failed])).toBe(0)
    expect(await count("select count(*) as n from webhook_messages where endpoint_id = $1", [kept.id])).toBe(1)
    expect((await api("DELETE", `/v2/webhooks/${kept.id}`)).status).toBe(204)
  })

  it("refuses bad input with a clear error", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ url: "ftp://example.com/" }, "http(s)"],
      [{ url: "not a url" }, "not valid"],
      [{ url: "https://user:pass@example.com/" }, "credentials"],
      [{ url: "https://127.0.0.1/", filter_types: ["Bad Type!"] }, "filter_types"],
      [{ url: "https://127.0.0.1/", headers: { "bad header": "x" } }, "not a valid HTTP token"],
      [{ url: "https://127.0.0.1/", headers: { "x-a": "line\r\nbreak" } }, "one line"],
      [{ url: "https://127.0.0.1/", rate_limit: 0 }, "rate_limit"]
    ]
    for (const [body, message] of cases) {
      const reply = await api("POST", "/v2/webhooks", body)
      expect(reply.status, JSON.stringify(body)).toBe(400)
      expect(reply.body.message).toContain(message)
    }
    expect((await api("POST", `/v2/webhooks/${crypto.randomUUID()}/test`)).status).toBe(404)
    const unauthenticated = await fetch(`${server.baseUrl}/v2/webhooks`)
    expect(unauthenticated.status).toBe(401)
  })

  it("pages through the message log", async () => {
    const target = await receiver()
    const endpoint = await createEndpoint({ url: target.url })
    for (let i = 0; i < 5; i++) await api("POST", `/v2/webhooks/${endpoint.id}/test`)
    await waitFor(() => (target.received.length === 5 ? true : undefined))
    const first = await api("GET", `/v2/webhooks/${endpoint.id}/messages?limit=2`)
    expect(first.body.data).toHaveLength(2)
    const second = await api("GET", `/v2/webhooks/${endpoint.id}/messages?limit=2&cursor=${first.body.next_cursor}`)
    const third = await api("GET", `/v2/webhooks/${endpoint.id}/messages?limit=2&cursor=${second.body.next_cursor}`)
    expect(third.body.next_cursor).toBeNull()
    const ids = [...first.body.data, ...second.body.data, ...third.body.data].map((m: { id: string }) => m.id)
    expect(new Set(ids).size).toBe(5)
    expect(new Set(ids)).toEqual(new Set(target.received.map(idOf)))
  })

  it("never logs secrets or payloads", async () => {
    // Health values of every kind, delivered to an endpoint (so they went through the sink).
    const target = await receiver()
    const endpoint = await createEndpoint({ url: target.url, filter_types: ["daily.data.*"] })
    const userId = await linkedUser("log-probe-user")
    await push(healthProbe("log-probe-user", "webhooks"))
    await drainedFor(endpoint.id)
    const delivered = target.received.map((r) => JSON.parse(r.body) as { event_type: string; user_id: string }).filter((e) => e.user_id === userId)
    expect([...new Set(delivered.map((e) => e.event_type))]).toEqual(expect.arrayContaining(
      ["activity", "heartrate", "sleep", "respiratory_rate", "blood_oxygen", "body"].map((r) => `daily.data.${r}.created`)
    ))
    // Every value went out (weight as kilograms, not as the grams Garmin sent).
    expect(leakedProbeValues(target.received.map((r) => r.body).join("\n"))).toEqual(probeNeedles.filter((n) => n !== String(probeValues.weightInGrams)))
    // Every secret an endpoint ever had (each read when it was made or rotated), deleted endpoints' included.
    expect(secretsSeen.size).toBeGreaterThan(10)

    const logs = server.logs()
    for (const secret of secretsSeen) {
      expect(logs).not.toContain(secret)
      expect(logs).not.toContain(secret.slice("whsec_".length))
    }
    expect(logs).not.toContain("customer-token")
    expect(leakedProbeValues(logs)).toEqual([])
    // Step counts sent to endpoints above, distinctive enough not to appear by chance.
    expect(logs).not.toContain("7391001")
    expect(logs).not.toContain("7391002")
  })
})
