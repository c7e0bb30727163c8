/**
 * The operator dashboard (/dashboard) in a real headless Chromium against the real server, no
 * answer stood in: signing in with an API key; the connection a posted Garmin notification fed,
 * listed by GET /v2/user with its per-resource data from GET /v2/introspect/resources; the
 * `message.attempt.exhausted` alert a failing webhook message opens, shown in the alerts view
 * and cleared once the message is resent from the webhooks view and the receiver gets it.
 * Every value is rendered as text (a client user id that is HTML stays text), every API call
 * the page makes succeeds, and the page runs under its Content-Security-Policy without a
 * violation.
 *
 * WEARFLOW_SCREENSHOTS=1 writes each view to docs/dashboard/<view>.png (committed; CI leaves
 * them alone).
 */
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { createHash } from "node:crypto"
import type pg from "pg"
import type { Browser, Page } from "puppeteer-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { browserUnavailable, launchBrowser } from "./support/browser.ts"
import { backfillFinished, connectedUser } from "./support/backfill.ts"
import { eventually, type RunningServer } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const CLIENT_ID = "dashboard-garmin-client"
const API_KEY = "dashboard-api-key"
const OTHER_TEAM_KEY = "dashboard-other-team-key"
const GARMIN_USER = "dashboard-garmin-user"
const CLIENT_USER = "dashboard-customer-7"
/** A client user id that is markup: the page must show it as text, never run it. */
const MARKUP_USER = `<img src=x id=injected onerror="document.title='owned'">`
const SCREENSHOTS = process.env["WEARFLOW_SCREENSHOTS"] === "1"
const shots = fileURLToPath(new URL("../docs/dashboard/", import.meta.url))

const skip = await browserUnavailable()
if (skip !== undefined) console.warn(`dashboard browser test skipped: ${skip}`)

let stack: GarminStack
let dir: string
/** Where the ETL files go: a plain file at first, so every batch waits, sealed and failing. */
let etlDir: string
let db: pg.Client
let server: RunningServer
let receiver: Receiver
let browser: Browser
let page: Page
let endpointId: string
let failedMessage: string
let markupUserId: string
/** What the page reported that it should not have: CSP violations, script errors. */
const problems: Array<string> = []

const api = wearflowApi(() => server.baseUrl, API_KEY)
const otherTeam = wearflowApi(() => server.baseUrl, OTHER_TEAM_KEY)

interface EtlStatus {
  enabled: boolean
  staged: Array<{ resource: string; events: number }>
  batches: Array<{ resource: string; status: string; failing: boolean; events: number; records: number }>
}
const etl = async (call = api) => {
  const reply = await call("GET", "/v2/etl/batches")
  expect(reply.status).toBe(200)
  return reply.body as EtlStatus
}

const dailies = (steps: number) => {
  const body = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")) as { dailies: Array<Record<string, unknown>> }
  return JSON.stringify({ dailies: [{ ...body.dailies[0], userId: GARMIN_USER, summaryId: `daily-${GARMIN_USER}`, steps }] })
}

/** The team's alerts about one webhook message, from the API. */
const alertsOf = async (messageId: string) => {
  const reply = await api("GET", "/v2/alerts?status=all&limit=100")
  expect(reply.status).toBe(200)
  return (reply.body.data as Array<{ kind: string; status: string; message_id: string | null }>).filter((a) => a.message_id === messageId)
}

/** A table's cells, row by row, as text. */
const cells = (selector: string) =>
  page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? "")))

/** An API time as the page shows it: UTC, to the second. */
const shown = (iso: string | null) => (iso === null ? "—" : `${new Date(iso).toISOString().slice(0, 19).replace("T", " ")} UTC`)

const messages = async (status: string) => {
  const reply = await api("GET", `/v2/webhooks/${endpointId}/messages?status=${status}`)
  expect(reply.status).toBe(200)
  return reply.body.data as Array<{ id: string; status: string }>
}

/** Opens a view and waits until it has rendered. */
const open = async (view: string) => {
  // Opening the view already shown renders it again (Refresh): there is no hash change then.
  if (await page.evaluate((hash) => location.hash === hash, `#${view}`)) await page.click("#refresh")
  else await page.evaluate((hash) => (location.hash = hash), `#${view}`)
  await loaded(view)
}

const loaded = (view: string) =>
  page.waitForSelector(`#view[data-loaded="${view}"]`).catch(async (error) => {
    throw new Error(`${view} did not render: ${JSON.stringify(problems)}\n${await page.$eval("body", (b) => b.innerText)}`, { cause: error })
  })

const screenshot = async (name: string) => {
  if (!SCREENSHOTS) return
  await fs.mkdir(shots, { recursive: true })
  await page.screenshot({ path: path.join(shots, `${name}.png`) as `${string}.png`, fullPage: true })
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-dashboard-"))
  etlDir = path.join(dir, "etl")
  await fs.writeFile(etlDir, "not a directory")
  receiver = await startReceiver()
  receiver.fallback = 500
  stack = await startGarminStack({
    name: "dashboard",
    consumer: { consumerKey: CLIENT_ID, consumerSecret: "dashboard-garmin-secret" },
    apiKey: API_KEY,
    env: {
      WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
      WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
      WEARFLOW_WEBHOOK_RETRY_SCHEDULE: "100 millis",
      WEARFLOW_WEBHOOK_TIMEOUT: "5 seconds",
      WEARFLOW_ETL_DIR: etlDir,
      WEARFLOW_ETL_BATCH_SECONDS: "0.2",
      // A backfill started from the API: two types of 40 days, three windows.
      WEARFLOW_BACKFILL_DAYS: "40",
      WEARFLOW_BACKFILL_TYPES: "dailies,sleeps",
      WEARFLOW_BACKFILL_QUIET_PERIOD: "1 second",
      WEARFLOW_BACKFILL_SETTLE: "300 millis",
      WEARFLOW_BACKFILL_RETRY_BACKOFF: "200 millis"
    }
  })
  server = stack.server
  db = stack.db
  stack.garmin.state.backfill.deliverTo = `${server.baseUrl}/api/v1/webhooks/garmin/push`
  const team = (await db.query("insert into teams (id, name) values (gen_random_uuid(), 'other') returning id")).rows[0].id
  await db.query("insert into api_keys (key_hash, team_id, label) values ($1, $2, 'test')", [createHash("sha256").update(OTHER_TEAM_KEY).digest(), team])
  const endpoint = await api("POST", "/v2/webhooks", { url: receiver.url, description: "the customer's receiver" })
  expect(endpoint.status).toBe(201)
  endpointId = endpoint.body.id

  // A Garmin PUSH for an account nobody has linked yet is kept; linking the account replays it.
  const pushed = await sendGarminNotification(server.baseUrl, CLIENT_ID, "push", dailies(4321))
  expect(pushed.status).toBe(200)
  const user = await api("POST", "/v2/user", { client_user_id: CLIENT_USER })
  expect(user.status).toBe(200)
  const linked = await api("POST", `/v2/user/${user.body.user_id}/connections/garmin`, { provider_user_id: GARMIN_USER })
  expect(linked.status).toBe(200)
  const markup = await api("POST", "/v2/user", { client_user_id: MARKUP_USER })
  expect(markup.status).toBe(200)
  markupUserId = markup.body.user_id
  expect((await api("POST", `/v2/user/${markupUserId}/connections/garmin`, { provider_user_id: `${GARMIN_USER}-2` })).status).toBe(200)

  // The receiver answers 500 to the first attempt and the retry (WEARFLOW_WEBHOOK_RETRY_SCHEDULE):
  // the message fails, and its exhaustion opens an alert for the team.
  failedMessage = await eventually(async () => (await messages("failed"))[0]?.id, 30_000)

  if (skip === undefined) {
    browser = await launchBrowser()
    page = await browser.newPage()
    page.on("console", (message) => {
      // The browser logs each non-2xx answer too: those are counted from the answers below.
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text())
    })
    // Every route the page calls exists and answers it: no view falls back on anything.
    page.on("response", (response) => {
      const url = new URL(response.url())
      if (url.pathname.startsWith("/v2/") && response.status() >= 400) problems.push(`${response.request().method()} ${url.pathname} answered ${response.status()}`)
    })
    page.on("pageerror", (error) => problems.push(String(error)))
  }
})

afterAll(async () => {
  await browser?.close()
  await stack?.close()
  await receiver?.close()
  if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true })
})

describe("the dashboard's server side", () => {
  it("serves the page, its script and style under a strict Content-Security-Policy", async () => {
    for (const file of ["/dashboard", "/dashboard/app.js", "/dashboard/app.css"]) {
      const response = await fetch(`${server.baseUrl}${file}`)
      expect(response.status, file).toBe(200)
      const policy = response.headers.get("content-security-policy") ?? ""
      expect(policy).toContain("default-src 'none'")
      expect(policy).toContain("script-src 'self'")
      expect(policy).not.toContain("unsafe")
      expect(response.headers.get("x-content-type-options")).toBe("nosniff")
    }
    const script = await (await fetch(`${server.baseUrl}/dashboard/app.js`)).text()
    // Types stripped at start: what the browser gets is JavaScript, and never writes HTML.
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/)
  })

  it("answers a route of a sink it does not run with the router's bare 404, which the page shows as not available", async () => {
    // As /v2/webhooks and /v2/etl/batches answer on a server without the webhooks or s3 plugin (test/plugins.test.ts).
    const reply = await api("GET", "/v2/no-such-sink/batches")
    expect(reply.status).toBe(404)
    expect(typeof (reply.body as { message?: unknown } | null)?.message).not.toBe("string")
  })

  it("answers the ingest backlog as counts, to an API key only", async () => {
    expect((await fetch(`${server.baseUrl}/v2/introspect/ingest`)).status).toBe(401)
    const reply = await api("GET", "/v2/introspect/ingest")
    expect(reply.status).toBe(200)
    expect(Object.keys(reply.body).sort()).toEqual(["oldest_job_age_seconds", "pending_jobs", "seconds_since_completion"])
    expect(reply.body.pending_jobs).toBeGreaterThanOrEqual(0)
  })

  it("answers a team the ETL batches holding its events, and nothing of them to another team", async () => {
    expect((await fetch(`${server.baseUrl}/v2/etl/batches`)).status).toBe(401)
    // The directory cannot be written: the team's events wait in a sealed batch whose writes fail.
    const waiting = await eventually(async () => {
      const status = await etl()
      return status.batches.some((b) => b.failing) ? status : undefined
    }, 30_000)
    expect(waiting.enabled).toBe(true)
    expect(waiting.batches.map((b) => b.resource)).toContain("activity")
    expect(waiting.batches.every((b) => b.status === "sealed" && b.events > 0)).toBe(true)
    expect(await etl(otherTeam)).toEqual({ enabled: true, staged: [], batches: [] })
  })
})

describe.skipIf(skip !== undefined)("the dashboard in Chromium", () => {
  it("refuses a wrong key, then signs in and shows the connection the notification fed, with its per-resource data", async () => {
    // Linking the account replayed the notification kept for it: its dailies are stored.
    const userId = (await db.query("select id from users where client_user_id = $1", [CLIENT_USER])).rows[0].id as string
    const resources = await eventually(async () => {
      const reply = await api("GET", `/v2/introspect/resources?user_id=${userId}`)
      expect(reply.status).toBe(200)
      const garmin = reply.body.data[0]?.provider?.["garmin"] as Record<string, { newest_data: string | null; sent_count: number }> | undefined
      return garmin?.["activity"] === undefined ? undefined : garmin
    }, 30_000)

    await page.goto(`${server.baseUrl}/dashboard`)
    await page.waitForSelector("#sign-in:not([hidden])")
    await screenshot("sign-in")
    await page.type("#api-key", "not-a-key")
    await page.click("#sign-in button[type=submit]")
    await page.waitForFunction(() => document.querySelector("#sign-in-error")?.textContent?.includes("refused") === true)
    problems.length = 0 // the refused key's 401s, logged by the browser

    await page.type("#api-key", API_KEY)
    await page.click("#sign-in button[type=submit]")
    await loaded("connections")
    // The key is kept for this tab only, never in a cookie.
    expect(await page.evaluate(() => [sessionStorage.length > 0, document.cookie])).toEqual([true, ""])
    const rows = await cells("#connections")
    const row = rows.find((cells) => cells[0] === CLIENT_USER)
    expect(row, JSON.stringify(rows)).toBeDefined()
    expect(row!.slice(1, 4)).toEqual([userId, "garmin", "active"])
    // Per resource, the newest data and the count GET /v2/introspect/resources answers.
    for (const [resource, stats] of Object.entries(resources)) {
      expect(row![5]).toContain(`${resource}: last data ${shown(stats.newest_data)} (${stats.sent_count} sent)`)
    }
    expect(row![5]).toContain("activity: last data 20")
    expect(row![6]).toBe("none")
    await screenshot("connections")
  })

  it("shows the alert the exhausted webhook message opened", async () => {
    expect((await alertsOf(failedMessage)).map((a) => [a.kind, a.status])).toEqual([["message.attempt.exhausted", "open"]])
    await open("alerts")
    const row = (await cells("#alerts")).find((cells) => cells[1]?.includes(failedMessage))
    expect(row, JSON.stringify(await cells("#alerts"))).toBeDefined()
    expect(row![0]).toBe("message.attempt.exhausted")
    expect(row![1]).toContain(`endpoint ${endpointId}`)
    expect(row![2]).toMatch(/^\d+ attempts failed$/)
  })

  it("resends a failed message from the webhooks view until the receiver has it", async () => {
    await open("webhooks")
    const card = `.webhook[data-endpoint="${endpointId}"]`
    await page.waitForSelector(`${card} button.resend[data-message="${failedMessage}"]`)
    expect(await page.$eval(`${card} .rate`, (b) => b.textContent)).toBe("0%")
    await screenshot("webhooks")

    const before = receiver.withId(failedMessage).length
    receiver.fallback = 204
    await page.click(`${card} button.resend[data-message="${failedMessage}"]`)
    await page.waitForSelector(`${card} button.resend[data-outcome="ok"]`)
    await eventually(async () => (receiver.withId(failedMessage).length > before ? true : undefined), 30_000)
    await eventually(async () => ((await messages("delivered")).some((m) => m.id === failedMessage) ? true : undefined), 30_000)

    await open("webhooks")
    expect(await page.$(`${card} button.resend[data-message="${failedMessage}"]`)).toBeNull()

    // Delivered by hand: its alert clears, and the alerts view moves it to the cleared ones.
    await eventually(async () => ((await alertsOf(failedMessage))[0]?.status === "cleared" ? true : undefined), 30_000)
    await open("alerts")
    expect((await cells("#alerts")).some((cells) => cells[1]?.includes(failedMessage))).toBe(false)
    const cleared = (await cells("#alerts-cleared")).find((cells) => cells[1]?.includes(failedMessage))
    expect(cleared?.[0]).toBe("message.attempt.exhausted")
    await screenshot("alerts")
  })

  it("recovers every failed message of an endpoint", async () => {
    const failed = await messages("failed")
    await open("webhooks")
    const card = `.webhook[data-endpoint="${endpointId}"]`
    if (failed.length > 0) {
      await page.click(`${card} button.recover`)
      await page.waitForSelector(`${card} button.recover[data-outcome="ok"]`)
      expect(await page.$eval(`${card} button.recover`, (b) => b.textContent)).toBe(`${failed.length} queued again`)
    }
    await eventually(async () => ((await messages("failed")).length === 0 && (await messages("retrying")).length === 0 ? true : undefined), 30_000)
    await open("webhooks")
    expect(await page.$eval(`${card} .rate`, (b) => b.textContent)).toBe("100%")
  })

  it("shows a backfill's progress per resource", async () => {
    const { userId } = await connectedUser(stack.garmin, api, "dashboard-history", { types: ["dailies", "sleeps"] })
    expect((await api("POST", `/v2/user/${userId}/backfill/garmin`, {})).status).toBe(202)
    const finished = await backfillFinished(api, userId)
    expect(finished.status).toBe("done")
    await open("syncs")
    const row = await page.$$eval("#backfills tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")))
    const mine = row.find((cells) => cells[0] === "dashboard-history")
    expect(mine?.slice(1, 4)).toEqual(["garmin", "done", "request"])
    expect(mine?.[6]).toMatch(/activity success\s+1\/1 windows · \d+ days with data/)
    expect(mine?.[6]).toMatch(/sleep success\s+1\/1 windows/)
  })

  it("shows every other view, each from a route this server has", async () => {
    for (const view of ["syncs", "etl", "ingest"]) {
      await open(view)
      expect(await page.$$eval("#view .error", (errors) => errors.map((e) => e.textContent)), view).toEqual([])
      expect(await page.$("[data-unavailable]"), view).toBeNull()
      await screenshot(view)
    }
    await open("ingest")
    await page.waitForSelector("#ingest")
  })

  it("shows the team's ETL batches waiting to be written", async () => {
    await open("etl")
    expect(await page.$$eval("#etl-batches tbody tr", (trs) => trs.map((tr) => tr.children[1]?.textContent))).toContain("activity")
  })

  it("reads the user list a page at a time up to its bound, and Show more reads the next", async () => {
    const team = (await db.query("select team_id from users where client_user_id = $1", [CLIENT_USER])).rows[0].team_id as string
    await db.query("insert into users (id, team_id, client_user_id) select gen_random_uuid(), $1, 'listed-' || n from generate_series(1, 250) n", [team])
    const total = Number((await db.query("select count(*) as n from users where team_id = $1 and deleted_at is null", [team])).rows[0].n)
    await open("connections")
    // Each of these users has one connection or none: one row each.
    expect(await page.$$eval("#connections tbody tr", (trs) => trs.length)).toBe(200)
    await page.click("button.more")
    await loaded("connections")
    expect(await page.$$eval("#connections tbody tr", (trs) => trs.length)).toBe(total)
    expect(await page.$("button.more")).toBeNull()
  })

  it("renders values as text, and runs without a script error or CSP violation", async () => {
    // A user whose client id is markup, listed like any other.
    await open("connections")
    expect((await cells("#connections")).find((cells) => cells[0] === MARKUP_USER)?.[1]).toBe(markupUserId)
    expect(await page.$("#injected")).toBeNull()
    expect(await page.title()).toBe("Wearflow dashboard")
    expect(problems).toEqual([])
  })
})

describe("ETL batches once written", () => {
  it("leave the team's view when the files are written", async () => {
    await fs.rm(etlDir)
    await eventually(async () => {
      const status = await etl()
      return status.batches.length === 0 && status.staged.length === 0 ? true : undefined
    }, 90_000)
    expect(Number((await db.query("select count(*) as n from etl_batches where status = 'written'")).rows[0].n)).toBeGreaterThan(0)
  })
})
