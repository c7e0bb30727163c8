/**
 * `wearflow garmin migrate-oauth2` end to end: the real command (the npm bin, run by Bun), on
 * the running server's database, against a fake Garmin on loopback. Failures come back per
 * user with exit code 1; re-runs exchange only what is left; a migrated connection's next PING
 * is pulled with its new OAuth 2.0 token; usage and configuration errors are one clear line.
 */
import { readFileSync } from "node:fs"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { wearflowCommand } from "./support/cli.ts"
import { eventually, type RunningServer } from "./support/server.ts"
import { dailySteps, garminWebhook, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "cli-consumer-key", consumerSecret: "cli-consumer-secret" }
const API_KEY = "cli-api-key"
const ENCRYPTION_KEY = Buffer.alloc(32, 7).toString("base64")
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const NOW = Math.floor(Date.now() / 1000)

let stack: GarminStack
let garmin: FakeGarmin
let server: RunningServer
let db: pg.Client
let env: Readonly<Record<string, string>>
/** Everything every run printed, checked for tokens at the end. */
const printed: Array<string> = []

const wearflow = wearflowCommand(() => env, printed)

interface JsonReport {
  found: number
  migrated: number
  skipped: number
  failed: number
  failures: Array<{ user_id: string; client_user_id: string; provider_user_id: string; reason: string }>
}

const api = wearflowApi(() => server.baseUrl, API_KEY)
const ping = garminWebhook(() => server.baseUrl, CONSUMER.consumerKey, "ping")

/** A Wearflow user linked to Garmin user `garminId` with OAuth 1.0a tokens (the fake knows them). */
const oauth1User = async (n: string) => {
  const garminId = `cli-garmin-${n}`
  const oauth1 = { token: `cli-oauth1-token-${n}`, secret: `cli-oauth1-secret-${n}` }
  garmin.addUser(garminId, { oauth1 })
  const created = await api("POST", "/v2/user", { client_user_id: `cli-user-${n}` })
  expect(created.status).toBe(200)
  const linked = await api("POST", `/v2/user/${created.body.user_id}/connections/garmin`, {
    provider_user_id: garminId,
    oauth1: { token: oauth1.token, token_secret: oauth1.secret }
  })
  expect(linked.status).toBe(200)
  return { userId: created.body.user_id as string, garminId, oauth1 }
}

const authVersions = async (userIds: ReadonlyArray<string>) =>
  Object.fromEntries(
    (await db.query("select user_id, auth_version from provider_connections where user_id = any($1::uuid[])", [userIds])).rows.map((r) => [r.user_id, r.auth_version])
  )

const exchanges = () => garmin.state.counters.tokenExchangeCount

beforeAll(async () => {
  stack = await startGarminStack({ name: "cli", consumer: CONSUMER, apiKey: API_KEY, env: { WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY } })
  ;({ garmin, server, db, env } = stack)
})

afterAll(async () => {
  await stack?.close()
})

describe("wearflow garmin migrate-oauth2", () => {
  const users: Array<Awaited<ReturnType<typeof oauth1User>>> = []

  it("migrates every OAuth 1.0a connection it can, reports the others per user, and exits 1", async () => {
    for (const n of ["1", "2", "3"]) users.push(await oauth1User(n))
    const [first, failing, third] = users as [typeof users[0], typeof users[0], typeof users[0]]
    garmin.state.users.get(failing.garminId)!.tokenExchangeFailure = 500

    const run = await wearflow(["garmin", "migrate-oauth2", "--json"])
    expect(run.code, run.stderr).toBe(1)
    const report = JSON.parse(run.stdout) as JsonReport
    expect(report).toMatchObject({ found: 3, migrated: 2, skipped: 0, failed: 1 })
    expect(report.failures).toEqual([
      { user_id: failing.userId, client_user_id: "cli-user-2", provider_user_id: failing.garminId, reason: expect.stringContaining("500") }
    ])
    expect(exchanges()).toBe(3)
    expect(await authVersions(users.map((u) => u.userId))).toEqual({ [first.userId]: "oauth2", [failing.userId]: "oauth1", [third.userId]: "oauth2" })
    // Not a terminal: plain progress lines at the start and the end, no carriage returns.
    expect(run.stderr).not.toContain("\r")
    expect(run.stderr).toContain("migrating  [--------------------]  0/3  migrated 0  failed 0\n")
    expect(run.stderr).toContain("migrating  [####################]  3/3  migrated 2  failed 1\n")
  })

  it("prints the failures as a table naming user and reason, exchanging only the failed connection again", async () => {
    const failing = users[1]!
    const run = await wearflow(["garmin", "migrate-oauth2"])
    expect(run.code, run.stderr).toBe(1)
    expect(exchanges()).toBe(4)
    expect(run.stdout).toMatch(/found\s+1\n\s+migrated\s+0\n\s+skipped\s+0\n\s+failed\s+1\n/)
    const row = run.stdout.split("\n").find((line) => line.startsWith(failing.userId))
    expect(row).toBeDefined()
    expect(row).toContain("cli-user-2")
    expect(row).toContain(failing.garminId)
    expect(row).toContain("Garmin answered 500 to the token exchange")
  })

  it("a re-run after the failure is fixed migrates the rest (exit 0); a third run finds nothing", async () => {
    garmin.state.users.get(users[1]!.garminId)!.tokenExchangeFailure = undefined
    const rerun = await wearflow(["garmin", "migrate-oauth2", "--json", "--concurrency", "2"])
    expect(rerun.code, rerun.stderr).toBe(0)
    expect(JSON.parse(rerun.stdout)).toEqual({ provider: "garmin", found: 1, migrated: 1, skipped: 0, failed: 0, failures: [] })
    expect(exchanges()).toBe(5)
    expect(Object.values(await authVersions(users.map((u) => u.userId)))).toEqual(["oauth2", "oauth2", "oauth2"])

    const third = await wearflow(["garmin", "migrate-oauth2", "--json"])
    expect(third.code, third.stderr).toBe(0)
    expect(JSON.parse(third.stdout)).toMatchObject({ found: 0, migrated: 0, failed: 0 })
    expect(exchanges()).toBe(5)
    const human = await wearflow(["garmin", "migrate-oauth2"])
    expect(human.code).toBe(0)
    expect(human.stdout).toBe("No active Garmin OAuth 1.0a connections are left to migrate.\n")
  })

  it("a migrated connection's next PING is pulled with its new OAuth 2.0 token", async () => {
    const { userId, garminId } = users[0]!
    const fake = garmin.state.users.get(garminId)!
    fake.data.dailies = [{ ...daily, userId: garminId, summaryId: "cli-migrated-1", calendarDate: "2024-04-01", steps: 6543 }]
    await ping({ dailies: [{ userId: garminId, callbackURL: garmin.pingUrl("dailies", { userId: garminId }, NOW - 3600, NOW) }] })
    const steps = await dailySteps(api, userId, "2024-04-01", 20_000)
    expect(steps).toEqual([6543])
    const pull = garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").at(-1)!
    expect(pull.headers.authorization).toBe(`Bearer ${fake.oauth2!.accessToken}`)
  })

  it("an OAuth 1.0a-era PING still in flight after the migration is pulled signed with the kept OAuth 1.0a pair", async () => {
    const { userId, garminId, oauth1 } = users[2]!
    expect(await authVersions([userId])).toEqual({ [userId]: "oauth2" })
    const fake = garmin.state.users.get(garminId)!
    fake.data.dailies = [{ ...daily, userId: garminId, summaryId: "cli-legacy-1", calendarDate: "2024-04-02", steps: 2468 }]
    await ping({
      dailies: [{ userAccessToken: oauth1.token, uploadStartTimeInSeconds: NOW - 3600, uploadEndTimeInSeconds: NOW, callbackURL: garmin.pingUrl("dailies", { oauth1: true }, NOW - 3600, NOW) }]
    })
    const steps = await dailySteps(api, userId, "2024-04-02", 20_000)
    expect(steps).toEqual([2468])
    const pull = garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").at(-1)!
    expect(pull.headers.authorization).toMatch(new RegExp(`^OAuth .*oauth_token="${oauth1.token}"`))
  })

  it("a second run at the same time skips the connections the first one holds", async () => {
    const late = [await oauth1User("4"), await oauth1User("5")]
    garmin.inject({ path: "/partner-gateway/rest/user/token-exchange", delayMs: 3_000, times: 2 })
    const before = garmin.requests.length
    const first = wearflow(["garmin", "migrate-oauth2", "--json"])
    // Both exchanges have reached Garmin: the first run holds both rows until they answer.
    await eventually(async () => (garmin.requests.slice(before).filter((r) => r.path.endsWith("/token-exchange")).length === 2 ? true : undefined))
    const second = await wearflow(["garmin", "migrate-oauth2", "--json"])
    expect(second.code, second.stderr).toBe(0)
    expect(JSON.parse(second.stdout)).toMatchObject({ found: 2, migrated: 0, skipped: 2, failed: 0 })
    const done = await first
    expect(done.code, done.stderr).toBe(0)
    expect(JSON.parse(done.stdout)).toMatchObject({ found: 2, migrated: 2, skipped: 0, failed: 0 })
    expect(Object.values(await authVersions(late.map((u) => u.userId)))).toEqual(["oauth2", "oauth2"])
  })

  it("never prints a token", () => {
    const output = printed.join("\n")
    expect(output.length).toBeGreaterThan(0)
    for (const user of garmin.state.users.values()) {
      const secrets = [user.oauth1?.token, user.oauth1?.secret, user.oauth2?.accessToken, user.oauth2?.refreshToken, ...user.retiredRefreshTokens]
      for (const secret of secrets) if (secret !== undefined) expect(output).not.toContain(secret)
    }
    expect(output).not.toContain(ENCRYPTION_KEY)
  })
})

describe("wearflow usage and configuration errors", () => {
  it("--help prints the usage on stdout and exits 0", async () => {
    const run = await wearflow(["--help"])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain("wearflow garmin migrate-oauth2 [--concurrency N] [--json]")
    expect(run.stderr).toBe("")
  })

  it("unknown commands and options, and bad values, exit 2 with a message on stderr", async () => {
    const cases: Array<[ReadonlyArray<string>, string]> = [
      [["bogus"], "unknown command 'bogus'"],
      [[], "no command given"],
      [["garmin", "migrate"], "unknown garmin command 'migrate'"],
      [["garmin", "migrate-oauth2", "--dry-run"], "unknown option '--dry-run'"],
      [["garmin", "migrate-oauth2", "--concurrency", "0"], "--concurrency must be a whole number from 1 to 32"],
      [["garmin", "migrate-oauth2", "--concurrency=33"], "--concurrency must be a whole number from 1 to 32"],
      [["garmin", "migrate-oauth2", "--concurrency"], "--concurrency needs a number"]
    ]
    for (const [args, message] of cases) {
      const run = await wearflow(args)
      expect(run.code, args.join(" ")).toBe(2)
      expect(run.stderr).toContain(`wearflow: ${message}`)
      expect(run.stdout).toBe("")
    }
    expect(exchanges()).toBe(7)
  })

  it("an unusable configuration or database is one line on stderr and exit code 3, before any exchange", async () => {
    const noClient = await wearflow(["garmin", "migrate-oauth2"], { GARMIN_CLIENT_ID: undefined })
    expect(noClient.code).toBe(3)
    expect(noClient.stderr).toBe(
      "wearflow: GARMIN_CLIENT_ID must be set (Garmin's consumer key and secret sign the token exchange)\n"
    )
    const noDatabase = await wearflow(["garmin", "migrate-oauth2"], { DATABASE_URL: "postgres://wearflow:wrong@127.0.0.1:9/wearflow" })
    expect(noDatabase.code).toBe(3)
    expect(noDatabase.stderr).toMatch(/^wearflow: the database is unusable: .*ECONNREFUSED.*\n$/)
    expect(noDatabase.stderr).not.toContain("wrong")
    const badKey = await wearflow(["garmin", "migrate-oauth2"], { WEARFLOW_ENCRYPTION_KEY: "short" })
    expect(badKey.code).toBe(3)
    expect(badKey.stderr).toBe("wearflow: token encryption keys must be 32 bytes each, base64 or hex, separated by commas\n")
    for (const run of [noClient, noDatabase, badKey]) expect(run.stdout).toBe("")
    expect(exchanges()).toBe(7)
  })
})
