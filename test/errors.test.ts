/**
 * Error bodies name what was wrong, never the caller's value: every route, asked with a
 * distinctive value in each place a caller controls (path ids and slugs, query parameters,
 * body fields, record keys, headers), answers an error whose body does not contain it.
 */
import { randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { type RunningServer, startServer } from "./support/server.ts"

const API_KEY = "errors-api-key"
const CLIENT_ID = "errors-garmin-client"

let dir: string
let server: RunningServer
let userId: string

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-errors-"))
  server = await startServer({
    DATABASE_URL: Redacted.value(await freshDatabaseUrl()),
    WEARFLOW_DATA_DIR: dir,
    WEARFLOW_API_KEY: API_KEY,
    GARMIN_CLIENT_ID: CLIENT_ID,
    WEARFLOW_BACKFILL_ON_CONNECT: "false"
  })
  const created = await call("POST", "/v2/user", { body: { client_user_id: "errors-user" } })
  userId = (JSON.parse(created.text) as { user_id: string }).user_id
})

afterAll(async () => {
  await server?.stop()
  await fs.rm(dir, { recursive: true, force: true })
})

interface Reply {
  readonly status: number
  readonly text: string
  readonly contentType: string
}

const call = async (
  method: string,
  route: string,
  options: { readonly body?: unknown; readonly raw?: string; readonly headers?: Record<string, string> } = {}
): Promise<Reply> => {
  const response = await fetch(`${server.baseUrl}${route}`, {
    method,
    redirect: "manual",
    headers: { "x-api-key": API_KEY, "content-type": "application/json", ...options.headers },
    ...(options.raw !== undefined ? { body: options.raw } : options.body !== undefined ? { body: JSON.stringify(options.body) } : {})
  })
  return { status: response.status, text: await response.text(), contentType: response.headers.get("content-type") ?? "" }
}

/** A value no message could contain by chance; letters and digits only, so no encoding hides it. */
const distinct = () => `zqecho${randomBytes(6).toString("hex")}`

describe("error bodies", () => {
  it("never echo the caller's values, on any route", async () => {
    const echoed: Array<string> = []
    /** Sends the request; collects it when it is not an error or its body carries `value`. */
    const refuses = async (what: string, value: string, reply: Promise<Reply>, status?: number) => {
      const { status: got, text, contentType } = await reply
      if (got < 400 || (status !== undefined && got !== status)) echoed.push(`${what}: expected ${status ?? "an error"}, got ${got} ${text.slice(0, 200)}`)
      if (text.toLowerCase().includes(value.toLowerCase())) echoed.push(`${what}: ${got} echoes the value: ${text.slice(0, 300)}`)
      // JSON errors say what was wrong.
      if (contentType.includes("json") && text.length > 0 && !(JSON.parse(text) as { message?: string }).message) {
        echoed.push(`${what}: ${got} has no message: ${text.slice(0, 200)}`)
      }
    }

    // Users and connections
    let v = distinct()
    await refuses("get an unknown user (not a uuid)", v, call("GET", `/v2/user/${v}`), 404)
    const uuid = randomUUID()
    await refuses("get an unknown user (uuid)", uuid, call("GET", `/v2/user/${uuid}`), 404)
    v = distinct()
    await refuses("link Garmin for an unknown user", v, call("POST", `/v2/user/${v}/connections/garmin`, { body: { provider_user_id: "p" } }), 404)
    v = distinct()
    await refuses("link Garmin with an invalid provider_user_id", v, call("POST", `/v2/user/${userId}/connections/garmin`, { body: { provider_user_id: `${v}\u0001` } }), 400)
    v = distinct()
    await refuses("disconnect an unknown user", v, call("DELETE", `/v2/user/${v}/connections/garmin`), 404)
    v = distinct()
    await refuses("disconnect an unknown provider", v, call("DELETE", `/v2/user/${userId}/connections/${v}`), 404)
    await refuses("disconnect a provider never connected", userId, call("DELETE", `/v2/user/${userId}/connections/garmin`), 404)
    v = distinct()
    await refuses("link token for an unknown user", v, call("POST", "/v2/link/token", { body: { user_id: v, provider: "garmin" } }), 404)
    v = distinct()
    await refuses("link token for an unknown provider", v, call("POST", "/v2/link/token", { body: { user_id: userId, provider: v } }), 400)
    v = distinct()
    await refuses("link token with a bad redirect_url", v, call("POST", "/v2/link/token", { body: { user_id: userId, provider: "garmin", redirect_url: `ftp://${v}/` } }), 400)
    v = distinct()
    await refuses("create a user with a control character", v, call("POST", "/v2/user", { body: { client_user_id: `${v}\u0000` } }), 400)
    v = distinct()
    await refuses("create a user with the wrong type", v, call("POST", "/v2/user", { body: { client_user_id: [v] } }), 400)
    v = distinct()
    await refuses("create a user with malformed JSON", v, call("POST", "/v2/user", { raw: `{"client_user_id": "${v}"` }), 400)
    v = distinct()
    const unknownField = await call("POST", "/v2/user", { body: { [v]: 1 } })
    await refuses("create a user with only an unknown field", v, Promise.resolve(unknownField), 400)
    v = distinct()
    await refuses("link Garmin with an unknown nested field", v, call("POST", `/v2/user/${userId}/connections/garmin`, { body: { provider_user_id: 5, oauth2: { [v]: v } } }), 400)
    v = distinct()
    await refuses("an unknown API key", v, call("GET", `/v2/user/${userId}`, { headers: { "x-api-key": v } }), 401)

    // The connect flow's pages
    v = distinct()
    await refuses("link start for an unknown provider", v, call("GET", `/v2/link/${v}/start?token=${distinct()}`), 404)
    v = distinct()
    await refuses("link start with an unknown token", v, call("GET", `/v2/link/garmin/start?token=${v}`), 404)
    v = distinct()
    await refuses("link callback for an unknown provider", v, call("GET", `/v2/link/${v}/callback?state=${distinct()}&code=${distinct()}`))
    v = distinct()
    await refuses("link callback with an unknown state", v, call("GET", `/v2/link/garmin/callback?state=${v}&code=${v}`))

    // Data
    v = distinct()
    await refuses("summary of an unknown user", v, call("GET", `/v2/summary/sleep/${v}?start_date=2024-01-01`), 404)
    v = distinct()
    await refuses("summary with a malformed date", v, call("GET", `/v2/summary/activity/${userId}?start_date=${v}`), 400)
    v = distinct()
    await refuses("timeseries of an unknown user", v, call("GET", `/v2/timeseries/${v}/steps?start_date=2024-01-01`), 404)
    v = distinct()
    await refuses("timeseries with a malformed end date", v, call("GET", `/v2/timeseries/${userId}/heartrate?start_date=2024-01-01&end_date=${v}`), 400)

    // Backfills
    v = distinct()
    await refuses("backfill for an unknown user", v, call("POST", `/v2/user/${v}/backfill/garmin`, { body: {} }), 404)
    v = distinct()
    await refuses("backfill from an unknown provider", v, call("POST", `/v2/user/${userId}/backfill/${v}`, { body: {} }), 404)
    v = distinct()
    await refuses("backfill of an unknown type", v, call("POST", `/v2/user/${userId}/backfill/garmin`, { body: { types: ["dailies", v] } }), 404)
    v = distinct()
    await refuses("backfill with days of the wrong type", v, call("POST", `/v2/user/${userId}/backfill/garmin`, { body: { days: v } }), 400)
    v = distinct()
    await refuses("cancel a backfill from an unknown provider", v, call("DELETE", `/v2/user/${userId}/backfill/${v}`), 404)
    v = distinct()
    await refuses("cancel a backfill of an unknown user", v, call("DELETE", `/v2/user/${v}/backfill/garmin`), 404)

    // Webhooks
    for (const [what, method, route, body] of [
      ["get", "GET", "", undefined],
      ["update", "PATCH", "", { description: "x" }],
      ["delete", "DELETE", "", undefined],
      ["headers", "GET", "/headers", undefined],
      ["set headers", "PUT", "/headers", { headers: {} }],
      ["secret", "GET", "/secret", undefined],
      ["rotate the secret", "POST", "/secret/rotate", undefined],
      ["messages", "GET", "/messages", undefined],
      ["recover", "POST", "/recover", { since: "2024-01-01T00:00:00Z" }],
      ["test", "POST", "/test", undefined]
    ] as const) {
      v = distinct()
      await refuses(`webhook ${what} of an unknown id`, v, call(method, `/v2/webhooks/${v}${route}`, body === undefined ? {} : { body }), 404)
      const id = randomUUID()
      await refuses(`webhook ${what} of an unknown uuid`, id, call(method, `/v2/webhooks/${id}${route}`, body === undefined ? {} : { body }), 404)
    }
    v = distinct()
    await refuses("resend an unknown message", v, call("POST", `/v2/webhooks/messages/${v}/resend`), 404)
    v = distinct()
    await refuses("webhook messages with a bad status", v, call("GET", `/v2/webhooks/${randomUUID()}/messages?status=${v}`), 400)
    v = distinct()
    await refuses("webhook messages with a bad cursor", v, call("GET", `/v2/webhooks/${randomUUID()}/messages?cursor=${v}`), 400)
    const url = "https://hooks.example.com/wearflow"
    v = distinct()
    await refuses("a webhook at a loopback address", v, call("POST", "/v2/webhooks", { body: { url: `https://[::127.0.0.1]/${v}` } }), 400)
    v = distinct()
    await refuses("a webhook at a host resolving to loopback", v, call("POST", "/v2/webhooks", { body: { url: `https://localhost/${v}` } }), 400)
    v = distinct()
    await refuses("a webhook URL with credentials", v, call("POST", "/v2/webhooks", { body: { url: `https://${v}:${v}@hooks.example.com/` } }), 400)
    v = distinct()
    await refuses("a webhook header name that is no HTTP token", v, call("POST", "/v2/webhooks", { body: { url, headers: { [`${v} x`]: "1" } } }), 400)
    v = distinct()
    await refuses("a webhook header Wearflow sets", v, call("POST", "/v2/webhooks", { body: { url, headers: { [`svix-${v}`]: "1" } } }), 400)
    v = distinct()
    await refuses("a webhook header value on two lines", v, call("POST", "/v2/webhooks", { body: { url, headers: { [`x-${v}`]: `a\r\n${v}` } } }), 400)
    v = distinct()
    await refuses("a webhook header value of the wrong type", v, call("POST", "/v2/webhooks", { body: { url, headers: { [`x-${v}`]: 5 } } }), 400)
    v = distinct()
    await refuses("a webhook filter type", v, call("POST", "/v2/webhooks", { body: { url, filter_types: [`${v}!`] } }), 400)
    v = distinct()
    await refuses("a webhook secret", v, call("POST", "/v2/webhooks", { body: { url, secret: `whsec_${v}` } }), 400)
    v = distinct()
    await refuses("a webhook signature_headers", v, call("POST", "/v2/webhooks", { body: { url, signature_headers: v } }), 400)

    // Garmin's webhooks and routes nobody declared
    v = distinct()
    await refuses("a Garmin PUSH with a wrong client id", v, call("POST", "/api/v1/webhooks/garmin/push", { body: {}, headers: { "garmin-client-id": v } }), 401)
    v = distinct()
    await refuses("a Garmin PUSH of malformed JSON", v, call("POST", "/api/v1/webhooks/garmin/push", { raw: `{"dailies": [${v}`, headers: { "garmin-client-id": CLIENT_ID } }), 400)
    v = distinct()
    await refuses("an unknown route", v, call("GET", `/v2/${v}`), 404)

    expect(echoed).toEqual([])
  })
})
