/**
 * Users over their lifetime against the real server, Postgres and a fake Garmin: the team's
 * users listed a page at a time; a deleted user's Garmin connection deregistered at Garmin,
 * their backfill cancelled, their later data kept from them, the user restored within the grace
 * period; and after it (a server configured with no grace) nothing of the user left in any
 * table — every table with a user_id column, the sinks' own included, raw bodies, staged ETL
 * events, stored activity files — while a `user.deleted` event reaches a webhook endpoint,
 * verified with svix, and the ETL files' deleted_users dataset.
 * A second team can neither list, delete nor restore the first team's users.
 */
import { Redacted } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { gunzipSync } from "node:zlib"
import { Webhook } from "svix"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeGarmin, startFakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "deletion-consumer-key", consumerSecret: "deletion-consumer-secret" }
const API_KEY = "deletion-api-key"
const OTHER_TEAM_KEY = "deletion-other-team-key"
// Both processes read the tokens either stored.
const ENCRYPTION_KEY = randomBytes(32).toString("base64")
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>

let garmin: FakeGarmin
let graceful: RunningServer
let immediate: RunningServer
let db: pg.Client
let receiver: Receiver
const dirs: Array<string> = []

const api = wearflowApi(() => graceful.baseUrl, API_KEY)
/** The server that erases deleted users at once (no grace period). */
const eraser = wearflowApi(() => immediate.baseUrl, API_KEY)
const otherTeam = wearflowApi(() => graceful.baseUrl, OTHER_TEAM_KEY)
const push = garminWebhook(() => graceful.baseUrl, CONSUMER.consumerKey, "push")
const ping = garminWebhook(() => graceful.baseUrl, CONSUMER.consumerKey, "ping")
const processed = inboxOutcomes(() => db, 30_000)

const count = async (query: string, params: Array<unknown> = []) => Number((await db.query(query, params)).rows[0].n)

const createUser = async (clientUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: clientUserId })
  expect(created.status).toBe(200)
  return created.body.user_id as string
}

/** A user linked to a Garmin account the fake knows, with tokens (so disconnecting deregisters at Garmin). */
const garminUser = async (clientUserId: string, garminId: string) => {
  garmin.addUser(garminId, {
    oauth2: { accessToken: `${garminId}-access`, accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: `${garminId}-refresh`, refreshTokenExpiresAt: Date.now() + 86_400_000 }
  })
  const userId = await createUser(clientUserId)
  const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, {
    provider_user_id: garminId,
    oauth2: { access_token: `${garminId}-access`, refresh_token: `${garminId}-refresh` }
  })
  expect(linked.status).toBe(200)
  return userId
}

const dailyOf = (garminId: string, summaryId: string, calendarDate: string) => ({ ...daily, userId: garminId, summaryId, calendarDate })

beforeAll(async () => {
  garmin = await startFakeGarmin(CONSUMER)
  const url = Redacted.value(await freshDatabaseUrl())
  const env = async (extra: Record<string, string>) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-user-deletion-"))
    dirs.push(dir)
    return {
      DATABASE_URL: url,
      WEARFLOW_API_KEY: API_KEY,
      WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY,
      WEARFLOW_DATA_DIR: dir,
      WEARFLOW_BACKFILL_ON_CONNECT: "false",
      WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
      WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
      WEARFLOW_USER_ERASURE_INTERVAL: "200 millis",
      // Long enough that the user's events are still staged when the test looks, even on a
      // loaded machine (a batch written meanwhile would take them out of etl_pending).
      WEARFLOW_ETL_BATCH_SECONDS: "30",
      ...garmin.env,
      ...extra
    }
  }
  // One process with the default grace period (7 days); one, on the same database, with none.
  graceful = await startServer(await env({}))
  immediate = await startServer(await env({ WEARFLOW_USER_DELETION_GRACE: "0 seconds" }))
  db = new pg.Client({ connectionString: url })
  await db.connect()
  receiver = await startReceiver()
  const team = (await db.query("insert into teams (id, name) values (gen_random_uuid(), 'other') returning id")).rows[0].id
  await db.query("insert into api_keys (key_hash, team_id, label) values ($1, $2, 'test')", [createHash("sha256").update(OTHER_TEAM_KEY).digest(), team])
}, 120_000)

afterAll(async () => {
  await db?.end()
  await graceful?.stop()
  await immediate?.stop()
  await garmin?.close()
  await receiver?.close()
  await Promise.all(dirs.map((dir) => fs.rm(dir, { recursive: true, force: true })))
})

describe("GET /v2/user", () => {
  it("lists the team's users a page at a time, each once, and refuses bad limits and cursors clearly", async () => {
    for (let i = 0; i < 7; i++) await createUser(`listed-${i}`)
    const expected = (await db.query("select u.id from users u join api_keys k on k.team_id = u.team_id where k.label = 'bootstrap' and u.deleted_at is null")).rows.map((r) => r.id as string)
    expect(expected.length).toBeGreaterThanOrEqual(7)

    const seen: Array<string> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page = await api("GET", `/v2/user?limit=3${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`)
      expect(page.status).toBe(200)
      expect(page.body.users.length).toBeLessThanOrEqual(3)
      for (const user of page.body.users) {
        expect(user).toMatchObject({ user_id: expect.any(String), client_user_id: expect.any(String), connected_sources: expect.any(Array) })
        seen.push(user.user_id)
      }
      cursor = page.body.next_cursor
      pages++
    } while (cursor !== null && pages < 100)
    expect(pages).toBeGreaterThanOrEqual(3)
    expect(new Set(seen).size).toBe(seen.length)
    expect([...seen].sort()).toEqual([...expected].sort())

    for (const limit of ["0", "501", "x", "1.5"]) {
      const refused = await api("GET", `/v2/user?limit=${limit}`)
      expect(refused.status).toBe(400)
      expect(JSON.stringify(refused.body)).toContain("limit")
    }
    const badCursor = await api("GET", "/v2/user?cursor=not-a-cursor-value")
    expect(badCursor.status).toBe(400)
    expect(badCursor.body.message).toMatch(/cursor/)
    expect(JSON.stringify(badCursor.body)).not.toContain("not-a-cursor-value")
  })

  it("keeps teams apart: another team neither lists, deletes nor restores this team's users", async () => {
    const userId = await createUser("team-a-user")
    const listed = await otherTeam("GET", "/v2/user?limit=500")
    expect(listed.status).toBe(200)
    expect(listed.body.users).toEqual([])
    expect((await otherTeam("DELETE", `/v2/user/${userId}`)).status).toBe(404)
    expect((await otherTeam("POST", "/v2/user/undo_delete", { user_id: userId })).status).toBe(404)
    expect((await api("GET", `/v2/user/${userId}`)).status).toBe(200)
    // Deleted in its own team, it cannot be restored by the other either.
    expect((await api("DELETE", `/v2/user/${userId}`)).status).toBe(200)
    expect((await otherTeam("POST", "/v2/user/undo_delete", { user_id: userId })).status).toBe(404)
    expect((await api("POST", "/v2/user/undo_delete", { user_id: userId })).status).toBe(200)
  })
})

describe("DELETE /v2/user/{user_id}", () => {
  it("deregisters at Garmin, stops the backfill, hides the user and their later data; undo restores the user within the grace period", async () => {
    const userId = await garminUser("deleted-then-restored", "garmin-restored")
    // A backfill waiting for Garmin's delivery (the fake delivers nowhere): running until stopped.
    expect((await api("POST", `/v2/user/${userId}/backfill/garmin`, { days: 3, types: ["dailies"] })).status).toBe(202)
    await eventually(async () => ((await count("select count(*) as n from backfill_windows where user_id = $1 and status = 'requested'", [userId])) > 0 ? true : undefined), 60_000)
    await processed(await push({ dailies: [dailyOf("garmin-restored", "restored-1", "2026-11-01")] }))
    expect(await count("select count(*) as n from records where user_id = $1 and resource = 'activity'", [userId])).toBe(1)

    const before = garmin.state.counters.deregistrations
    const deleted = await api("DELETE", `/v2/user/${userId}`)
    expect(deleted.status).toBe(200)
    expect(deleted.body).toMatchObject({
      user_id: userId,
      status: "deleted",
      connections: [{ provider: "garmin", provider_deregistered: true, shared_account: false }],
      cancelled_backfills: 1
    })
    const graceDays = (Date.parse(deleted.body.erase_after) - Date.parse(deleted.body.deleted_at)) / 86_400_000
    expect(graceDays).toBeCloseTo(7, 5)
    expect(garmin.state.counters.deregistrations).toBe(before + 1)
    expect(garmin.state.users.get("garmin-restored")!.registered).toBe(false)
    expect((await db.query("select status from backfills where user_id = $1", [userId])).rows).toEqual([{ status: "cancelled" }])
    expect(await count("select count(*) as n from backfill_windows where user_id = $1 and status not in ('complete', 'already_requested', 'skipped', 'failed', 'cancelled')", [userId])).toBe(0)
    expect((await db.query("select status, access_token from provider_connections where user_id = $1", [userId])).rows).toEqual([{ status: "disconnected", access_token: null }])

    // Gone for every purpose: reads, data, a second delete, the list.
    const gone = await api("GET", `/v2/user/${userId}`)
    expect(gone.status).toBe(404)
    expect(gone.body.message).toMatch(/deleted/)
    expect((await api("GET", `/v2/summary/activity/${userId}?start_date=2026-11-01`)).status).toBe(404)
    expect((await api("DELETE", `/v2/user/${userId}`)).status).toBe(404)
    expect((await api("GET", "/v2/user?limit=500")).body.users.map((u: { user_id: string }) => u.user_id)).not.toContain(userId)
    expect((await api("GET", `/v2/introspect/historical_pull?user_id=${userId}`)).body.data).toEqual([])
    // Garmin's later data for the account is not stored as the user's.
    expect(await processed(await push({ dailies: [dailyOf("garmin-restored", "restored-2", "2026-11-02")] }))).toMatchObject({ unlinked: 1 })
    expect(await count("select count(*) as n from records where user_id = $1 and resource = 'activity'", [userId])).toBe(1)

    const restored = await api("POST", "/v2/user/undo_delete", { user_id: userId })
    expect(restored.status).toBe(200)
    expect(restored.body).toMatchObject({ user_id: userId, client_user_id: "deleted-then-restored", connected_sources: [{ provider: "garmin", status: "disconnected" }] })
    expect((await api("GET", `/v2/user/${userId}`)).status).toBe(200)
    expect((await db.query("select deleted_at, erase_after from users where id = $1", [userId])).rows).toEqual([{ deleted_at: null, erase_after: null }])
    const again = await api("POST", "/v2/user/undo_delete", { user_id: userId })
    expect(again.status).toBe(409)
    expect(again.body.message).toMatch(/not deleted/)
    expect((await api("POST", "/v2/user/undo_delete", { user_id: "00000000-0000-4000-8000-000000000000" })).status).toBe(404)
  })
})

describe("erasure after the grace period", () => {
  it("leaves nothing of the user in any table, keeps other users' items of a shared body, and sends user.deleted", async () => {
    const endpoint = await api("POST", "/v2/webhooks", { url: receiver.url })
    expect(endpoint.status).toBe(201)
    const secret = (await api("GET", `/v2/webhooks/${endpoint.body.id}/secret`)).body.key as string

    const userId = await garminUser("erased", "garmin-erased")
    const bystander = await garminUser("bystander", "garmin-bystander")
    // One body for the user alone, one shared with the bystander's Garmin account.
    await processed(await push({ dailies: [dailyOf("garmin-erased", "erased-1", "2026-11-01"), dailyOf("garmin-erased", "erased-2", "2026-11-02")] }))
    await processed(await push({ dailies: [dailyOf("garmin-erased", "erased-3", "2026-11-03"), dailyOf("garmin-bystander", "bystander-1", "2026-11-03")] }))
    expect(await count("select count(*) as n from records where user_id = $1 and resource = 'activity'", [userId])).toBe(3)
    expect(await count("select count(*) as n from samples where user_id = $1", [userId])).toBeGreaterThan(0)
    // An activity file, fetched from Garmin and stored.
    const callbackURL = garmin.addActivityFile("garmin-erased", { id: "erased-file-1", bytes: "a FIT file of the erased user" })
    await processed(await ping({ activityFiles: [{ userId: "garmin-erased", summaryId: "erased-file-1", fileType: "FIT", callbackURL }] }))
    const location = (await db.query("select location from activity_files where user_id = $1", [userId])).rows[0].location as string
    expect(await fs.readFile(location, "utf8")).toBe("a FIT file of the erased user")
    // Every sink has taken the user's events: typed rows, webhook messages, staged ETL events.
    await eventually(async () => {
      const n = await count("select count(*) as n from outbox o, sink_cursors c where (o.tx, o.position) > (c.tx, c.position)")
      return n === 0 ? true : undefined
    }, 30_000)
    expect(await count("select count(*) as n from wearflow_data.activity where user_id = $1", [userId])).toBe(3)
    expect(await count("select count(*) as n from webhook_messages where user_id = $1", [userId])).toBeGreaterThan(0)
    const positions = (await db.query("select position from outbox where user_id = $1", [userId])).rows.map((r) => r.position as string)
    expect(await count("select count(*) as n from etl_pending where positions && $1::bigint[]", [positions])).toBeGreaterThan(0)
    const bystanderRows = await count("select count(*) as n from records where user_id = $1", [bystander])

    // Deleted through the process with no grace period: erased at its (or any process's) next sweep.
    const deleted = await eraser("DELETE", `/v2/user/${userId}`)
    expect(deleted.status).toBe(200)
    expect(deleted.body.connections).toEqual([{ provider: "garmin", provider_deregistered: true, shared_account: false }])
    await eventually(async () => ((await count("select count(*) as n from users where id = $1", [userId])) === 0 ? true : undefined), 30_000)

    // Every table with a user_id column — core's, the sinks', the typed tables — holds nothing of
    // the user but the user.deleted event itself (in the outbox, and as the endpoint's message).
    const tables = (await db.query(`
      select c.table_schema, c.table_name, exists (
        select 1 from information_schema.columns e
        where e.table_schema = c.table_schema and e.table_name = c.table_name and e.column_name = 'event_type') as typed
      from information_schema.columns c
      where c.column_name = 'user_id' and c.table_schema not in ('pg_catalog', 'information_schema')`)).rows as Array<{ table_schema: string; table_name: string; typed: boolean }>
    expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(["records", "samples", "outbox", "webhook_messages", "activity", "heartrate", "backfills"]))
    const left: Record<string, number> = {}
    for (const table of tables) {
      const n = await count(
        `select count(*) as n from "${table.table_schema}"."${table.table_name}" where user_id::text = $1${table.typed ? " and event_type <> 'user.deleted'" : ""}`,
        [userId]
      )
      if (n > 0) left[`${table.table_schema}.${table.table_name}`] = n
    }
    expect(left).toEqual({})
    // Raw bodies: nothing names the user's Garmin account; the bystander's item of the shared body stays.
    expect(await count("select count(*) as n from inbox where strpos(body, 'garmin-erased') > 0")).toBe(0)
    expect(await count("select count(*) as n from unlinked_notifications where provider_user_id = 'garmin-erased'")).toBe(0)
    expect(await count("select count(*) as n from inbox where strpos(body, 'bystander-1') > 0")).toBe(1)
    expect(await count("select count(*) as n from etl_pending where positions && $1::bigint[]", [positions])).toBe(0)
    await expect(fs.access(location)).rejects.toThrow()
    expect(await count("select count(*) as n from records where user_id = $1", [bystander])).toBe(bystanderRows)
    expect((await api("GET", `/v2/user/${bystander}`)).status).toBe(200)

    // No longer restorable: erased.
    expect((await api("POST", "/v2/user/undo_delete", { user_id: userId })).status).toBe(404)

    // user.deleted: once in the outbox, and at the endpoint, signed.
    const [event, ...more] = (await db.query("select payload from outbox where user_id = $1", [userId])).rows.map((r) => r.payload)
    expect(more).toEqual([])
    expect(event).toMatchObject({ event_type: "user.deleted", user_id: userId, client_user_id: "erased", data: { user_id: userId, client_user_id: "erased" } })
    const delivery = await eventually(async () => receiver.received.find((r) => JSON.parse(r.body).event_type === "user.deleted"), 30_000)
    const verified = new Webhook(secret).verify(delivery.body, delivery.headers) as Record<string, unknown>
    expect(verified).toMatchObject({
      event_type: "user.deleted",
      user_id: userId,
      team_id: expect.any(String),
      data: { user_id: userId, client_user_id: "erased", deleted_at: expect.any(String), erased_at: expect.any(String) }
    })
    // And as a row of the ETL files' deleted_users dataset (whichever process wrote the batch).
    const etlRow = await eventually(async () => {
      for (const dir of dirs) {
        const root = path.join(dir, "etl", "resource=deleted_users")
        const files = await fs.readdir(root, { recursive: true }).catch(() => [] as Array<string>)
        for (const file of files.filter((f) => f.endsWith(".ndjson.gz"))) {
          const rows = gunzipSync(await fs.readFile(path.join(root, file))).toString("utf8").trim().split("\n").map((line) => JSON.parse(line))
          const row = rows.find((r) => r.user_id === userId)
          if (row) return row
        }
      }
      return undefined
    }, 120_000)
    expect(etlRow).toMatchObject({ event_type: "user.deleted", user_id: userId, client_user_id: "erased", erased_at: expect.any(String) })
  }, 240_000)
})
