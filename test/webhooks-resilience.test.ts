/**
 * Webhook delivery across `kill -9`: a message in the middle of its (shortened) retry
 * schedule, and one whose attempt was in flight, are both delivered after a restart, under
 * the ids they had. Retry state lives in Effect's workflow engine on Postgres. Also: an
 * endpoint that never answers holds back no other, and addresses are checked at send time.
 */
import { Redacted } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { Webhook } from "svix"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { wearflowApi } from "./support/wearflow-client.ts"

const API_KEY = "webhooks-restart-key"

let dir: string
let env: Record<string, string>
let server: RunningServer
let db: pg.Client
let target: Receiver

const api = wearflowApi(() => server.baseUrl, API_KEY)

interface Attempt {
  readonly attempt: number
  readonly trigger: string
  readonly status: string
}

const messageLog = async (endpointId: string) =>
  (await api("GET", `/v2/webhooks/${endpointId}/messages`)).body.data as Array<{ id: string; status: string; attempts: Array<Attempt> }>

/** kill -9, then the same server (same runner address, data dir and database) again. */
const crashAndRestart = async () => {
  expect(await server.stop("SIGKILL")).toBeNull()
  server = await startServer(env)
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-webhooks-restart-"))
  const databaseUrl = Redacted.value(await freshDatabaseUrl())
  env = {
    DATABASE_URL: databaseUrl,
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dir,
    WEARFLOW_RUNNER_ADDRESS: "webhooks-restart:1",
    WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
    WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
    WEARFLOW_WEBHOOK_RETRY_SCHEDULE: "500 millis,4 seconds,1 second",
    WEARFLOW_WEBHOOK_TIMEOUT: "10 seconds"
  }
  server = await startServer(env)
  db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  target = await startReceiver()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  await target?.close()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("isolation", () => {
  it("an endpoint that does not answer holds back no other endpoint", async () => {
    const stuckReceiver = await startReceiver()
    stuckReceiver.fallback = "hold"
    const fast = await startReceiver()
    try {
      const stuck = (await api("POST", "/v2/webhooks", { url: stuckReceiver.url })).body as { id: string }
      const healthy = (await api("POST", "/v2/webhooks", { url: fast.url })).body as { id: string }
      for (let i = 0; i < 40; i++) {
        await api("POST", `/v2/webhooks/${stuck.id}/test`)
        await api("POST", `/v2/webhooks/${healthy.id}/test`)
      }
      await eventually(async () => (fast.received.length === 40 ? true : undefined))
      // Every healthy delivery is done while the stuck endpoint's requests are all still open
      // (up to its concurrency; the rest wait in its own lane) and none of its attempts ended.
      expect(stuckReceiver.held()).toBe(32)
      const ended = await db.query("select count(*)::int as n from webhook_attempts a join webhook_messages m on m.id = a.message_id where m.endpoint_id = $1", [stuck.id])
      expect(ended.rows[0].n).toBe(0)
      expect((await api("DELETE", `/v2/webhooks/${stuck.id}`)).status).toBe(204)
    } finally {
      stuckReceiver.release()
      await stuckReceiver.close()
      await fast.close()
    }
  })
})

describe("webhook delivery across kill -9", () => {
  it("resumes a retry schedule where it was and delivers under the same id", async () => {
    target.answers = [500, 500]
    const endpoint = (await api("POST", "/v2/webhooks", { url: target.url })).body as { id: string }
    const { message_id: messageId } = (await api("POST", `/v2/webhooks/${endpoint.id}/test`)).body

    // Two failed attempts: the retry workflow now sleeps 4 s before the next.
    await eventually(async () => ((await messageLog(endpoint.id))[0]?.attempts.length === 2 ? true : undefined))
    await crashAndRestart()

    const [message] = await eventually(async () => {
      const log = await messageLog(endpoint.id)
      return log[0]?.status === "delivered" ? log : undefined
    }, 30_000)
    expect(message!.id).toBe(messageId)
    expect(message!.attempts.map((a) => [a.attempt, a.trigger, a.status])).toEqual([
      [1, "first", "failure"],
      [2, "retry", "failure"],
      [3, "retry", "success"]
    ])
    // Every request carried the one id and verifies; nothing was sent under another id.
    expect(target.received).toHaveLength(3)
    const secret = (await api("GET", `/v2/webhooks/${endpoint.id}/secret`)).body.key as string
    for (const r of target.received) {
      expect(r.headers["svix-id"]).toBe(messageId)
      expect(new Webhook(secret).verify(r.body, r.headers)).toMatchObject({ event_type: "webhook.test" })
    }
    expect((await api("DELETE", `/v2/webhooks/${endpoint.id}`)).status).toBe(204)
  })

  it("sends again, under the same id, a message whose attempt was in flight when the process died", async () => {
    target.received.length = 0
    target.answers = [{ hangMs: 8000 }]
    const endpoint = (await api("POST", "/v2/webhooks", { url: target.url })).body as { id: string }
    const { message_id: messageId } = (await api("POST", `/v2/webhooks/${endpoint.id}/test`)).body
    await eventually(async () => (target.received.length === 1 ? true : undefined))
    await crashAndRestart()

    // The restarted process frees the lease it held and sends the message again at once.
    const [message] = await eventually(async () => {
      const log = await messageLog(endpoint.id)
      return log[0]?.status === "delivered" ? log : undefined
    }, 20_000)
    expect(message!.id).toBe(messageId)
    expect(message!.attempts.map((a) => [a.trigger, a.status])).toEqual([["first", "success"]])
    expect(target.received.map((r) => r.headers["svix-id"])).toEqual([messageId, messageId])
    const pending = await db.query("select count(*)::int as n from webhook_messages where status <> 'delivered'")
    expect(pending.rows[0].n).toBe(0)
  })

  it("checks addresses at send time too: after the operator withdraws private addresses, nothing reaches them", async () => {
    target.received.length = 0
    target.answers = []
    const endpoint = (await api("POST", "/v2/webhooks", { url: target.url })).body as { id: string }
    await server.stop()
    env = { ...env, WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "false" }
    server = await startServer(env)

    const { message_id: messageId } = (await api("POST", `/v2/webhooks/${endpoint.id}/test`)).body
    // Every attempt, retries included, until the message has failed for good: none gets through.
    const [message] = await eventually(async () => {
      const log = await messageLog(endpoint.id)
      return log[0]?.id === messageId && log[0]!.status === "failed" ? log : undefined
    }, 30_000)
    expect(message!.attempts).toHaveLength(4)
    for (const attempt of message!.attempts) {
      expect(attempt).toMatchObject({ status: "failure", response_status_code: null })
      expect((attempt as Attempt & { error: string }).error).toContain("private")
    }
    expect(target.received).toHaveLength(0)

    // New endpoints are refused up front: loopback, private, link-local (cloud metadata) alike.
    for (const url of [target.url, "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]:8080/", "http://localhost/"]) {
      const refused = await api("POST", "/v2/webhooks", { url })
      expect(refused.status, url).toBe(400)
      expect(refused.body.message).toContain("private, loopback or link-local")
    }
    await server.stop()
    env = { ...env, WEARFLOW_WEBHOOK_ALLOW_HTTP: "false" }
    server = await startServer(env)
    const plain = await api("POST", "/v2/webhooks", { url: "http://8.8.8.8/hook" })
    expect(plain).toMatchObject({ status: 400, body: { message: "the URL must use https" } })
  })

  it("moves signing secrets and custom headers to a new encryption key, so the old key can be dropped", async () => {
    const endpoint = (await api("POST", "/v2/webhooks", { url: "https://8.8.8.8/hook", headers: { Authorization: "Bearer k" } })).body as { id: string }
    const secret = (await api("GET", `/v2/webhooks/${endpoint.id}/secret`)).body.key as string
    const oldKey = (await fs.readFile(path.join(dir, "encryption-key"), "utf8")).trim()
    const newKey = randomBytes(32).toString("base64")
    const newKeyId = createHash("sha256").update(Buffer.from(newKey, "base64")).digest().subarray(0, 4)

    await server.stop()
    env = { ...env, WEARFLOW_ENCRYPTION_KEY: `${newKey},${oldKey}` }
    server = await startServer(env)
    await eventually(async () => {
      const { rows } = await db.query("select secret, headers from webhook_endpoints where id = $1", [endpoint.id])
      return rows[0].secret.subarray(1, 5).equals(newKeyId) && rows[0].headers.subarray(1, 5).equals(newKeyId) ? true : undefined
    })

    await server.stop()
    env = { ...env, WEARFLOW_ENCRYPTION_KEY: newKey }
    server = await startServer(env)
    expect((await api("GET", `/v2/webhooks/${endpoint.id}/secret`)).body).toEqual({ key: secret })
    expect((await api("GET", `/v2/webhooks/${endpoint.id}/headers`)).body).toEqual({ headers: { Authorization: "Bearer k" } })
  })
})
