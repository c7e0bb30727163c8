/**
 * Which plugins run is configuration: the real server started with different plugin lists.
 * A plugin left out is never imported (its routes 404, its environment is never read); a
 * third-party package in node_modules loads by its name alone, inside its sandbox; a list
 * naming something that is not a plugin stops the server with a clear error.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Redacted } from "effect"
import { freshDatabaseUrl } from "./support/database.ts"
import { freePort } from "../core/storage/embedded-postgres.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { scrape } from "./support/metrics.ts"

const root = fileURLToPath(new URL("../", import.meta.url))
const bun = path.join(root, "node_modules/.bin/bun")
const installed = path.join(root, "node_modules/wearflow-plugin-echo")
const API_KEY = "plugins-api-key"

let databaseUrl: string
const servers: Array<RunningServer> = []
const dirs: Array<string> = []

const envWith = async (plugins: string, extra: Record<string, string> = {}) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-plugins-"))
  dirs.push(dir)
  return { DATABASE_URL: databaseUrl, WEARFLOW_API_KEY: API_KEY, WEARFLOW_DATA_DIR: dir, WEARFLOW_PLUGINS: plugins, ...extra }
}

const start = async (plugins: string, extra?: Record<string, string>) => {
  const server = await startServer(await envWith(plugins, extra))
  servers.push(server)
  return server
}

/** Runs the server expecting it to stop by itself; resolves with its exit code and output. */
const runToExit = async (plugins: string) => {
  const env = await envWith(plugins)
  const child = spawn(bun, ["apps/server/main.ts"], { cwd: root, env: { ...process.env, PORT: String(await freePort()), HOST: "127.0.0.1", ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout.on("data", (chunk) => (output += chunk))
  child.stderr.on("data", (chunk) => (output += chunk))
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
  return { code, output }
}

beforeAll(async () => {
  databaseUrl = Redacted.value(await freshDatabaseUrl())
  await fs.rm(installed, { recursive: true, force: true })
  await fs.cp(path.join(root, "test/fixtures/plugins/echo-provider"), installed, { recursive: true })
})

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
  await fs.rm(installed, { recursive: true, force: true })
  await Promise.all(dirs.map((dir) => fs.rm(dir, { recursive: true, force: true })))
})

describe("plugins from configuration", () => {
  it("does not load a provider left out of the list: its routes 404 and its environment is never read", async () => {
    // Garmin's configuration would fail validation if it were read.
    const server = await start("postgres,webhooks,s3", { GARMIN_API_URL: "not a url" })
    const push = await fetch(`${server.baseUrl}/api/v1/webhooks/garmin/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}"
    })
    expect(push.status).toBe(404)
    const spec = (await (await fetch(`${server.baseUrl}/openapi.json`)).json()) as { paths: Record<string, unknown> }
    expect(Object.keys(spec.paths).some((route) => route.includes("garmin"))).toBe(false)
    expect(spec.paths["/v2/user/{user_id}/connections/{provider}"]).toBeDefined()

    const user = await fetch(`${server.baseUrl}/v2/user`, {
      method: "POST",
      headers: { "x-api-key": API_KEY, "content-type": "application/json" },
      body: JSON.stringify({ client_user_id: "left-out" })
    }).then((r) => r.json() as Promise<{ user_id: string }>)
    const link = await fetch(`${server.baseUrl}/v2/user/${user.user_id}/connections/garmin`, {
      method: "POST",
      headers: { "x-api-key": API_KEY, "content-type": "application/json" },
      body: JSON.stringify({ provider_user_id: "someone" })
    })
    expect(link.status).toBe(404)
    const health = (await (await fetch(`${server.baseUrl}/health`)).json()) as { sinks: Record<string, string> }
    expect(Object.keys(health.sinks).sort()).toEqual(["postgres", "s3", "webhooks"])
  })

  it("runs the default list (Oura and Withings included) with no OURA_* or WITHINGS_* set: it serves, warns once for each, and stays idle", async () => {
    const { WEARFLOW_PLUGINS: _default, ...env } = await envWith("")
    const server = await startServer({ ...env, WEARFLOW_TOKEN_REFRESH_INTERVAL: "100 millis", WEARFLOW_WORKER_PROCESSES: "1" })
    servers.push(server)
    const spec = (await (await fetch(`${server.baseUrl}/openapi.json`)).json()) as { paths: Record<string, unknown> }
    expect(Object.keys(spec.paths)).toContain("/api/v1/webhooks/oura")
    expect(Object.keys(spec.paths)).toContain("/api/v1/webhooks/withings/{secret}")
    // Background loops have gone round many times since the start: a daemon that retried would have logged again.
    await eventually(async () => {
      return ((await scrape(server.baseUrl, "wearflow_token_refresh_rounds_total")) ?? 0) >= 20 ? true : undefined
    }, 30_000)
    const logs = server.logs()
    // Once in the server and once in its worker process, which loads the plugins too.
    for (const process of [(line: string) => !line.includes('"process":'), (line: string) => line.includes('"process":"worker-1"')]) {
      const lines = logs.split("\n").filter(process)
      expect(lines.filter((line) => line.includes("Oura webhook subscriptions are not managed"))).toHaveLength(1)
      expect(lines.filter((line) => line.includes("WITHINGS_NOTIFY_SECRET is not set"))).toHaveLength(1)
    }
    expect(logs.split("\n").filter((line) => /level=(ERROR|FATAL)/.test(line))).toEqual([])
  })

  it("runs only the sinks it lists", async () => {
    const server = await start("garmin,postgres")
    const health = (await (await fetch(`${server.baseUrl}/health`)).json()) as { sinks: Record<string, string> }
    expect(health.sinks).toEqual({ postgres: "ok" })
    const webhooks = await fetch(`${server.baseUrl}/v2/webhooks`, { headers: { "x-api-key": API_KEY } })
    expect(webhooks.status).toBe(404)
  })

  it("loads a third-party plugin from node_modules by its package name, inside its sandbox", async () => {
    const server = await start("garmin,postgres,wearflow-plugin-echo", { ECHO_GREETING: "hi from the package" })
    const answer = await fetch(`${server.baseUrl}/api/v1/webhooks/echo/hello`)
    expect(answer.status).toBe(200)
    // Its declared variable reaches it; DATABASE_URL, set for the server, does not.
    expect(await answer.json()).toEqual({ greeting: "hi from the package", undeclaredReadable: false })
    const spec = (await (await fetch(`${server.baseUrl}/openapi.json`)).json()) as { paths: Record<string, unknown> }
    expect(spec.paths["/api/v1/webhooks/echo/hello"]).toBeDefined()
  })

  it("stops with a clear error when an entry is not a plugin, or one is listed twice", async () => {
    const missing = await runToExit("garmin,no-such-plugin")
    expect(missing.code).not.toBe(0)
    expect(missing.output).toContain("plugin no-such-plugin could not be imported")

    const twice = await runToExit("garmin,postgres,garmin")
    expect(twice.code).not.toBe(0)
    expect(twice.output).toContain("plugin id garmin is configured twice")

    const notAPlugin = await runToExit("garmin,effect")
    expect(notAPlugin.code).not.toBe(0)
    expect(notAPlugin.output).toContain("plugin effect exports no `plugin` object")
  })
})
