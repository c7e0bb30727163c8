/**
 * Teams and API keys through the admin API, on two server processes sharing one database:
 * the bootstrap key is an admin key; an admin makes a team and a key that works at once; the
 * list shows labels and times, never a secret; a key revoked through one process is refused by
 * the other at once; expiry and a rotation's overlap are honoured; read-only keys only read,
 * on the app's routes and a plugin's; team keys never reach admin routes nor another team.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"

const CONSUMER = { consumerKey: "keys-consumer-key", consumerSecret: "keys-consumer-secret" }
const ADMIN_KEY = "keys-bootstrap-admin-key"

let stack: GarminStack
let db: pg.Client
let first: RunningServer
let second: RunningServer

interface Reply {
  readonly status: number
  readonly body: any
  readonly text: string
}

/** A `/v2` call to `server` with `key`. */
const call = async (server: RunningServer, key: string, method: string, route: string, body?: unknown): Promise<Reply> => {
  const response = await fetch(`${server.baseUrl}${route}`, {
    method,
    headers: { "x-api-key": key, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, body: text.length > 0 ? JSON.parse(text) : null, text }
}

const admin = (method: string, route: string, body?: unknown) => call(first, ADMIN_KEY, method, route, body)

const createTeam = async (name: string) => {
  const reply = await admin("POST", "/v2/teams", { name })
  expect(reply.status).toBe(201)
  return reply.body.id as string
}

const createKey = async (teamId: string, spec: Record<string, unknown>) => {
  const reply = await admin("POST", `/v2/teams/${teamId}/api_keys`, spec)
  expect(reply.status).toBe(201)
  return reply.body as { id: string; key: string; label: string; scope: string; admin: boolean; expires_at: string | null }
}

/** Whether `key` opens `GET /v2/user/{unknown}` on `server`: 404 (it does) or 401 (it does not). */
const opens = async (server: RunningServer, key: string) => {
  const { status } = await call(server, key, "GET", "/v2/user/00000000-0000-4000-8000-000000000000")
  expect([401, 404]).toContain(status)
  return status === 404
}

beforeAll(async () => {
  stack = await startGarminStack({ name: "api-keys", consumer: CONSUMER, apiKey: ADMIN_KEY, replicas: 2 })
  db = stack.db
  ;[first, second] = stack.servers as [RunningServer, RunningServer]
})

afterAll(async () => {
  await stack?.close()
})

describe("teams and API keys", () => {
  it("the bootstrap key is an admin key: it creates a team and a key, which works at once on every process", async () => {
    const teamId = await createTeam("acme")
    const teams = await admin("GET", "/v2/teams")
    expect(teams.status).toBe(200)
    expect(teams.body.data.map((t: { name: string }) => t.name)).toEqual(["default", "acme"])

    const created = await createKey(teamId, { label: "acme backend" })
    expect(created).toMatchObject({ label: "acme backend", scope: "full", admin: false, expires_at: null })
    expect(created.key).toMatch(/^wf_[A-Za-z0-9_-]{43}$/)
    // Only the hash is stored.
    const stored = await db.query("select key_hash from api_keys where id = $1", [created.id])
    expect(stored.rows[0].key_hash).toEqual(createHash("sha256").update(created.key).digest())

    expect(await opens(first, created.key)).toBe(true)
    expect(await opens(second, created.key)).toBe(true)
    const user = await call(second, created.key, "POST", "/v2/user", { client_user_id: "acme-user" })
    expect(user.status).toBe(200)
    expect((await db.query("select team_id from users where id = $1", [user.body.user_id])).rows[0].team_id).toBe(teamId)
  })

  it("lists a team's keys with labels and times, never a secret; last use is recorded off the request path", async () => {
    const teamId = await createTeam("listing")
    const used = await createKey(teamId, { label: "used" })
    const unused = await createKey(teamId, { label: "unused", scope: "read_only" })
    expect(await opens(second, used.key)).toBe(true)

    const listed = await eventually(async () => {
      const reply = await admin("GET", `/v2/teams/${teamId}/api_keys`)
      return reply.body.data.find((k: { id: string }) => k.id === used.id)?.last_used_at !== null ? reply : undefined
    })
    expect(listed.status).toBe(200)
    expect(listed.body.next_cursor).toBeNull()
    expect(listed.body.data.map((k: { label: string; scope: string; status: string }) => [k.label, k.scope, k.status])).toEqual([
      ["used", "full", "active"],
      ["unused", "read_only", "active"]
    ])
    for (const key of listed.body.data) {
      expect(Object.keys(key).sort()).toEqual(["admin", "created_at", "expires_at", "id", "label", "last_used_at", "revoked_at", "scope", "status", "team_id"])
      expect(Date.parse(key.created_at)).not.toBeNaN()
    }
    expect(listed.body.data[1].last_used_at).toBeNull()
    for (const secret of [used.key, unused.key]) expect(listed.text).not.toContain(secret)
  })

  it("pages teams and keys by cursor; a cursor it did not hand out is a 400 that does not echo it", async () => {
    const teamId = await createTeam("paging")
    const ids: Array<string> = []
    for (const n of [1, 2, 3, 4, 5]) ids.push((await createKey(teamId, { label: `key-${n}` })).id)
    const seen: Array<string> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const reply: Reply = await admin("GET", `/v2/teams/${teamId}/api_keys?limit=2${cursor ? `&cursor=${cursor}` : ""}`)
      expect(reply.status).toBe(200)
      expect(reply.body.data.length).toBeLessThanOrEqual(2)
      seen.push(...reply.body.data.map((k: { id: string }) => k.id))
      cursor = reply.body.next_cursor
      pages++
    } while (cursor !== null)
    expect(seen).toEqual(ids)
    expect(pages).toBe(3)

    const teams: Array<string> = []
    cursor = null
    do {
      const reply: Reply = await admin("GET", `/v2/teams?limit=1${cursor ? `&cursor=${cursor}` : ""}`)
      teams.push(...reply.body.data.map((t: { id: string }) => t.id))
      cursor = reply.body.next_cursor
    } while (cursor !== null)
    expect(teams).toContain(teamId)
    expect(new Set(teams).size).toBe(teams.length)

    const bad = await admin("GET", `/v2/teams/${teamId}/api_keys?cursor=not-a-cursor-xyz`)
    expect(bad.status).toBe(400)
    expect(bad.text).not.toContain("not-a-cursor-xyz")
    expect((await admin("GET", `/v2/teams/${teamId}/api_keys?limit=0`)).status).toBe(400)
  })

  it("a key revoked through one process is refused by another at once", async () => {
    const teamId = await createTeam("revoking")
    const key = await createKey(teamId, { label: "to revoke" })
    expect(await opens(second, key.key)).toBe(true)
    const revoked = await admin("DELETE", `/v2/teams/${teamId}/api_keys/${key.id}`)
    expect(revoked.status).toBe(200)
    expect(revoked.body).toMatchObject({ id: key.id, status: "revoked" })
    expect(revoked.body.revoked_at).not.toBeNull()
    // No waiting: the very next request, on the other process.
    const refused = await call(second, key.key, "GET", "/v2/user/00000000-0000-4000-8000-000000000000")
    expect(refused.status).toBe(401)
    expect(await opens(first, key.key)).toBe(false)
    expect((await admin("GET", `/v2/teams/${teamId}/api_keys`)).body.data[0].status).toBe("revoked")
    // Revoking again changes nothing; unknown ids and another team's keys are 404.
    expect((await admin("DELETE", `/v2/teams/${teamId}/api_keys/${key.id}`)).body.revoked_at).toBe(revoked.body.revoked_at)
    expect((await admin("DELETE", `/v2/teams/${teamId}/api_keys/00000000-0000-4000-8000-000000000000`)).status).toBe(404)
    const otherTeam = await createTeam("revoking-other")
    expect((await admin("DELETE", `/v2/teams/${otherTeam}/api_keys/${key.id}`)).status).toBe(404)
    expect((await admin("DELETE", `/v2/teams/not-a-team/api_keys/${key.id}`)).status).toBe(404)
  })

  it("honours a key's expiry; an expiry in the past is refused at creation", async () => {
    const teamId = await createTeam("expiring")
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString()
    const key = await createKey(teamId, { label: "expiring", expires_at: expiresAt })
    expect(Date.parse(key.expires_at!)).toBe(Date.parse(expiresAt))
    expect(await opens(second, key.key)).toBe(true)
    // The hour passes.
    await db.query("update api_keys set expires_at = now() - interval '1 second' where id = $1", [key.id])
    expect(await opens(second, key.key)).toBe(false)
    expect((await admin("GET", `/v2/teams/${teamId}/api_keys`)).body.data[0].status).toBe("expired")

    const past = await admin("POST", `/v2/teams/${teamId}/api_keys`, { label: "late", expires_at: "2001-01-01T00:00:00Z" })
    expect(past.status).toBe(400)
    expect(past.text).not.toContain("2001")
  })

  it("rotation: a new key at once, the old one working until the overlap ends, then refused", async () => {
    const teamId = await createTeam("rotating")
    const original = await createKey(teamId, { label: "rotated", scope: "read_only" })

    const rotated = await admin("POST", `/v2/teams/${teamId}/api_keys/${original.id}/rotate`, { overlap_seconds: 3600 })
    expect(rotated.status).toBe(201)
    const successor = rotated.body.key as typeof original
    expect(successor).toMatchObject({ label: "rotated", scope: "read_only", admin: false, expires_at: null })
    expect(successor.key).not.toBe(original.key)
    const overlapEnd = Date.parse(rotated.body.previous.expires_at)
    expect(overlapEnd).toBeGreaterThan(Date.now() + 3_000_000)
    expect(overlapEnd).toBeLessThanOrEqual(Date.now() + 3_600_000)
    // During the overlap both work, on both processes.
    for (const server of [first, second]) {
      expect(await opens(server, original.key)).toBe(true)
      expect(await opens(server, successor.key)).toBe(true)
    }

    // The successor rotated again with a one-second overlap: it is refused once that second is over.
    const again = await admin("POST", `/v2/teams/${teamId}/api_keys/${successor.id}/rotate`, { overlap_seconds: 1 })
    expect(again.status).toBe(201)
    await eventually(async () => ((await opens(second, successor.key)) ? undefined : true))
    expect(await opens(second, again.body.key.key)).toBe(true)
    // By default the overlap is a day; a key that no longer works cannot be rotated.
    const defaulted = await admin("POST", `/v2/teams/${teamId}/api_keys/${again.body.key.id}/rotate`, {})
    expect(defaulted.status).toBe(201)
    expect(Date.parse(defaulted.body.previous.expires_at)).toBeGreaterThan(Date.now() + 23 * 3_600_000)
    expect((await admin("POST", `/v2/teams/${teamId}/api_keys/${successor.id}/rotate`, {})).status).toBe(409)
    expect((await admin("POST", `/v2/teams/${teamId}/api_keys/${original.id}/rotate`, { overlap_seconds: -1 })).status).toBe(400)
  })

  it("a read-only key reads but is refused (403) on every write, the app's and a plugin's", async () => {
    const teamId = await createTeam("read-only")
    const writer = await createKey(teamId, { label: "writer" })
    const reader = await createKey(teamId, { label: "reader", scope: "read_only" })
    const user = await call(first, writer.key, "POST", "/v2/user", { client_user_id: "ro-user" })
    expect(user.status).toBe(200)

    expect((await call(second, reader.key, "GET", `/v2/user/${user.body.user_id}`)).status).toBe(200)
    expect((await call(second, reader.key, "GET", "/v2/webhooks")).status).toBe(200)
    const writes = [
      ["POST", "/v2/user", { client_user_id: "ro-secret-client-id" }],
      ["POST", `/v2/user/${user.body.user_id}/backfill/garmin`, {}],
      ["DELETE", `/v2/user/${user.body.user_id}/connections/garmin`, undefined],
      ["POST", "/v2/webhooks", { url: "https://example.com/hook" }]
    ] as const
    for (const [method, route, body] of writes) {
      const reply = await call(second, reader.key, method, route, body)
      expect(reply.status).toBe(403)
      expect(reply.body).toEqual({ _tag: "Forbidden", message: "this API key is read-only" })
    }
    expect((await db.query("select count(*)::int as n from users where team_id = $1", [teamId])).rows[0].n).toBe(1)

    // Secrets are more than data: an endpoint's signing secret and custom headers need a full key.
    const endpoint = await call(first, writer.key, "POST", "/v2/webhooks", { url: "https://example.com/hook" })
    expect(endpoint.status).toBe(201)
    for (const route of [`/v2/webhooks/${endpoint.body.id}/secret`, `/v2/webhooks/${endpoint.body.id}/headers`]) {
      // The process that stored the secret reads it (each test process has its own encryption key).
      const refused = await call(first, reader.key, "GET", route)
      expect(refused.status).toBe(403)
      expect(JSON.stringify(refused.body)).not.toContain("whsec_")
      const allowed = await call(first, writer.key, "GET", route)
      expect(allowed.status, `${route} ${JSON.stringify(allowed.body)}`).toBe(200)
    }
    expect((await call(second, reader.key, "GET", `/v2/webhooks/${endpoint.body.id}`)).status).toBe(200)
  })

  it("team keys never reach admin routes, nor another team's data", async () => {
    const teamA = await createTeam("team-a")
    const teamB = await createTeam("team-b")
    const keyA = await createKey(teamA, { label: "a" })
    const keyB = await createKey(teamB, { label: "b" })
    const userB = await call(first, keyB.key, "POST", "/v2/user", { client_user_id: "b-user" })

    for (const [method, route, body] of [
      ["GET", "/v2/teams", undefined],
      ["POST", "/v2/teams", { name: "sneaky" }],
      ["GET", `/v2/teams/${teamB}/api_keys`, undefined],
      ["GET", `/v2/teams/${teamA}/api_keys`, undefined],
      ["POST", `/v2/teams/${teamA}/api_keys`, { label: "escalate", admin: true }],
      ["DELETE", `/v2/teams/${teamB}/api_keys/${keyB.id}`, undefined],
      ["POST", `/v2/teams/${teamB}/api_keys/${keyB.id}/rotate`, {}]
    ] as const) {
      const reply = await call(second, keyA.key, method, route, body)
      expect(reply.status).toBe(403)
      expect(reply.body).toEqual({ _tag: "Forbidden", message: "this route needs an admin API key" })
    }
    expect(await opens(first, keyB.key)).toBe(true)
    expect((await call(first, keyA.key, "GET", `/v2/user/${userB.body.user_id}`)).status).toBe(404)
    expect((await call(first, "no-such-key", "GET", "/v2/teams")).status).toBe(401)
    expect((await db.query("select count(*)::int as n from teams where name = 'sneaky'")).rows[0].n).toBe(0)

    // An admin key made through the API manages teams; unknown teams are 404 without echo.
    const adminKey = await createKey(teamA, { label: "second admin", admin: true })
    expect((await call(second, adminKey.key, "GET", "/v2/teams")).status).toBe(200)
    const unknown = await call(second, adminKey.key, "GET", "/v2/teams/not-a-team-id-echo/api_keys")
    expect(unknown.status).toBe(404)
    expect(unknown.text).not.toContain("not-a-team-id-echo")
    // A read-only admin key lists, but does not create.
    const auditor = await createKey(teamA, { label: "auditor", admin: true, scope: "read_only" })
    expect((await call(second, auditor.key, "GET", "/v2/teams")).status).toBe(200)
    expect((await call(second, auditor.key, "POST", "/v2/teams", { name: "by-auditor" })).status).toBe(403)
  })

  it("a revoked bootstrap key stays revoked when a process starts with it again, and says so", async () => {
    const defaultTeam = (await admin("GET", "/v2/teams")).body.data.find((t: { name: string }) => t.name === "default").id as string
    const successor = await createKey(defaultTeam, { label: "successor admin", admin: true })
    const [bootstrap] = (await admin("GET", `/v2/teams/${defaultTeam}/api_keys`)).body.data
    expect(bootstrap).toMatchObject({ label: "bootstrap", admin: true })
    expect((await call(second, successor.key, "DELETE", `/v2/teams/${defaultTeam}/api_keys/${bootstrap.id}`)).status).toBe(200)
    expect((await admin("GET", "/v2/teams")).status).toBe(401)

    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-api-keys-restart-"))
    const third = await startServer({ ...stack.env, WEARFLOW_DATA_DIR: dataDir })
    try {
      await eventually(async () => (third.logs().includes("the bootstrap API key (WEARFLOW_API_KEY) is revoked or expired") ? true : undefined))
      expect((await call(third, ADMIN_KEY, "GET", "/v2/teams")).status).toBe(401)
      expect((await call(third, successor.key, "GET", "/v2/teams")).status).toBe(200)
      expect(third.logs()).not.toContain(ADMIN_KEY)
    } finally {
      await third.stop()
      await fs.rm(dataDir, { recursive: true, force: true })
    }
  })

  it("no secret reaches either process's logs", () => {
    const logs = first.logs() + second.logs()
    expect(logs).toContain("API key revoked")
    expect(logs).not.toContain(ADMIN_KEY)
    expect(logs).not.toMatch(/wf_[A-Za-z0-9_-]{43}/)
  })
})
