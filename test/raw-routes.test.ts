/**
 * Plugins' raw webhook routes (core/http.ts `RawRoute`): the real server answers Garmin's PUSH
 * and PING before the HttpApi router and its middleware, with the answers the HttpApi route
 * gave — statuses, bodies that quote nothing of the request, the rejected metric — and one log
 * line per request of its own (the server's request line, written by that middleware, is
 * absent: that is how the test knows the router was skipped). The endpoints stay in the docs.
 */
import { Redacted } from "effect"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bunRoutes } from "../apps/server/raw-routes.ts"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { Effect } from "effect"

const CLIENT_ID = "raw-routes-garmin-client"
const dailies = readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")

let dir: string
let server: RunningServer

const post = (name: "push" | "ping", body: string, clientId: string | null = CLIENT_ID) =>
  fetch(`${server.baseUrl}/api/v1/webhooks/garmin/${name}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(clientId === null ? {} : { "garmin-client-id": clientId }) },
    body
  })

const logLines = () =>
  server.logs().split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { message: string; annotations: Record<string, unknown> })

const rejectedCount = async () => {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text()
  return Number(/^wearflow_notifications_rejected_total\{provider="garmin"\} (\d+)$/m.exec(text)?.[1] ?? 0)
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-raw-routes-"))
  server = await startServer({
    DATABASE_URL: Redacted.value(await freshDatabaseUrl()),
    GARMIN_CLIENT_ID: CLIENT_ID,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_API_KEY: "raw-routes-api-key",
    WEARFLOW_DATA_DIR: dir,
    WEARFLOW_BACKFILL_ON_CONNECT: "false"
  })
})

afterAll(async () => {
  await server?.stop()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("Garmin's raw webhook routes", () => {
  it("answer 200, 400 and 401 as the HttpApi route did, quoting nothing, one line each of their own", async () => {
    const stored = await post("push", dailies)
    expect(stored.status).toBe(200)
    expect(stored.headers.get("content-type")).toContain("application/json")
    expect(await stored.json()).toMatchObject({ accepted: { dailies: 2 }, ignored_keys: [], ignored_keys_omitted: 0, errors: [], errors_omitted: 0 })

    const rejectedBefore = await rejectedCount()
    const wrongId = await post("ping", dailies, "caller-secret-value")
    expect(wrongId.status).toBe(401)
    expect(await wrongId.json()).toEqual({ _tag: "Unauthorized", message: "missing or wrong garmin-client-id header" })
    const missingId = await post("push", dailies, null)
    expect(missingId.status).toBe(401)

    const malformed = await post("push", '{"dailies": [caller-value-7731')
    expect(malformed.status).toBe(400)
    const refusal = (await malformed.json()) as { _tag: string; message: string }
    expect(refusal._tag).toBe("InvalidRequest")
    expect(JSON.stringify(refusal)).not.toContain("caller-value-7731")
    const notAnObject = await post("ping", "[1, 2]")
    expect(notAnObject.status).toBe(400)
    expect(await rejectedCount()).toBe(rejectedBefore + 2)

    const lines = await eventually(async () => {
      const found = logLines().filter((line) => line.annotations.plugin === "garmin" && /^Garmin notification (stored|refused)$/.test(line.message))
      return found.length >= 5 ? found : undefined
    })
    expect(lines.map((line) => [line.message, line.annotations.kind, line.annotations.status ?? 200])).toEqual([
      ["Garmin notification stored", "push", 200],
      ["Garmin notification refused", "ping", 401],
      ["Garmin notification refused", "push", 401],
      ["Garmin notification refused", "push", 400],
      ["Garmin notification refused", "ping", 400]
    ])
    // The HttpApi middleware never saw these requests: it would have logged each.
    expect(logLines().filter((line) => String(line.annotations["http.url"] ?? "").includes("/webhooks/garmin/"))).toEqual([])
    expect(server.logs()).not.toContain("caller-secret-value")
    expect(server.logs()).not.toContain("caller-value-7731")
  })

  it("stay in the OpenAPI document", async () => {
    const paths = ((await (await fetch(`${server.baseUrl}/openapi.json`)).json()) as { paths: Record<string, unknown> }).paths
    expect(Object.keys(paths)).toEqual(expect.arrayContaining(["/api/v1/webhooks/garmin/push", "/api/v1/webhooks/garmin/ping"]))
  })
})

describe("bunRoutes", () => {
  it("answers a handler's defect with a bare 500, its cause logged and never sent", async () => {
    const routes = bunRoutes(
      [{ method: "POST", path: "/hook", handle: () => Effect.die(new Error("secret cause")) }],
      await Effect.runPromise(Effect.runtime<never>())
    )
    const response = await routes["/hook"]!.POST(new Request("http://localhost/hook", { method: "POST" }))
    expect(response.status).toBe(500)
    expect(await response.text()).toBe("")
  })
})
