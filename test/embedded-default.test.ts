/**
 * `npm start` with no DATABASE_URL: the server starts its own Postgres under
 * WEARFLOW_DATA_DIR, keeps data across restarts, and stops it cleanly on SIGTERM and SIGINT.
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startServer } from "./support/server.ts"

let dataDir: string

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-embedded-"))
  await fs.chmod(dataDir, 0o755)
})

afterAll(async () => {
  await fs.rm(dataDir, { recursive: true, force: true })
})

const postmasterRunning = () => fs.access(path.join(dataDir, "pg", "postmaster.pid")).then(() => true, () => false)

describe("embedded Postgres default", () => {
  it("starts on its own database, keeps data across a restart, and stops Postgres on SIGTERM and SIGINT", async () => {
    const env = { WEARFLOW_DATA_DIR: dataDir, GARMIN_CLIENT_ID: "c", WEARFLOW_API_KEY: undefined }
    const first = await startServer(env)
    expect(await postmasterRunning()).toBe(true)
    // With no WEARFLOW_API_KEY a key is generated into the data dir; the log names the file only.
    const key = (await fs.readFile(path.join(dataDir, "api-key"), "utf8")).trim()
    expect(first.logs()).not.toContain(key)
    expect((await fs.stat(path.join(dataDir, "api-key"))).mode & 0o077).toBe(0)
    const created = await fetch(`${first.baseUrl}/v2/user`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ client_user_id: "persisted" })
    })
    expect(created.status).toBe(200)
    const { user_id } = (await created.json()) as { user_id: string }
    expect(await first.stop("SIGTERM")).toBe(0)
    expect(await postmasterRunning()).toBe(false)

    const second = await startServer(env)
    const found = await fetch(`${second.baseUrl}/v2/user/${user_id}`, { headers: { "x-api-key": key } })
    expect(found.status).toBe(200)
    expect(await second.stop("SIGINT")).toBe(0)
    expect(await postmasterRunning()).toBe(false)
  })
})
