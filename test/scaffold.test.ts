/**
 * `wearflow plugin new provider <id>` writes a folder that type-checks, passes the
 * conformance kit as generated, and runs in the real server by configuration alone.
 */
import { spawn } from "node:child_process"
import { createHmac } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Redacted } from "effect"
import { afterAll, describe, expect, inject, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"

const root = fileURLToPath(new URL("../", import.meta.url))
const id = `scaffolded-${process.pid}`
const folder = path.join(root, "providers", id)
const sinkId = `${id}-sink`
const sinkFolder = path.join(root, "sinks", sinkId)
const servers: Array<RunningServer> = []

const exec = (command: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    child.once("exit", (code) => resolve({ code, output }))
  })

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
  await fs.rm(folder, { recursive: true, force: true })
  await fs.rm(sinkFolder, { recursive: true, force: true })
  await fs.rm(path.join(root, `tsconfig.${id}.json`), { force: true })
})

describe("wearflow plugin new", () => {
  it("scaffolds a provider and a sink that type-check, pass the conformance kit, and run by configuration", async () => {
    const created = await exec(path.join(root, "node_modules/.bin/bun"), ["apps/cli/main.ts", "plugin", "new", "provider", id])
    expect(created.code, created.output).toBe(0)
    expect(created.output).toContain(`providers/${id}/mod.ts`)
    const sink = await exec(path.join(root, "node_modules/.bin/bun"), ["apps/cli/main.ts", "plugin", "new", "sink", sinkId])
    expect(sink.code, sink.output).toBe(0)

    // Refuses to overwrite.
    const again = await exec(path.join(root, "node_modules/.bin/bun"), ["apps/cli/main.ts", "plugin", "new", "provider", id])
    expect(again.code).toBe(3)
    expect(again.output).toContain("exists")

    await fs.writeFile(path.join(root, `tsconfig.${id}.json`), JSON.stringify({ extends: "./tsconfig.json", include: [`providers/${id}`, `sinks/${sinkId}`] }))
    const typecheck = await exec(path.join(root, "node_modules/.bin/tsc"), ["--noEmit", "-p", `tsconfig.${id}.json`])
    expect(typecheck.code, typecheck.output).toBe(0)

    const kit = await exec(path.join(root, "node_modules/.bin/vitest"), ["run", `providers/${id}`, `sinks/${sinkId}`], { DATABASE_URL: inject("adminDatabaseUrl"), NO_COLOR: "1", FORCE_COLOR: "0" })
    expect(kit.code, kit.output).toBe(0)
    expect(kit.output).toMatch(/Tests\s+9 passed/)

    const secret = "scaffold-secret"
    const server = await startServer({
      DATABASE_URL: Redacted.value(await freshDatabaseUrl()),
      WEARFLOW_API_KEY: "scaffold-api-key",
      WEARFLOW_DATA_DIR: await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-scaffold-")),
      WEARFLOW_PLUGINS: `${id},postgres,${sinkId}`,
      [`${id.replace(/-/g, "_").toUpperCase()}_WEBHOOK_SECRET`]: secret
    })
    servers.push(server)
    const body = JSON.stringify({ records: [{ userId: "someone", id: "d1", day: "2026-12-01", steps: 100 }] })
    const post = (signature: string) =>
      fetch(`${server.baseUrl}/api/v1/webhooks/${id}`, { method: "POST", headers: { "content-type": "application/json", [`x-${id}-signature`]: signature }, body })
    expect((await post("0".repeat(64))).status).toBe(401)
    const accepted = await post(createHmac("sha256", secret).update(body).digest("hex"))
    expect(accepted.status).toBe(200)
    expect(await accepted.json()).toMatchObject({ accepted: 1 })
    await eventually(async () => ((await (await fetch(`${server.baseUrl}/health`)).json()) as { ingest?: { pending_jobs?: number } }).ingest?.pending_jobs === 0 || undefined)
  })
})
