/**
 * Limits the README promises, against the real server and Postgres: a notification body over
 * `WEARFLOW_MAX_BODY_BYTES` is refused with 413 and nothing is stored (declared length or
 * streamed); after a webhook secret rotation the old secret signs only until
 * `WEARFLOW_WEBHOOK_SECRET_GRACE` has passed.
 */
import { Redacted } from "effect"
import { readFileSync } from "node:fs"
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

const CLIENT_ID = "limits-garmin-client"
const API_KEY = "limits-api-key"
const MAX_BODY_BYTES = 64 * 1024

let dir: string
let server: RunningServer
let db: pg.Client
let receiver: Receiver

const api = wearflowApi(() => server.baseUrl, API_KEY)
const count = async (query: string) => Number((await db.query(query)).rows[0].n)

/** A dailies PUSH padded to exactly `bytes` bytes. */
const bodyOf = (bytes: number) => {
  const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0]
  const empty = JSON.stringify({ dailies: [{ ...daily, userId: "limits-user", summaryId: "limits", filler: "" }] })
  const body = JSON.stringify({ dailies: [{ ...daily, userId: "limits-user", summaryId: "limits", filler: "x".repeat(bytes - empty.length) }] })
  expect(Buffer.byteLength(body)).toBe(bytes)
  return body
}

const push = (body: BodyInit, init: RequestInit = {}) =>
  fetch(`${server.baseUrl}/api/v1/webhooks/garmin/push`, {
    method: "POST",
    headers: { "garmin-client-id": CLIENT_ID, "content-type": "application/json" },
    body,
    ...init
  })

/** The same bytes, streamed in chunks without a declared length. */
const streamed = (body: string) => {
  const bytes = Buffer.from(body)
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.subarray(i, i + 8192))
      controller.close()
    }
  })
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-limits-"))
  const url = Redacted.value(await freshDatabaseUrl())
  server = await startServer({
    DATABASE_URL: url,
    GARMIN_CLIENT_ID: CLIENT_ID,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dir,
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    WEARFLOW_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
    WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
    WEARFLOW_WEBHOOK_SECRET_GRACE: "2 hours"
  })
  db = new pg.Client({ connectionString: url })
  await db.connect()
  receiver = await startReceiver()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  await receiver?.close()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("WEARFLOW_MAX_BODY_BYTES", () => {
  it("takes a body of exactly the limit, refuses one byte more with 413, and stores nothing of it", async () => {
    const atLimit = await push(bodyOf(MAX_BODY_BYTES))
    expect(atLimit.status).toBe(200)
    const stored = await count("select count(*) as n from inbox")
    expect(stored).toBe(1)

    const over = await push(bodyOf(MAX_BODY_BYTES + 1))
    expect(over.status).toBe(413)
    expect(await over.text()).not.toContain("xxxx")
    const streamedOver = await push(streamed(bodyOf(MAX_BODY_BYTES + 1)), { duplex: "half" } as RequestInit)
    expect(streamedOver.status).toBe(413)
    const far = await push(bodyOf(4 * MAX_BODY_BYTES))
    expect(far.status).toBe(413)

    // The server still answers, and the refused bodies left nothing behind.
    const after = await push(streamed(bodyOf(MAX_BODY_BYTES - 10)), { duplex: "half" } as RequestInit)
    expect(after.status).toBe(200)
    expect(await count("select count(*) as n from inbox")).toBe(stored + 1)
    expect(await count(`select count(*) as n from inbox where length(body) > ${MAX_BODY_BYTES}`)).toBe(0)
  })
})

describe("WEARFLOW_WEBHOOK_SECRET_GRACE", () => {
  it("signs with the rotated-out secret for the grace period, and only with the new one after it", async () => {
    const created = await api("POST", "/v2/webhooks", { url: receiver.url })
    expect(created.status).toBe(201)
    const id = created.body.id as string
    const old = (await api("GET", `/v2/webhooks/${id}/secret`)).body.key as string
    const rotatedAt = Date.now()
    const fresh = (await api("POST", `/v2/webhooks/${id}/secret/rotate`)).body.key as string
    expect(fresh).not.toBe(old)
    // The grace period ends WEARFLOW_WEBHOOK_SECRET_GRACE after the rotation.
    const until = (await db.query("select previous_secret_until from webhook_endpoints where id = $1", [id])).rows[0].previous_secret_until as Date
    expect(Math.abs(until.getTime() - (rotatedAt + 2 * 3_600_000))).toBeLessThan(60_000)

    const delivery = async () => {
      const before = receiver.received.length
      expect((await api("POST", `/v2/webhooks/${id}/test`)).status).toBe(202)
      return eventually(async () => receiver.received[before])
    }
    const during = await delivery()
    expect(during.headers["svix-signature"]!.split(" ")).toHaveLength(2)
    expect(new Webhook(old).verify(during.body, during.headers)).toMatchObject({ event_type: "webhook.test" })

    // The grace period passes (moved into the past rather than waited for).
    await db.query("update webhook_endpoints set previous_secret_until = now() - interval '1 second' where id = $1", [id])
    const after = await eventually(async () => {
      const d = await delivery()
      return d.headers["svix-signature"]!.split(" ").length === 1 ? d : undefined
    }, 30_000)
    expect(new Webhook(fresh).verify(after.body, after.headers)).toMatchObject({ event_type: "webhook.test" })
    expect(() => new Webhook(old).verify(after.body, after.headers)).toThrow()
    // Rotating again keeps only the secret just replaced, never the one before it.
    const third = (await api("POST", `/v2/webhooks/${id}/secret/rotate`)).body.key as string
    const next = await delivery()
    expect(next.headers["svix-signature"]!.split(" ")).toHaveLength(2)
    expect(new Webhook(third).verify(next.body, next.headers)).toBeTruthy()
    expect(new Webhook(fresh).verify(next.body, next.headers)).toBeTruthy()
    expect(() => new Webhook(old).verify(next.body, next.headers)).toThrow()
  })
})
