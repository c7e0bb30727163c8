/**
 * Traces over OTLP: with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver on loopback, a
 * posted Garmin notification is one trace from the request through the inbox, the ingest
 * worker and each sink's delivery, continuing the caller's trace when it sent a traceparent.
 * Background work (polls, sweeps) starts no traces, and no span carries a health value.
 */
import { Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: number
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: Record<string, unknown> }>
}

/** An OTLP/HTTP receiver: keeps every span posted to /v1/traces (JSON), and each request's content type. */
const startReceiver = async () => {
  const spans: Array<OtlpSpan> = []
  const contentTypes: Array<string> = []
  const bodies: Array<string> = []
  const server = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      const body = Buffer.concat(chunks)
      if (request.method !== "POST" || request.url !== "/v1/traces") {
        response.writeHead(404).end()
        return
      }
      contentTypes.push(String(request.headers["content-type"]))
      if (String(request.headers["content-type"]).startsWith("application/json")) {
        bodies.push(body.toString("utf8"))
        const data = JSON.parse(body.toString("utf8")) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<OtlpSpan> }> }> }
        for (const resource of data.resourceSpans) for (const scope of resource.scopeSpans) spans.push(...scope.spans)
      } else {
        bodies.push(body.toString("latin1"))
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    contentTypes,
    bodies,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const API_KEY = "tracing-api-key"
const CLIENT_ID = "tracing-garmin-client"
const GARMIN_USER = "tracing-garmin-user"
const STEPS = 918273 // a health value no span may carry

let receiver: Awaited<ReturnType<typeof startReceiver>>
let server: RunningServer
let dir: string

const api = (method: string, route: string, body?: unknown) =>
  fetch(`${server.baseUrl}${route}`, {
    method,
    headers: { "x-api-key": API_KEY, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

const daily = (summaryId: string) =>
  JSON.stringify({
    dailies: [{
      userId: GARMIN_USER,
      summaryId,
      calendarDate: "2026-12-01",
      startTimeInSeconds: 1796083200,
      startTimeOffsetInSeconds: 0,
      durationInSeconds: 86400,
      steps: STEPS
    }]
  })

const push = (body: string, headers: Record<string, string> = {}) =>
  fetch(`${server.baseUrl}/api/v1/webhooks/garmin/push`, {
    method: "POST",
    headers: { "content-type": "application/json", "garmin-client-id": CLIENT_ID, ...headers },
    body
  })

const spansOf = (traceId: string) => receiver.spans.filter((span) => span.traceId === traceId)

beforeAll(async () => {
  receiver = await startReceiver()
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-tracing-"))
  server = await startServer({
    DATABASE_URL: Redacted.value(await freshDatabaseUrl()),
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dir,
    GARMIN_CLIENT_ID: CLIENT_ID,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "wearflow-under-test",
    OTEL_BSP_SCHEDULE_DELAY: "100"
  })
  const user = (await (await api("POST", "/v2/user", { client_user_id: "tracing-user" })).json()) as { user_id: string }
  expect((await api("POST", `/v2/user/${user.user_id}/connections/garmin`, { provider_user_id: GARMIN_USER })).status).toBe(200)
})

afterAll(async () => {
  expect(await server?.stop("SIGTERM")).toBe(0)
  await receiver?.close()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("traces over OTLP", () => {
  it("makes one trace of a notification, continuing the caller's: request, ingest, every sink's delivery", async () => {
    const traceId = randomBytes(16).toString("hex")
    const callerSpan = randomBytes(8).toString("hex")
    expect((await push(daily("tracing-1"), { traceparent: `00-${traceId}-${callerSpan}-01` })).status).toBe(200)

    const request = await eventually(async () => spansOf(traceId).find((span) => span.name === "POST /api/v1/webhooks/garmin/push"), 60_000)
    expect(request.parentSpanId).toBe(callerSpan)
    expect(request.kind).toBe(2) // SERVER
    // The worker continued the trace stored with the inbox row, and stored the record in it.
    await eventually(async () => spansOf(traceId).find((span) => span.name === "ingest notification"), 60_000)
    // Each configured sink delivered the record's events in the same trace.
    for (const sink of ["postgres", "webhooks", "s3"]) {
      await eventually(async () => spansOf(traceId).find((span) => span.name === `sink ${sink} delivery`), 60_000)
    }
    const names = new Set(spansOf(traceId).map((span) => span.name))
    expect(names.has("Inbox.commit")).toBe(true)
  })

  it("starts a trace at a request without a traceparent, and none for background work", async () => {
    expect((await push(daily("tracing-2"))).status).toBe(200)
    const request = await eventually(
      async () => receiver.spans.find((span) => span.name === "POST /api/v1/webhooks/garmin/push" && !span.parentSpanId),
      60_000
    )
    await eventually(async () => spansOf(request.traceId).find((span) => span.name === "sink postgres delivery"), 60_000)
    // Every exported span belongs to a trace a request started: polls and sweeps make none of their own.
    const roots = receiver.spans.filter((span) => !span.parentSpanId)
    expect(roots.every((span) => span.kind === 2)).toBe(true)
  })

  it("carries no health value in any span", async () => {
    await eventually(async () => (receiver.bodies.length > 0 ? true : undefined))
    for (const body of receiver.bodies) expect(body).not.toContain(String(STEPS))
    expect(receiver.contentTypes.every((type) => type.startsWith("application/json"))).toBe(true)
  })
})

describe("OTLP over protobuf, the default protocol", () => {
  it("posts spans as application/x-protobuf when no protocol is set", async () => {
    const protobuf = await startReceiver()
    const other = await startServer({
      DATABASE_URL: Redacted.value(await freshDatabaseUrl()),
      WEARFLOW_API_KEY: API_KEY,
      WEARFLOW_DATA_DIR: path.join(dir, "protobuf"),
      OTEL_EXPORTER_OTLP_ENDPOINT: `${protobuf.url}/`,
      OTEL_BSP_SCHEDULE_DELAY: "100"
    })
    try {
      expect((await fetch(`${other.baseUrl}/v2/user`, {
        method: "POST",
        headers: { "x-api-key": API_KEY, "content-type": "application/json" },
        body: JSON.stringify({ client_user_id: "someone" })
      })).status).toBe(200)
      // The request's span, its name a protobuf string among the bytes.
      await eventually(async () => (protobuf.bodies.some((body) => body.includes("http.server POST")) ? true : undefined), 60_000)
      expect(protobuf.contentTypes.every((type) => type === "application/x-protobuf")).toBe(true)
      expect(protobuf.bodies.join("")).not.toContain("someone")
    } finally {
      expect(await other.stop("SIGTERM")).toBe(0)
      await protobuf.close()
    }
  })
})
