/**
 * Crash safety: `kill -9` the server right after it acknowledged a burst of notifications,
 * start another on the same database, and find every notification processed exactly once
 * and every event delivered to the Postgres sink.
 */
import { Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const fixture = JSON.parse(await fs.readFile(new URL("./fixtures/garmin/dailies.json", import.meta.url), "utf8")) as {
  dailies: Array<Record<string, unknown>>
}
const url = await freshDatabaseUrl()
const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-crash-"))
const env = {
  DATABASE_URL: Redacted.value(url),
  GARMIN_CLIENT_ID: "crash-client",
  WEARFLOW_API_KEY: "crash-key",
  WEARFLOW_DATA_DIR: dataDir,
  WEARFLOW_QUEUE_LOCK_EXPIRATION: "2 seconds"
}
const servers: Array<RunningServer> = []

afterAll(async () => {
  for (const server of servers) await server.stop("SIGKILL")
  await fs.rm(dataDir, { recursive: true, force: true })
})

describe("kill -9", () => {
  it("loses nothing it acknowledged and processes each notification exactly once", async () => {
    // One ingest worker, so that work is certainly still in flight when the kill lands.
    const first = await startServer({ ...env, WEARFLOW_INGEST_CONCURRENCY: "1" })
    servers.push(first)
    const api = wearflowApi(() => first.baseUrl, "crash-key")
    const user = (await api("POST", "/v2/user", { client_user_id: "crash" })).body as { user_id: string }
    await api("POST", `/v2/user/${user.user_id}/connections/garmin`, { provider_user_id: "crash-garmin-user" })

    const bodies = Array.from({ length: 60 }, (_, n) =>
      JSON.stringify({
        dailies: fixture.dailies.map((daily, i) => ({ ...daily, userId: "crash-garmin-user", summaryId: `crash-${n}-${i}` }))
      })
    )
    const statuses = await Promise.all(
      bodies.map((body) => sendGarminNotification(first.baseUrl, "crash-client", "push", body).then((r) => r.status))
    )
    await first.stop("SIGKILL")
    expect(statuses.every((s) => s === 200)).toBe(true)
    const probe = new pg.Client({ connectionString: Redacted.value(url) })
    await probe.connect()
    const pending = Number((await probe.query("select count(*) as n from inbox where processed_at is null")).rows[0].n)
    await probe.end()
    // The kill must land while work is still in flight, or this test proves nothing.
    expect(pending).toBeGreaterThan(0)

    const second = await startServer(env)
    servers.push(second)
    const db = new pg.Client({ connectionString: Redacted.value(url) })
    await db.connect()
    try {
      const count = async (query: string) => Number((await db.query(query, [user.user_id])).rows[0].n)
      // 60 bodies × 2 dailies → 120 activity records + 120 heart-rate batches, one event each.
      await eventually(async () => ((await count("select count(*) as n from records where user_id = $1")) === 240 ? true : undefined), 30_000)
      await eventually(async () => ((await count("select count(*) as n from wearflow_data.activity where user_id = $1")) === 120 ? true : undefined), 30_000)
      expect(await count("select count(*) as n from outbox where user_id = $1 and record_id is not null")).toBe(240)
      expect(await count("select count(distinct record_id) as n from outbox where user_id = $1")).toBe(240)
      expect(Number((await db.query("select count(*) as n from inbox where processed_at is null")).rows[0].n)).toBe(0)
    } finally {
      await db.end()
    }
  })
})
