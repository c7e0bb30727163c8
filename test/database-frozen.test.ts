/**
 * A database that does not answer — its processes stopped (SIGSTOP), or a statement stuck
 * behind a lock — turns every route into a prompt 503 with `Retry-After`, never a request that
 * hangs; once the database answers again, so does the server. The server runs on its own
 * embedded Postgres, so stopping it touches no other test.
 */
import { Effect, Redacted } from "effect"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as EmbeddedPostgres from "../core/storage/embedded-postgres.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"

const API_KEY = "frozen-api-key"
const CLIENT_ID = "frozen-garmin-client"
/** The server's WEARFLOW_DATABASE_WAIT. */
const WAIT_MS = 3_000
/** What routes that also call the provider get on top (apps/server/handlers.ts PROVIDER_WAIT). */
const PROVIDER_MS = 30_000
/** Garmin's webhooks and /health have their own 10 s bound. */
const OWN_BOUND_MS = 10_000
/**
 * Slack on top of each bound for a loaded machine: the point is that an answer comes at all,
 * in about the configured time, rather than after the client gives up.
 */
const SLACK_MS = 25_000
/** A request still unanswered after this is taken as hanging. */
const HANG_MS = 120_000

const dailies = readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")

let dataDir: string
let server: RunningServer
let userId: string
let endpointId: string
let stopped: Array<number> = []

interface Reply {
  readonly status: number
  readonly retryAfter: string | null
  readonly ms: number
  readonly error?: string
}

const call = async (method: string, route: string, init: { readonly body?: string; readonly headers?: Record<string, string> } = {}): Promise<Reply> => {
  const started = Date.now()
  try {
    const response = await fetch(`${server.baseUrl}${route}`, {
      method,
      redirect: "manual",
      signal: AbortSignal.timeout(HANG_MS),
      headers: { "x-api-key": API_KEY, "content-type": "application/json", ...init.headers },
      ...(init.body === undefined ? {} : { body: init.body })
    })
    await response.arrayBuffer()
    return { status: response.status, retryAfter: response.headers.get("retry-after"), ms: Date.now() - started }
  } catch (error) {
    // No answer at all: the connection was closed, or the request hung past HANG_MS.
    return { status: 0, retryAfter: null, ms: Date.now() - started, error: String((error as Error).cause ?? error) }
  }
}

const pgDir = () => path.join(dataDir, "pg")

/** The postmaster and its children (backends, checkpointer, walwriter, ...). */
const postgresProcesses = async (): Promise<Array<number>> => {
  const postmaster = Number((await fs.readFile(path.join(pgDir(), "postmaster.pid"), "utf8")).split("\n")[0])
  const children: Array<number> = []
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => undefined)
    if (stat === undefined) continue
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 1).trim().split(" ")[1])
    if (ppid === postmaster) children.push(Number(entry))
  }
  return [postmaster, ...children]
}

const signal = (pids: ReadonlyArray<number>, sig: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, sig)
    } catch {
      // ended meanwhile
    }
  }
}

/** Every route class, each as one request. */
const routeClasses = (): ReadonlyArray<readonly [string, number, () => Promise<Reply>]> => [
  ["GET a user", WAIT_MS, () => call("GET", `/v2/user/${userId}`)],
  ["POST a user", WAIT_MS, () => call("POST", "/v2/user", { body: JSON.stringify({ client_user_id: `frozen-${Date.now()}-${Math.random()}` }) })],
  ["DELETE a connection", WAIT_MS + PROVIDER_MS, () => call("DELETE", `/v2/user/${userId}/connections/garmin`)],
  ["POST a link token", WAIT_MS, () => call("POST", "/v2/link/token", { body: JSON.stringify({ user_id: userId, provider: "garmin" }) })],
  ["GET a summary", WAIT_MS, () => call("GET", `/v2/summary/activity/${userId}?start_date=2024-01-01`)],
  ["GET a timeseries", WAIT_MS, () => call("GET", `/v2/timeseries/${userId}/steps?start_date=2024-01-01`)],
  ["POST a backfill", WAIT_MS, () => call("POST", `/v2/user/${userId}/backfill/garmin`, { body: "{}" })],
  ["GET backfill status", WAIT_MS, () => call("GET", "/v2/introspect/historical_pull")],
  ["GET webhooks", WAIT_MS, () => call("GET", "/v2/webhooks")],
  ["GET webhook messages", WAIT_MS, () => call("GET", `/v2/webhooks/${endpointId}/messages`)],
  ["the connect flow's start page", WAIT_MS + PROVIDER_MS, () => call("GET", "/v2/link/garmin/start?token=frozen")],
  ["the connect flow's callback page", WAIT_MS + PROVIDER_MS, () => call("GET", "/v2/link/garmin/callback?state=frozen&code=frozen")],
  ["a Garmin PUSH", OWN_BOUND_MS, () => call("POST", "/api/v1/webhooks/garmin/push", { body: dailies, headers: { "garmin-client-id": CLIENT_ID } })],
  ["Garmin's health check", WAIT_MS, () => call("GET", "/api/v1/webhooks/garmin/health")],
  ["GET /health", OWN_BOUND_MS, () => call("GET", "/health")]
]

/** Sends every request at once; collects those not answered 503 with Retry-After within their bound. */
const expectAllUnavailable = async (requests: ReadonlyArray<readonly [string, number, () => Promise<Reply>]>) => {
  const replies = await Promise.all(requests.map(async ([what, bound, send]) => [what, bound, await send()] as const))
  const wrong = replies
    .filter(([, bound, reply]) => reply.status !== 503 || reply.retryAfter === null || !(Number(reply.retryAfter) > 0) || reply.ms > bound + SLACK_MS)
    .map(([what, bound, reply]) => `${what}: ${reply.error ?? reply.status}, Retry-After ${reply.retryAfter}, after ${reply.ms} ms (bound ${bound} + ${SLACK_MS} ms)`)
  expect(wrong).toEqual([])
}

/** Waits until the server answers normally again. */
const expectRecovered = async () => {
  await eventually(async () => ((await call("GET", `/v2/user/${userId}`)).status === 200 ? true : undefined), 60_000)
  await eventually(async () => ((await call("GET", "/health")).status === 200 ? true : undefined), 60_000)
  await eventually(async () => ((await call("POST", "/api/v1/webhooks/garmin/push", { body: dailies, headers: { "garmin-client-id": CLIENT_ID } })).status === 200 ? true : undefined), 60_000)
  expect((await call("GET", `/v2/webhooks/${endpointId}/messages`)).status).toBe(200)
}

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-frozen-"))
  await fs.chmod(dataDir, 0o755)
  server = await startServer({
    WEARFLOW_DATA_DIR: dataDir,
    WEARFLOW_API_KEY: API_KEY,
    GARMIN_CLIENT_ID: CLIENT_ID,
    WEARFLOW_DATABASE_WAIT: `${WAIT_MS} millis`,
    WEARFLOW_BACKFILL_ON_CONNECT: "false"
  })
  const user = await fetch(`${server.baseUrl}/v2/user`, {
    method: "POST",
    headers: { "x-api-key": API_KEY, "content-type": "application/json" },
    body: JSON.stringify({ client_user_id: "frozen-user" })
  })
  userId = ((await user.json()) as { user_id: string }).user_id
  const endpoint = await fetch(`${server.baseUrl}/v2/webhooks`, {
    method: "POST",
    headers: { "x-api-key": API_KEY, "content-type": "application/json" },
    body: JSON.stringify({ url: "https://hooks.example.com/wearflow" })
  })
  expect(endpoint.status).toBe(201)
  endpointId = ((await endpoint.json()) as { id: string }).id
})

afterAll(async () => {
  signal(stopped, "SIGCONT")
  await server?.stop()
  await fs.rm(dataDir, { recursive: true, force: true })
})

describe.skipIf(process.platform !== "linux")("a database that does not answer", () => {
  it("with its processes stopped, every route answers 503 with Retry-After within its bound, and recovers", async () => {
    stopped = await postgresProcesses()
    signal(stopped, "SIGSTOP")
    try {
      await expectAllUnavailable(routeClasses())
    } finally {
      signal(stopped, "SIGCONT")
      stopped = []
    }
    await expectRecovered()
  }, 4 * HANG_MS)

  it("with a statement stuck behind a lock, the routes past the API key answer 503 with Retry-After, and recover", async () => {
    const url = await Effect.runPromise(EmbeddedPostgres.attach({ pgDir: pgDir(), database: "wearflow" }))
    const blocker = new pg.Client({ connectionString: Redacted.value(url!) })
    await blocker.connect()
    try {
      await blocker.query("begin")
      await blocker.query("lock table users, backfills, webhook_endpoints, webhook_messages in access exclusive mode")
      // The API key still resolves (api_keys is not locked): each handler's own wait is what answers.
      const behindTheKey = routeClasses().filter(([what]) => what.startsWith("GET ") || what.startsWith("POST ")).filter(([what]) => what !== "GET /health")
      await expectAllUnavailable(behindTheKey)
      await blocker.query("rollback")
      await expectRecovered()
    } finally {
      await blocker.end()
    }
  }, 4 * HANG_MS)
})
