/**
 * PING end to end: the real server, pointed at a fake Garmin on loopback, pulls what PING
 * notifications announce — OAuth 2.0 and OAuth 1.0a era — and refuses callback URLs
 * elsewhere, retries 429s, records other failures, and keeps activity files.
 */
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { type RunningServer } from "./support/server.ts"
import { dailySteps, garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "ping-consumer-key", consumerSecret: "ping-consumer-secret" }
const API_KEY = "ping-api-key"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const NOW = Math.floor(Date.now() / 1000)

let stack: GarminStack
let garmin: FakeGarmin
let server: RunningServer
let db: pg.Client

const api = wearflowApi(() => server.baseUrl, API_KEY)
const ping = garminWebhook(() => server.baseUrl, CONSUMER.consumerKey, "ping")
/** The worker's outcome for a PING body, once it has one. */
const outcomeOf = inboxOutcomes(() => db, 20_000)

/** A Garmin user who granted OAuth 2.0 access. */
const oauth2User = (userId: string) =>
  garmin.addUser(userId, {
    oauth2: {
      accessToken: `access-${userId}`,
      accessTokenExpiresAt: Date.now() + 86_400_000,
      refreshToken: `refresh-${userId}`,
      refreshTokenExpiresAt: Date.now() + 90 * 86_400_000
    }
  })

const newUser = async (clientUserId: string, link: Record<string, unknown>) => {
  const created = await api("POST", "/v2/user", { client_user_id: clientUserId })
  const linked = await api("POST", `/v2/user/${created.body.user_id}/connections/garmin`, link)
  expect(linked.status).toBe(200)
  return created.body.user_id as string
}

const stepsOf = (userId: string, day: string) => dailySteps(api, userId, day, 20_000)

beforeAll(async () => {
  stack = await startGarminStack({ name: "ping", consumer: CONSUMER, apiKey: API_KEY, env: { WEARFLOW_PULL_BACKOFF: "50 millis" } })
  ;({ garmin, server, db } = stack)
})

afterAll(async () => {
  await stack?.close()
})

describe("PING pulls", () => {
  it("pulls an OAuth 2.0 callback URL (token in the URL, Bearer token added) and normalizes what it returns", async () => {
    const user = oauth2User("garmin-oauth2-user")
    user.data.dailies = [{ ...daily, userId: "garmin-oauth2-user", summaryId: "pulled-oauth2", calendarDate: "2024-03-01", steps: 12345 }]
    const wearflowUser = await newUser("ping-oauth2", {
      provider_user_id: "garmin-oauth2-user",
      oauth2: { access_token: user.oauth2!.accessToken, refresh_token: user.oauth2!.refreshToken }
    })
    const inboxId = await ping({
      dailies: [{ userId: "garmin-oauth2-user", callbackURL: garmin.pingUrl("dailies", { userId: "garmin-oauth2-user" }, NOW - 3600, NOW) }]
    })
    expect(await stepsOf(wearflowUser, "2024-03-01")).toEqual([12345])
    expect((await outcomeOf(inboxId)).pulled).toBe(1)
    const pull = garmin.requests.find((r) => r.path === "/wellness-api/rest/dailies")!
    expect(pull.headers.authorization).toBe(`Bearer ${user.oauth2!.accessToken}`)
    // The window notified, as given (the fake serves only what was uploaded in it).
    expect(pull.query).toMatchObject({ uploadStartTimeInSeconds: String(NOW - 3600), uploadEndTimeInSeconds: String(NOW) })
    // Pulling again (a retry, a replay) stores the pulled body once.
    expect(Number((await db.query("select count(*) as n from inbox where source_inbox_id = $1", [inboxId])).rows[0].n)).toBe(1)
  })

  it("signs OAuth 1.0a era pulls and finds the user by userAccessToken", async () => {
    const user = garmin.addUser("garmin-oauth1-user", { oauth1: { token: "legacy-token-1", secret: "legacy-secret-1" }, oauth2: undefined })
    user.data.dailies = [{ ...daily, userId: "garmin-oauth1-user", summaryId: "pulled-oauth1", calendarDate: "2024-03-02", steps: 777 }]
    const wearflowUser = await newUser("ping-oauth1", {
      provider_user_id: "garmin-oauth1-user",
      oauth1: { token: "legacy-token-1", token_secret: "legacy-secret-1" }
    })
    const inboxId = await ping({
      dailies: [
        {
          userAccessToken: "legacy-token-1",
          uploadStartTimeInSeconds: NOW - 3600,
          uploadEndTimeInSeconds: NOW,
          callbackURL: garmin.pingUrl("dailies", { oauth1: true }, NOW - 3600, NOW)
        }
      ]
    })
    expect(await stepsOf(wearflowUser, "2024-03-02")).toEqual([777])
    expect((await outcomeOf(inboxId)).errors).toEqual([])
    const signed = garmin.requests.filter((r) => r.path === "/wellness-api/rest/dailies").at(-1)!
    expect(signed.headers.authorization).toMatch(/^OAuth .*oauth_signature=/)
  })

  it("refuses a callback URL outside Garmin's hosts, and says so", async () => {
    await newUser("ping-ssrf", { provider_user_id: "garmin-ssrf-user" })
    const inboxId = await ping({ dailies: [{ userId: "garmin-ssrf-user", callbackURL: "http://169.254.169.254/latest/meta-data?token=x" }] })
    const outcome = await outcomeOf(inboxId)
    expect(outcome.pulled).toBe(0)
    expect(outcome.errors).toEqual([{ key: "dailies", index: 0, message: "callbackURL host 169.254.169.254 is not a Garmin host" }])
    expect(server.logs()).toContain("refused a callbackURL outside Garmin's hosts")
  })

  it("retries 429 and 5xx with back-off, and records other 4xx without retrying", async () => {
    const user = oauth2User("garmin-flaky-user")
    user.data.epochs = [{ userId: "garmin-flaky-user", summaryId: "epoch-1", activityType: "WALKING", steps: 5, distanceInMeters: 3, activeKilocalories: 1, startTimeInSeconds: 1709251200, startTimeOffsetInSeconds: 0, durationInSeconds: 900 }]
    await newUser("ping-flaky", { provider_user_id: "garmin-flaky-user", oauth2: { access_token: user.oauth2!.accessToken } })
    garmin.inject({ path: "/wellness-api/rest/epochs", status: 429, times: 1 })
    garmin.inject({ path: "/wellness-api/rest/epochs", status: 503, times: 1 })
    const retried = await ping({ epochs: [{ userId: "garmin-flaky-user", callbackURL: garmin.pingUrl("epochs", { userId: "garmin-flaky-user" }, NOW - 60, NOW) }] })
    expect((await outcomeOf(retried)).pulled).toBe(1)
    expect(garmin.requests.filter((r) => r.path === "/wellness-api/rest/epochs").length).toBe(3)

    const before = garmin.requests.length
    garmin.inject({ path: "/wellness-api/rest/stressDetails", status: 403, body: '{"errorMessage":"InvalidPullTokenException"}' })
    const refused = await ping({ stressDetails: [{ userId: "garmin-flaky-user", callbackURL: garmin.pingUrl("stressDetails", { userId: "garmin-flaky-user" }, NOW - 60, NOW) }] })
    expect((await outcomeOf(refused)).errors).toEqual([{ key: "stressDetails", index: 0, message: "not authorized to pull (403): InvalidPullTokenException" }])
    expect(garmin.requests.length - before).toBe(1)
  })

  it("downloads an activity file once, keeps it, and links it to the workout", async () => {
    const owner = "garmin-file-user"
    garmin.addUser(owner)
    const wearflowUser = await newUser("ping-file", { provider_user_id: owner })
    const bytes = new Uint8Array([14, 16, 0x9b, 0x08, 0x2e, 0x46, 0x49, 0x54])
    const callbackURL = garmin.addActivityFile(owner, { id: "file-1", bytes })
    const inboxId = await ping({ activityFiles: [{ userId: owner, summaryId: "file-1", activityId: 9001, fileType: "FIT", callbackURL }] })
    expect((await outcomeOf(inboxId)).pulled).toBe(1)
    const row = (await db.query("select activity_id, file_type, size_bytes, location from activity_files where user_id = $1", [wearflowUser])).rows[0]
    expect(row).toMatchObject({ activity_id: "9001", file_type: "FIT", size_bytes: "8" })
    expect(new Uint8Array(await fs.readFile(row.location))).toEqual(bytes)
    // The URL is single-use: Garmin answers 410 afterwards.
    const again = await ping({ activityFiles: [{ userId: owner, summaryId: "file-1", fileType: "FIT", callbackURL }] })
    expect((await outcomeOf(again)).errors[0]!.message).toContain("410")
  })

  it("parks PING items for users nobody linked, and pulls them once the user is linked", async () => {
    const user = oauth2User("garmin-late-user")
    user.data.dailies = [{ ...daily, userId: "garmin-late-user", summaryId: "late-1", calendarDate: "2024-03-05", steps: 4242 }]
    const inboxId = await ping({ dailies: [{ userId: "garmin-late-user", callbackURL: garmin.pingUrl("dailies", { userId: "garmin-late-user" }, NOW - 60, NOW) }] })
    expect((await outcomeOf(inboxId)).unlinked).toBe(1)
    const wearflowUser = await newUser("ping-late", { provider_user_id: "garmin-late-user", oauth2: { access_token: user.oauth2!.accessToken } })
    expect(await stepsOf(wearflowUser, "2024-03-05")).toEqual([4242])
  })
})
