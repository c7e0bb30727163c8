/**
 * Garmin's lifecycle notifications against the real server and Postgres: `deregistrations`
 * stop a connection (`provider.connection.error`, `deregistered_per_provider`) and no more
 * data reaches it; `userPermissionsChange` updates its scopes, and withdrawing a permission
 * Wearflow needs emits `required_scopes_not_granted`. The events reach a webhook endpoint.
 */
import { Redacted } from "effect"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8"))
const CLIENT_ID = "lifecycle-garmin-client"
const API_KEY = "lifecycle-api-key"
const ALL_PERMISSIONS = ["ACTIVITY_EXPORT", "WORKOUT_IMPORT", "HEALTH_EXPORT", "COURSE_IMPORT", "MCT_EXPORT"]

let dir: string
let server: RunningServer
let db: pg.Client
let receiver: Receiver

const api = wearflowApi(() => server.baseUrl, API_KEY)
const push = garminWebhook(() => server.baseUrl, CLIENT_ID, "push")
const processed = inboxOutcomes(() => db, 20_000)

let users = 0
const linkedUser = async (garminUserId: string) => {
  const created = await api("POST", "/v2/user", { client_user_id: `lifecycle-${++users}` })
  expect(created.status).toBe(200)
  const userId = created.body.user_id as string
  expect((await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })).status).toBe(200)
  return userId
}

const sourceOf = async (userId: string) => {
  const { body } = await api("GET", `/v2/user/${userId}`)
  return (body.connected_sources as Array<{ provider: string; status: string; scopes: Array<string> | null }>).find((s) => s.provider === "garmin")!
}

const errorEvents = async (userId: string) =>
  (await db.query("select payload from outbox where user_id = $1 and event_type = 'provider.connection.error' order by position", [userId])).rows.map((r) => r.payload)

const permissionsChange = (garminUserId: string, summaryId: string, permissions: Array<string>) => ({
  userPermissionsChange: [{ ...fixture("userPermissionsChange").userPermissionsChange[0], userId: garminUserId, summaryId, permissions }]
})

const daily = (garminUserId: string, summaryId: string) => ({ dailies: [{ ...fixture("dailies").dailies[0], userId: garminUserId, summaryId }] })

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-lifecycle-"))
  const url = Redacted.value(await freshDatabaseUrl())
  server = await startServer({
    DATABASE_URL: url,
    GARMIN_CLIENT_ID: CLIENT_ID,
    GARMIN_API_URL: "http://127.0.0.1:9",
    WEARFLOW_API_KEY: API_KEY,
    WEARFLOW_DATA_DIR: dir,
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
    WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true"
  })
  db = new pg.Client({ connectionString: url })
  await db.connect()
  receiver = await startReceiver()
})

afterAll(async () => {
  await db?.end()
  await server?.stop()
  await receiver?.close()
  await fs.rm(dir, { recursive: true, force: true })
})

describe("userPermissionsChange", () => {
  it("updates the connection's scopes, and announces a permission Wearflow needs being withdrawn", async () => {
    const userId = await linkedUser("perm-garmin-user")
    const bystander = await linkedUser("perm-other-garmin-user")

    // All permissions granted: scopes change, nobody is told of a problem.
    await processed(await push(permissionsChange("perm-garmin-user", "perm-1", ALL_PERMISSIONS)))
    expect((await sourceOf(userId)).scopes).toEqual(ALL_PERMISSIONS)
    expect(await errorEvents(userId)).toEqual([])

    // HEALTH_EXPORT withdrawn.
    const kept = ALL_PERMISSIONS.filter((p) => p !== "HEALTH_EXPORT")
    await processed(await push(permissionsChange("perm-garmin-user", "perm-2", kept)))
    const source = await sourceOf(userId)
    expect(source).toMatchObject({ status: "active", scopes: kept })
    const [event, ...more] = await errorEvents(userId)
    expect(more).toEqual([])
    expect(event).toMatchObject({
      event_type: "provider.connection.error",
      user_id: userId,
      data: { user_id: userId, provider: { slug: "garmin" }, error_type: "required_scopes_not_granted", error_details: { missing_permissions: ["HEALTH_EXPORT"] } }
    })
    // Another Garmin user's connection is untouched.
    expect((await sourceOf(bystander)).scopes).not.toEqual(kept)
    expect(await errorEvents(bystander)).toEqual([])
  })
})

describe("deregistrations", () => {
  it("stops every connection to the Garmin account, tells each user, and sends its later data nowhere", async () => {
    const endpoint = await api("POST", "/v2/webhooks", { url: receiver.url, filter_types: ["provider.connection.error"] })
    expect(endpoint.status).toBe(201)
    // One Garmin account shared by two users of the team, and a bystander.
    const [first, second] = [await linkedUser("dereg-garmin-user"), await linkedUser("dereg-garmin-user")]
    const bystander = await linkedUser("dereg-other-garmin-user")
    await processed(await push(daily("dereg-garmin-user", "before-dereg")))
    const activityOf = async (userId: string) => (await db.query("select count(*)::int as n from records where user_id = $1 and resource = 'activity'", [userId])).rows[0].n as number
    expect([await activityOf(first), await activityOf(second)]).toEqual([1, 1])

    await processed(await push({ deregistrations: [{ ...fixture("deregistrations").deregistrations[0], userId: "dereg-garmin-user" }] }))
    for (const userId of [first, second]) {
      expect((await sourceOf(userId)).status).toBe("deregistered")
      const events = await errorEvents(userId)
      expect(events).toEqual([expect.objectContaining({ user_id: userId, data: expect.objectContaining({ error_type: "deregistered_per_provider", provider: expect.objectContaining({ slug: "garmin" }) }) })])
    }
    expect((await sourceOf(bystander)).status).toBe("active")
    expect(await errorEvents(bystander)).toEqual([])

    // Both users' events reach the endpoint, each once.
    const delivered = await eventually(async () => (receiver.received.length >= 2 ? receiver.received : undefined))
    const bodies = delivered.map((r) => JSON.parse(r.body) as { event_type: string; user_id: string; data: { error_type: string } })
    expect(bodies.map((b) => [b.user_id, b.data.error_type]).sort()).toEqual([[first, "deregistered_per_provider"], [second, "deregistered_per_provider"]].sort())

    // Data Garmin still sends for that account reaches neither user: it waits unlinked.
    const outcome = await processed(await push(daily("dereg-garmin-user", "after-dereg")))
    expect(outcome).toMatchObject({ unlinked: 1 })
    expect([await activityOf(first), await activityOf(second)]).toEqual([1, 1])
    // A second deregistration of a stopped connection tells nobody again.
    await processed(await push({ deregistrations: [{ userId: "dereg-garmin-user" }] }))
    for (const userId of [first, second]) expect(await errorEvents(userId)).toHaveLength(1)
    // Once the webhooks sink has passed every event and sent every message: still two requests.
    await eventually(async () => {
      const { rows } = await db.query(`
        select (select count(*) from outbox o where not exists (
                  select 1 from sink_cursors c where c.sink_id = 'webhooks' and (o.tx, o.position) <= (c.tx, c.position)))
             + (select count(*) from webhook_messages where status <> 'delivered') as n`)
      return Number(rows[0].n) === 0 ? true : undefined
    })
    expect(receiver.received).toHaveLength(2)
  })
})
