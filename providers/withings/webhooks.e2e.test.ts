/**
 * Withings' notification callback on the real Bun server (plugins withings, postgres) on a
 * fresh database: the fake Withings subscribes a user through the route's HEAD check and
 * delivers its form-encoded notification, which is committed to the inbox as kind `notify`;
 * a wrong secret and malformed bodies are refused without echo and store nothing, and
 * neither the secret nor a user's values reach the server's log.
 */
import { Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import { eventually, type RunningServer, startServer } from "../../test/support/server.ts"
import { CALLBACK_PATH } from "./config.ts"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"

const SECRET = "e2e-withings-notify-secret-7f3a9c"
const WRONG = "e2e-withings-notify-secret-guess1"
const WAIT_MS = 60_000

let withings: FakeWithings
let server: RunningServer
let db: pg.Client
let dataDir: string

const callbackUrl = (secret = SECRET) => `${server.baseUrl}${CALLBACK_PATH}/${secret}`

const inboxRows = async () =>
  (await db.query<{ kind: string; body: string }>("select kind, body from inbox where provider = 'withings' order by id")).rows.map((row) => ({ kind: row.kind, body: JSON.parse(row.body) as unknown }))

const post = (body: string | Uint8Array<ArrayBuffer>, secret = SECRET, contentType = "application/x-www-form-urlencoded") =>
  fetch(callbackUrl(secret), { method: "POST", headers: { "content-type": contentType }, body })

beforeAll(async () => {
  withings = await startFakeWithings()
  const url = Redacted.value(await freshDatabaseUrl())
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-withings-"))
  server = await startServer((baseUrl) => ({
    WEARFLOW_PLUGINS: "withings,postgres",
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    DATABASE_URL: url,
    WEARFLOW_API_KEY: "withings-e2e-api-key",
    WEARFLOW_DATA_DIR: dataDir,
    WEARFLOW_PUBLIC_URL: baseUrl,
    WITHINGS_API_URL: withings.url,
    WITHINGS_AUTH_URL: `${withings.url}/oauth2_user/authorize2`,
    WITHINGS_CLIENT_ID: withings.clientId,
    WITHINGS_CLIENT_SECRET: withings.clientSecret,
    WITHINGS_NOTIFY_SECRET: SECRET
  }))
  db = new pg.Client({ connectionString: url })
  await db.connect()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  await withings?.close()
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true })
})

describe("Withings' callback check", () => {
  it("answers HEAD 200 at the secret URL, 404 at any other, with no body", async () => {
    const right = await fetch(callbackUrl(), { method: "HEAD" })
    expect(right.status).toBe(200)
    for (const secret of [WRONG, "x", SECRET.slice(0, -1), `${SECRET}0`]) {
      const wrong = await fetch(callbackUrl(secret), { method: "HEAD" })
      expect(wrong.status).toBe(404)
      expect(await wrong.text()).toBe("")
    }
  })
})

describe("Withings notifications", () => {
  it("are subscribed through the HEAD check and committed to the inbox as kind notify when Withings delivers them", async () => {
    const userId = "918273645"
    const tokens = withings.connect(userId, ["user.metrics"])
    const subscribed = await fetch(`${withings.url}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.access_token}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ action: "subscribe", callbackurl: callbackUrl(), appli: "1" })
    })
    expect(await subscribed.json()).toMatchObject({ status: 0 })
    expect(withings.state.checks).toEqual([{ callbackurl: callbackUrl(), status: 200, passed: true }])

    const statuses = await withings.notify(userId, 1, 1_700_000_000, 1_700_003_600, { deviceid: "892359876fd8805ac45bab078c4828692f0276b1", unknown: "dropped" })

    expect(statuses).toEqual([200])
    expect(withings.state.deliveries.map((d) => d.attempt)).toEqual([1])
    const rows = await eventually(async () => ((await inboxRows()).length > 0 ? inboxRows() : undefined), WAIT_MS)
    expect(rows).toEqual([
      { kind: "notify", body: { userid: userId, appli: 1, startdate: 1_700_000_000, enddate: 1_700_003_600, deviceid: "892359876fd8805ac45bab078c4828692f0276b1" } }
    ])
    // The ingest worker takes it (a hint for a user no connection has yet: nothing to wake).
    await eventually(async () => ((await db.query("select 1 from inbox where provider = 'withings' and processed_at is null")).rowCount === 0 ? true : undefined), WAIT_MS)
  })

  it("stores an appli it does not know (a refusal would only make Withings retry), and account events", async () => {
    const before = (await inboxRows()).length
    const unknown = await post("userid=55501&appli=62&date=2024-05-01")
    expect(unknown.status).toBe(200)
    expect(await unknown.json()).toMatchObject({ inbox_id: expect.any(Number) })
    expect((await post("userid=55502&appli=46&action=unlink&date=1714521600")).status).toBe(200)
    const rows = (await inboxRows()).slice(before)
    expect(rows).toEqual([
      { kind: "notify", body: { userid: "55501", appli: 62, date: "2024-05-01" } },
      { kind: "notify", body: { userid: "55502", appli: 46, action: "unlink", date: "1714521600" } }
    ])
  })

  it("refuses a wrong secret with 404, storing nothing and echoing nothing", async () => {
    const before = (await inboxRows()).length
    for (const secret of [WRONG, SECRET.toUpperCase(), "%00"]) {
      const reply = await post("userid=66601&appli=1&startdate=1&enddate=2", secret)
      expect(reply.status).toBe(404)
      const text = await reply.text()
      expect(text).not.toContain(secret)
      expect(text).not.toContain("66601")
    }
    expect((await inboxRows()).length).toBe(before)
  })

  it("refuses malformed bodies with 400 naming no value, storing nothing", async () => {
    const before = (await inboxRows()).length
    const needle = "77701needle"
    const refused = [
      await post(`userid=${needle}&appli=1`),
      await post(`userid=77702&appli=${needle}`),
      await post(`userid=77703&appli=1&startdate=${needle}`),
      await post(`userid=77704&userid=77705&appli=1`),
      await post(`userid=77706&appli=46&action=${needle}%3Cscript%3E`),
      await post(JSON.stringify({ userid: needle, appli: 1 }), SECRET, "application/json"),
      await post(`userid=77707&appli=1&comment=${needle}${"x".repeat(8 * 1024)}`),
      await post(new Uint8Array([...new TextEncoder().encode("userid=77708&appli=1&x="), 0xff, 0xfe])),
      await post("")
    ]
    for (const reply of refused) {
      expect(reply.status).toBe(400)
      const text = await reply.text()
      expect(text).not.toContain(needle)
      expect(text).not.toMatch(/777\d\d/)
    }
    expect((await inboxRows()).length).toBe(before)
  })

  it("counts what it refused, and logs neither the secret nor a user's values", async () => {
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text()
    const refusedLine = metrics.split("\n").find((line) => line.startsWith("wearflow_notifications_rejected_total") && line.includes('provider="withings"'))
    expect(Number(refusedLine?.split(" ").at(-1))).toBeGreaterThanOrEqual(12)
    const logs = server.logs()
    expect(logs).toContain("Withings notification stored")
    expect(logs).not.toContain(SECRET)
    expect(logs).not.toContain(WRONG)
    for (const value of ["918273645", "55501", "55502", "66601", "77701needle", "892359876fd8805ac45bab078c4828692f0276b1"]) expect(logs).not.toContain(value)
  })
})
