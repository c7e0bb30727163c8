/**
 * Polling in the real server: `GET /v2/user/{id}/sync` and `wearflow sync status` show each
 * polled connection's poll.
 * A poll recorded for a connection (here one of Garmin, which is not polled) is started by the
 * server's starter, and its first round ends it — the state, reason and times reach the API.
 */
import pg from "pg"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { eventually } from "./support/server.ts"
import { wearflowApi } from "./support/wearflow-client.ts"
import { wearflowCommand } from "./support/cli.ts"

const CONSUMER = { consumerKey: "sync-api-consumer-key", consumerSecret: "sync-api-consumer-secret" }
const API_KEY = "sync-api-key"

let stack: GarminStack
let db: pg.Client
const api = wearflowApi(() => stack.server.baseUrl, API_KEY)
const wearflow = wearflowCommand(() => stack.env, [])

beforeAll(async () => {
  stack = await startGarminStack({ name: "sync-api", consumer: CONSUMER, apiKey: API_KEY, env: { WEARFLOW_SYNC_START_INTERVAL: "100 millis" } })
  db = stack.db
})
afterAll(async () => {
  await stack?.close()
})

it("lists a user's polls: none for a provider that is not polled; a poll recorded for one is started and ended, and says why", async () => {
  const created = await api("POST", "/v2/user", { client_user_id: "sync-api-user" })
  const userId = created.body.user_id as string
  stack.garmin.addUser("sync-api-garmin-user", {
    oauth2: { accessToken: "sync-api-access", accessTokenExpiresAt: Date.now() + 86_400_000, refreshToken: "sync-api-refresh", refreshTokenExpiresAt: Date.now() + 90 * 86_400_000 }
  })
  const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, {
    provider_user_id: "sync-api-garmin-user",
    oauth2: { access_token: "sync-api-access", refresh_token: "sync-api-refresh" }
  })
  expect(linked.status).toBe(200)
  expect(await api("GET", `/v2/user/${userId}/sync`)).toEqual({ status: 200, body: { data: [] } })

  await db.query(
    "insert into connection_sync (connection_id, poll_id, next_poll_at) select id, gen_random_uuid(), now() from provider_connections where user_id = $1",
    [userId]
  )
  const ended = await eventually(async () => {
    const reply = await api("GET", `/v2/user/${userId}/sync`)
    return reply.body.data[0]?.state === "ended" ? reply.body.data[0] : undefined
  }, 30_000)
  expect(ended).toMatchObject({ provider: "garmin", rounds: 0, cursor: null, end_reason: "the provider is not loaded, or is not polled", next_poll_at: null })

  expect((await api("GET", "/v2/user/00000000-0000-4000-8000-000000000000/sync")).status).toBe(404)

  // The command line reads the same from the database.
  const json = await wearflow(["sync", "status", "--user", userId, "--json"])
  expect(json.code).toBe(0)
  expect(JSON.parse(json.stdout).data).toEqual([{ ...ended, user_id: userId }])
  const text = await wearflow(["sync", "status"])
  expect(text.code).toBe(0)
  expect(text.stdout).toContain(`${userId}  garmin    ended: the provider is not loaded, or is not polled`)
  const nobody = await wearflow(["sync", "status", "--user", "00000000-0000-4000-8000-000000000000"])
  expect(nobody).toMatchObject({ code: 0, stdout: "" })
  expect(nobody.stderr).toContain("no polled connections found")
  expect((await wearflow(["sync", "status", "--user", "someone"])).code).toBe(2)
}, 120_000)
