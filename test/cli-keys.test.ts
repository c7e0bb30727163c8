/**
 * `wearflow teams` and `wearflow keys` end to end: the real command (the npm bin, run by Bun)
 * on the running server's database. A key it creates works on the server at once and is
 * printed once, alone on stdout; a key it revokes is refused at once; bad input is a usage
 * error that never shows back what was given.
 */
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { wearflowCommand } from "./support/cli.ts"

const CONSUMER = { consumerKey: "cli-keys-consumer-key", consumerSecret: "cli-keys-consumer-secret" }
const API_KEY = "cli-keys-bootstrap-key"
const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"

let stack: GarminStack
let db: pg.Client
const printed: Array<string> = []
const wearflow = wearflowCommand(() => stack.env, printed)

/** The status `key` gets on `route` of the running server. */
const statusWith = async (key: string, route: string) =>
  (await fetch(`${stack.server.baseUrl}${route}`, { headers: { "x-api-key": key } })).status

beforeAll(async () => {
  stack = await startGarminStack({ name: "cli-keys", consumer: CONSUMER, apiKey: API_KEY })
  db = stack.db
})

afterAll(async () => {
  await stack?.close()
})

describe("wearflow teams and keys", () => {
  let teamId: string
  let adminKey: { id: string; key: string }

  it("creates and lists teams; the bootstrap key is listed as its team's admin key", async () => {
    const created = await wearflow(["teams", "create", "--name", "cli team"])
    expect(created.code).toBe(0)
    teamId = created.stdout.trim()
    expect(teamId).toMatch(/^[0-9a-f-]{36}$/)

    const listed = await wearflow(["teams", "list"])
    expect(listed.code).toBe(0)
    const lines = listed.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^id\s+name\s+created$/)
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/)[1])).toEqual(["default", "cli team"])

    const teams = JSON.parse((await wearflow(["teams", "list", "--json"])).stdout).data as Array<{ id: string; name: string }>
    const defaultTeam = teams.find((t) => t.name === "default")!
    const bootstrap = JSON.parse((await wearflow(["keys", "list", "--team", defaultTeam.id, "--json"])).stdout).data
    expect(bootstrap).toMatchObject([{ label: "bootstrap", admin: true, scope: "full", status: "active" }])
  })

  it("creates a key, printed once alone on stdout, that works on the server at once", async () => {
    const created = await wearflow(["keys", "create", "--team", teamId, "--label", "ops laptop", "--admin"])
    expect(created.code).toBe(0)
    const key = created.stdout.trim()
    expect(created.stdout).toBe(`${key}\n`)
    expect(key).toMatch(/^wf_[A-Za-z0-9_-]{43}$/)
    expect(created.stderr).toMatch(/^wearflow: created an admin key \(id [0-9a-f-]{36}\); the key is shown this once: store it now\n$/)
    adminKey = { id: /id ([0-9a-f-]{36})/.exec(created.stderr)![1]!, key }
    expect(await statusWith(key, "/v2/teams")).toBe(200)

    const reader = await wearflow(["keys", "create", "--team", teamId, "--label", "dashboards", "--read-only", "--expires-in-days", "7", "--json"])
    expect(reader.code).toBe(0)
    const readerKey = JSON.parse(reader.stdout)
    expect(readerKey).toMatchObject({ team_id: teamId, label: "dashboards", scope: "read_only", admin: false, status: "active" })
    expect(Date.parse(readerKey.expires_at) - Date.now()).toBeGreaterThan(6 * 86_400_000)
    expect(await statusWith(readerKey.key, `/v2/user/${NO_SUCH_ID}`)).toBe(404)
    expect(await statusWith(readerKey.key, "/v2/teams")).toBe(403)

    const listed = await wearflow(["keys", "list", "--team", teamId])
    expect(listed.code).toBe(0)
    const rows = listed.stdout.trimEnd().split("\n")
    expect(rows[0]).toMatch(/^id\s+status\s+scope\s+admin\s+created\s+last used\s+expires\s+label$/)
    expect(rows.slice(1).map((r) => r.split(/\s{2,}/).at(-1))).toEqual(["ops laptop", "dashboards"])
    expect(rows[1]).toMatch(/ active\s+full\s+yes /)
    for (const secret of [key, readerKey.key]) expect(listed.stdout).not.toContain(secret)
  })

  it("revokes a key: the server refuses it at once", async () => {
    const revoked = await wearflow(["keys", "revoke", "--team", teamId, "--key", adminKey.id])
    expect(revoked.code).toBe(0)
    expect(revoked.stdout).toBe("")
    expect(revoked.stderr).toContain(`revoked key ${adminKey.id}`)
    expect(await statusWith(adminKey.key, "/v2/teams")).toBe(401)
    const row = (await db.query("select revoked_at from api_keys where id = $1", [adminKey.id])).rows[0]
    expect(row.revoked_at).not.toBeNull()
  })

  it("rotates a key: both work during the overlap; a revoked key cannot be rotated", async () => {
    const created = await wearflow(["keys", "create", "--team", teamId, "--label", "to rotate", "--json"])
    const old = JSON.parse(created.stdout) as { id: string; key: string }
    const rotated = await wearflow(["keys", "rotate", "--team", teamId, "--key", old.id, "--overlap-hours", "2"])
    expect(rotated.code).toBe(0)
    const successor = rotated.stdout.trim()
    expect(successor).toMatch(/^wf_/)
    expect(rotated.stderr).toContain("rotated: the old key works until")
    for (const key of [old.key, successor]) expect(await statusWith(key, `/v2/user/${NO_SUCH_ID}`)).toBe(404)

    const again = await wearflow(["keys", "rotate", "--team", teamId, "--key", adminKey.id])
    expect(again.code).toBe(1)
    expect(again.stderr).toBe("wearflow: the key is revoked; create a new one instead\n")
  })

  it("bad input is a usage error (2) that shows nothing back; unknown teams and keys exit 1", async () => {
    const secretish = "wf_pasted-by-mistake-0123456789"
    const usage: Array<[ReadonlyArray<string>, string]> = [
      [["keys"], "no keys command given (there are: create, list, revoke, rotate)"],
      [["keys", secretish], "unknown keys command (there are: create, list, revoke, rotate)"],
      [["keys", "create", "--label", "x"], "keys create needs --team"],
      [["keys", "create", "--team", teamId], "keys create needs --label"],
      [["keys", "create", "--team", secretish, "--label", "x"], "--team must be a team id (a UUID; see wearflow teams list)"],
      [["keys", "revoke", "--team", teamId, "--key", secretish], "--key must be a key id (a UUID; see wearflow keys list), not the key itself"],
      [["keys", "revoke", "--team", teamId, secretish], "unexpected argument"],
      [["keys", "create", "--team", teamId, "--label", "x", "--expires-in-days", "0"], "--expires-in-days must be a whole number from 1 to 3650"],
      [["keys", "create", "--team", teamId, "--label", "bad\u0007label"], "--label must be 1 to 128 printable characters"],
      [["teams", "create"], "teams create needs --name"],
      [["teams", "remove"], "unknown teams command (there are: create, list)"]
    ]
    for (const [args, message] of usage) {
      const run = await wearflow(args)
      expect(run.code, args.join(" ")).toBe(2)
      expect(run.stderr).toBe(`wearflow: ${message}\nRun 'wearflow --help' for usage.\n`)
      expect(run.stdout).toBe("")
    }

    const unknownTeam = await wearflow(["keys", "list", "--team", NO_SUCH_ID])
    expect(unknownTeam.code).toBe(1)
    expect(unknownTeam.stderr).toBe("wearflow: no such team\n")
    const unknownKey = await wearflow(["keys", "revoke", "--team", teamId, "--key", NO_SUCH_ID])
    expect(unknownKey.code).toBe(1)
    expect(unknownKey.stderr).toBe("wearflow: no such API key in this team\n")

    const noDatabase = await wearflow(["keys", "list", "--team", teamId], { DATABASE_URL: "postgres://wearflow:wrong@127.0.0.1:9/wearflow" })
    expect(noDatabase.code).toBe(3)
    expect(noDatabase.stderr).toMatch(/^wearflow: the database is unusable: .*\n$/)
    expect(noDatabase.stderr).not.toContain("wrong")

    const help = await wearflow(["keys", "--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("wearflow keys create --team TEAM_ID --label LABEL")
  })

  it("never prints a key on stderr, nor the bootstrap key anywhere", () => {
    const errors = printed.filter((_, i) => i % 2 === 1).join("")
    expect(errors).not.toMatch(/wf_[A-Za-z0-9_-]{43}/)
    expect(errors).not.toContain("wf_pasted-by-mistake")
    expect(printed.join("")).not.toContain(API_KEY)
  })
})
