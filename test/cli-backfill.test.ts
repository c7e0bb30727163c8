/**
 * `wearflow backfill status | start | cancel` end to end: the real command (the npm bin, run by
 * Bun) beside the real server, with a fake Garmin that delivers the history it is asked for.
 * Status reads the database (its `--json` is the API's introspection body); start and cancel
 * go through the server's API and exit 1 when the server declines; usage, configuration and
 * reachability errors are one clear line; no token or key is ever printed.
 */
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { backfillFinished, connectedUser as connectUser, historicalPulls } from "./support/backfill.ts"
import { wearflowCommand } from "./support/cli.ts"
import { eventually } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "cli-backfill-consumer-key", consumerSecret: "cli-backfill-consumer-secret" }
const API_KEY = "cli-backfill-api-key"
const ENCRYPTION_KEY = Buffer.alloc(32, 9).toString("base64")
const BACKFILL_ENV = {
  WEARFLOW_BACKFILL_ON_CONNECT: "true",
  WEARFLOW_BACKFILL_DAYS: "40",
  WEARFLOW_BACKFILL_TYPES: "dailies,sleeps",
  WEARFLOW_BACKFILL_QUIET_PERIOD: "1 second",
  WEARFLOW_BACKFILL_SETTLE: "200 millis",
  WEARFLOW_BACKFILL_BUDGET_DAYS: "10000",
  WEARFLOW_BACKFILL_RETRY_BACKOFF: "200 millis"
}
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

let stack: GarminStack
let garmin: FakeGarmin
let env: Readonly<Record<string, string>>
/** Everything every run printed, checked for tokens and keys at the end. */
const printed: Array<string> = []

const wearflow = wearflowCommand(() => env, printed)

const api = wearflowApi(() => stack.server.baseUrl, API_KEY)

const introspect = (userId: string) => historicalPulls(api, userId)
const finished = (userId: string, timeoutMs = 30_000) => backfillFinished(api, userId, timeoutMs)
const connectedUser = (name: string, options: { permissions?: Array<string> } = {}) =>
  connectUser(garmin, api, name, { ...options, types: ["dailies", "sleeps"] })

/** `2025-06-01 12:34 UTC`, as start prints ranges. */
const minute = (date: Date) => `${date.toISOString().slice(0, 10)} ${date.toISOString().slice(11, 16)} UTC`

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

beforeAll(async () => {
  stack = await startGarminStack({
    name: "cli-backfill",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: { ...BACKFILL_ENV, WEARFLOW_ENCRYPTION_KEY: ENCRYPTION_KEY }
  })
  garmin = stack.garmin
  garmin.state.backfill.deliverTo = `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`
  garmin.state.backfill.deliveryDelayMs = 150
  env = { ...stack.env, WEARFLOW_SERVER_URL: stack.server.baseUrl }
})

afterAll(async () => {
  await stack?.close()
})

describe("wearflow backfill", () => {
  let user: Awaited<ReturnType<typeof connectedUser>>

  it("status shows a running backfill per resource with its bars; --watch (no terminal) ends once it is done and prints the final view", async () => {
    // Garmin holds the first request until the test has seen the backfill running: it runs
    // for as long as the test needs, however slow the machine.
    let release!: () => void
    garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/dailies", hold: new Promise<void>((resolve) => (release = resolve)) })
    user = await connectedUser("cli-status")
    const watching = wearflow(["backfill", "status", "--user", user.userId, "--watch"])
    await eventually(async () => {
      const [view] = (await introspect(user.userId)).data
      return view?.status === "running" && Object.keys(view.historical_pulls).length === 2 ? true : undefined
    })
    await eventually(async () => (watching.sofar.stderr.includes("\n") ? true : undefined), 30_000) // the watch has drawn once

    const running = await wearflow(["backfill", "status", "--user", user.userId])
    expect(running.code, running.stderr).toBe(0)
    expect(running.stderr).toBe("")
    const [header, ...rows] = running.stdout.trimEnd().split("\n")
    expect(header).toMatch(new RegExp(`^cli-status  ${user.userId}  garmin  running  origin connection  created \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2} UTC$`))
    expect(rows.map((row) => row.trim().split(/\s+/)[0])).toEqual(["activity", "sleep"])
    for (const row of rows) expect(row).toMatch(/^  (activity|sleep)\s+(scheduled|in_progress)\s+░{10} 0\/1\s+\d{4}-\d{2}-\d{2} → \d{4}-\d{2}-\d{2}\s+\d+ days with data$/)
    // Aligned: every resource line has its bar at the same column.
    expect(new Set(rows.map((row) => row.search(/[█░]/))).size).toBe(1)
    release()

    const view = await finished(user.userId)
    expect(view.status).toBe("done")
    const watched = await watching
    expect(watched.code, watched.stderr).toBe(0)
    // Off a terminal: plain summary lines on stderr, no redraws; the final view on stdout.
    expect(watched.stderr).toMatch(/^watching {2}1 backfill, 1 not ended {2}windows 0\/[02]\n/)
    expect(watched.stderr).not.toMatch(/[\r\x1b]/)
    expect(watched.stdout).toMatch(new RegExp(`^cli-status  ${user.userId}  garmin  done  origin connection`))

    const done = await wearflow(["backfill", "status", "--user", user.userId])
    expect(done.code, done.stderr).toBe(0)
    expect(done.stdout).toBe(watched.stdout)
    for (const [resource, pull] of Object.entries(view.historical_pulls)) {
      expect(pull.status).toBe("success")
      expect(done.stdout).toMatch(
        new RegExp(`^  ${resource}\\s+success\\s+██████████ 1/1\\s+${pull.range_start.slice(0, 10)} → ${pull.range_end.slice(0, 10)}\\s+${pull.days_with_data} days with data$`, "m")
      )
    }
    expect(view.historical_pulls.activity.days_with_data).toBe(user.seeded.dailies!.length)
  }, 90_000)

  it("status shows a failed resource with its error", async () => {
    // Without HISTORICAL_DATA_EXPORT Garmin answers 403 and the chain stops: every resource failed.
    const forbidden = await connectedUser("cli-forbidden", { permissions: ["ACTIVITY_EXPORT", "HEALTH_EXPORT"] })
    const view = await finished(forbidden.userId)
    const run = await wearflow(["backfill", "status", "--user", forbidden.userId])
    expect(run.code, run.stderr).toBe(0)
    const [header, ...rows] = run.stdout.trimEnd().split("\n")
    expect(header).toMatch(new RegExp(`^cli-forbidden  ${forbidden.userId}  garmin  done  origin connection  created `))
    expect(rows).toHaveLength(2)
    for (const [resource, pull] of Object.entries(view.historical_pulls)) {
      expect(pull.error_details).toMatch(/403/)
      expect(run.stdout).toMatch(new RegExp(`^  ${resource}\\s+failure\\s+░{10} 0/1\\s+.+days with data  error: ${escape(pull.error_details)}$`, "m"))
    }
  })

  it("status --json is the API's historical_pull body; without --user it lists every user; nothing found is a note on stderr", async () => {
    const json = await wearflow(["backfill", "status", "--user", user.userId, "--json"])
    expect(json.code, json.stderr).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual(await introspect(user.userId))

    const all = await wearflow(["backfill", "status", "--provider", "garmin", "--json"])
    expect(all.code, all.stderr).toBe(0)
    expect((JSON.parse(all.stdout).data as Array<{ user_id: string }>).map((v) => v.user_id)).toContain(user.userId)

    const stranger = randomUUID()
    const none = await wearflow(["backfill", "status", "--user", stranger])
    expect(none.code).toBe(0)
    expect(none.stdout).toBe("")
    expect(none.stderr).toBe(`wearflow: no backfills found (user ${stranger})\n`)
    const noneWatched = await wearflow(["backfill", "status", "--provider", "polar", "--watch"])
    expect(noneWatched.code).toBe(0)
    expect(noneWatched.stderr).toBe("wearflow: no backfills found (provider polar)\n")
  })

  it("start --days 50 lists the new windows and what was already requested (exit 0); a second start while it runs is refused (exit 1); cancel exits 0, then 1", async () => {
    // Garmin holds the first request until the backfill is cancelled: it still runs then.
    let release!: () => void
    garmin.inject({ method: "GET", path: "/wellness-api/rest/backfill/dailies", hold: new Promise<void>((resolve) => (release = resolve)) })
    try {
      const started = await wearflow(["backfill", "start", "--user", user.userId, "--days", "50"])
      expect(started.code, started.stderr).toBe(0)
      expect(started.stderr).toBe("")
      const id = new RegExp(`^Backfill (${UUID}) scheduled \\(garmin\\)\\.$`, "m").exec(started.stdout)?.[1]
      expect(id).toBeDefined()
      // The 10 older days of each type; the 40 days already asked for are explained.
      const windows = (await stack.db.query("select type, resource, range_start, range_end from backfill_windows where backfill_id = $1 order by seq", [id])).rows
      expect(windows.map((w) => w.type)).toEqual(["dailies", "sleeps"])
      expect(started.stdout).toContain(`Windows to request, one at a time, in this order (2):\n`)
      const listed = started.stdout.split("Windows to request")[1]!.split("\n\n")[0]!.split("\n").slice(1)
      expect(listed).toHaveLength(2)
      windows.forEach((w, i) => expect(listed[i]).toMatch(new RegExp(`^  ${w.type}\\s+${w.resource}\\s+${escape(minute(w.range_start))} → ${escape(minute(w.range_end))}$`)))
      expect(started.stdout).toMatch(/Already requested since the user connected, left out \(2\):\n {2}dailies\s+activity\s+.+ → .+requested .+\n {2}sleeps\s+sleep\s+.+ → .+requested .+\n/)
      expect(started.stdout).toContain("2 windows will be requested; 2 ranges were already requested since the user connected and are left out")

      const again = await wearflow(["backfill", "start", "--user", user.userId, "--types", "sleeps", "--days", "5"])
      expect(again.code, again.stderr).toBe(1)
      expect(again.stdout).toBe("Nothing was started: a backfill is already running for this connection; cancel it first\n")

      const cancelled = await wearflow(["backfill", "cancel", "--user", user.userId])
      expect(cancelled.code, cancelled.stderr).toBe(0)
      expect(cancelled.stdout).toBe(`Cancelled backfill ${id} (garmin, user ${user.userId}); data already on its way is still stored.\n`)
      expect((await introspect(user.userId)).data[0]!.status).toBe("cancelled")

      const nothing = await wearflow(["backfill", "cancel", "--user", user.userId, "--provider", "garmin"])
      expect(nothing.code).toBe(1)
      expect(nothing.stdout).toBe("")
      expect(nothing.stderr).toBe("wearflow: no backfill from this provider is running for this user\n")
    } finally {
      release()
    }
    // Garmin took the request after all: on record, so the next start leaves it out too.
    await eventually(async () => {
      const { rows } = await stack.db.query("select 1 from backfill_windows where user_id = $1 and type = 'dailies' and status = 'cancelled' and requested_at is not null", [user.userId])
      return rows.length > 0 ? true : undefined
    })
  })

  it("start over history that was all requested already: exit 1 with the server's explanation and the ranges (--json: the server's body)", async () => {
    // Everything the default plan covers was asked for when the user connected.
    const requested = (await stack.db.query("select count(*)::int as n from backfill_windows where user_id = $1 and requested_at is not null and range_end > now() - interval '40 days'", [user.userId])).rows[0].n as number
    const before = (await introspect(user.userId)).data[0]!.backfill_id

    const refused = await wearflow(["backfill", "start", "--user", user.userId])
    expect(refused.code, refused.stderr).toBe(1)
    expect(refused.stderr).toBe("")
    const [explanation, blank, title, ...ranges] = refused.stdout.trimEnd().split("\n")
    expect(explanation).toBe(
      "Nothing was started: Garmin was already asked for all of this history since the user connected; it does not send a range twice — the user must reconnect for it to be requested again"
    )
    expect(blank).toBe("")
    expect(title).toBe(`Already requested since the user connected (${requested}):`)
    expect(ranges).toHaveLength(requested)
    for (const line of ranges) expect(line).toMatch(/^ {2}(dailies|sleeps)\s+(activity|sleep)\s+\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC → \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\s+requested /)

    const json = await wearflow(["backfill", "start", "--user", user.userId, "--types", "dailies", "--json"])
    expect(json.code).toBe(1)
    const body = JSON.parse(json.stdout)
    expect(body).toMatchObject({ _tag: "BackfillConflict", message: expect.stringContaining("already asked for all of this history") })
    expect(body.already_requested.map((r: { type: string }) => r.type)).toEqual(expect.arrayContaining(["dailies"]))
    // Nothing new was recorded.
    expect((await introspect(user.userId)).data[0]!.backfill_id).toBe(before)
  })

  it("a user or type the server does not know is its message and exit 1; the server is found through PORT when no URL is set", async () => {
    const port = new URL(stack.server.baseUrl).port
    const unknownUser = await wearflow(["backfill", "cancel", "--user", randomUUID()], { WEARFLOW_SERVER_URL: undefined, PORT: port })
    expect(unknownUser.code).toBe(1)
    expect(unknownUser.stdout).toBe("")
    expect(unknownUser.stderr).toMatch(/^wearflow: .*user.*\n$/)
    const unknownType = await wearflow(["backfill", "start", "--user", user.userId, "--types", "dailies,nope"])
    expect(unknownType.code).toBe(1)
    // The server names the known types, never the caller's.
    expect(unknownType.stderr).toMatch(/^wearflow: 1 of the requested types is not Garmin backfill types \(.*dailies.*\)\n$/)
    expect(unknownType.stderr).not.toContain("nope")
  })
})

describe("wearflow backfill usage, configuration and reachability errors", () => {
  it("--help lists the backfill commands", async () => {
    const run = await wearflow(["backfill", "--help"])
    expect(run.code).toBe(0)
    expect(run.stderr).toBe("")
    for (const line of [
      "wearflow backfill status [--user USER_ID] [--provider SLUG] [--json] [--watch]",
      "wearflow backfill start --user USER_ID [--provider garmin] [--days N] [--types a,b] [--json]",
      "wearflow backfill cancel --user USER_ID [--provider garmin]",
      "wearflow garmin migrate-oauth2 [--concurrency N] [--json]"
    ]) expect(run.stdout).toContain(line)
    expect(run.stdout).toMatch(/^ {2}backfill status {9}\S/m)
    expect(run.stdout).toMatch(/^ {2}backfill start {10}\S/m)
    expect(run.stdout).toMatch(/^ {2}backfill cancel {9}\S/m)
  })

  it("usage errors exit 2 with one message on stderr, before anything is read or sent", async () => {
    const someone = randomUUID()
    const cases: Array<[ReadonlyArray<string>, string]> = [
      [["backfill"], "no backfill command given (there are: status, start, cancel)"],
      [["backfill", "restart"], "unknown backfill command 'restart' (there are: status, start, cancel)"],
      [["backfill", "start"], "backfill start needs --user USER_ID"],
      [["backfill", "cancel", "--provider", "garmin"], "backfill cancel needs --user USER_ID"],
      [["backfill", "start", "--user"], "--user needs a user id"],
      [["backfill", "start", "--user", "--json"], "--user needs a user id"],
      [["backfill", "start", "--user", "alice"], "--user must be a Wearflow user id (a UUID), not 'alice'"],
      [["backfill", "start", "--user", someone, "--days", "0"], "--days must be a whole number from 1 to 1825, not '0'"],
      [["backfill", "start", "--user", someone, "--days=1826"], "--days must be a whole number from 1 to 1825, not '1826'"],
      [["backfill", "start", "--user", someone, "--days", "ten"], "--days must be a whole number from 1 to 1825, not 'ten'"],
      [["backfill", "start", "--user", someone, "--days", "5", "--days", "6"], "--days is given twice"],
      [["backfill", "start", "--user", someone, "--types", "dailies,,sleeps"], "--types must be backfill types separated by commas"],
      [["backfill", "start", "--user", someone, "--watch"], "unknown option '--watch'"],
      [["backfill", "cancel", "--user", someone, "--json"], "unknown option '--json'"],
      [["backfill", "status", "--provider", "Gar min"], "--provider must be a provider slug such as garmin, not 'Gar min'"],
      [["backfill", "status", "extra"], "unexpected argument 'extra'"]
    ]
    const runs = await Promise.all(cases.map(([args]) => wearflow(args)))
    runs.forEach((run, i) => {
      const [args, message] = cases[i]!
      expect(run.code, args.join(" ")).toBe(2)
      expect(run.stderr).toContain(`wearflow: ${message}`)
      expect(run.stderr).toContain("Run 'wearflow --help' for usage.")
      expect(run.stdout).toBe("")
    })
  })

  it("an unreachable server, a refused or missing API key, or an unusable database is one line and exit 3", async () => {
    const someone = randomUUID()
    const [unreachable, refused, noKey, noDatabase] = await Promise.all([
      wearflow(["backfill", "start", "--user", someone], { WEARFLOW_SERVER_URL: "http://127.0.0.1:9" }),
      wearflow(["backfill", "cancel", "--user", someone], { WEARFLOW_API_KEY: "not-the-key" }),
      wearflow(["backfill", "cancel", "--user", someone], { WEARFLOW_API_KEY: undefined }),
      wearflow(["backfill", "status"], { DATABASE_URL: "postgres://wearflow:wrong@127.0.0.1:9/wearflow" })
    ])
    expect(unreachable.code).toBe(3)
    expect(unreachable.stderr).toMatch(/^wearflow: cannot reach the Wearflow server at http:\/\/127\.0\.0\.1:9: .+\n$/)
    expect(refused.code).toBe(3)
    expect(refused.stderr).toMatch(/^wearflow: the server at http:\/\/127\.0\.0\.1:\d+ refused the API key \(401\): .+\n$/)
    expect(refused.stderr).not.toContain("not-the-key")
    expect(noKey.code).toBe(3)
    expect(noKey.stderr).toBe(`wearflow: no API key: WEARFLOW_API_KEY is unset and ${path.resolve(stack.dataDir, "api-key")} does not exist (set them as the server has them)\n`)
    expect(noDatabase.code).toBe(3)
    expect(noDatabase.stderr).toMatch(/^wearflow: the database is unusable: .*ECONNREFUSED.*\n$/)
    expect(noDatabase.stderr).not.toContain("wrong")
    for (const run of [unreachable, refused, noKey, noDatabase]) expect(run.stdout).toBe("")
  })

  it("never prints a token or a key", () => {
    const output = printed.join("\n")
    expect(output.length).toBeGreaterThan(0)
    for (const user of garmin.state.users.values()) {
      for (const secret of [user.oauth2?.accessToken, user.oauth2?.refreshToken]) if (secret !== undefined) expect(output).not.toContain(secret)
    }
    expect(output).not.toContain("token-garmin-")
    expect(output).not.toContain(API_KEY)
    expect(output).not.toContain(ENCRYPTION_KEY)
  })
})
