/**
 * Raw bodies at rest, against the real server: OAuth 1.0a tokens never reach `inbox.body`
 * (whole bodies, parts of large ones), yet token-addressed items are still parked and
 * replayed when the user is linked; processed bodies are deleted once past the retention
 * period, and only those.
 */
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, type RunningServer } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "retention-consumer-key", consumerSecret: "retention-consumer-secret" }
const API_KEY = "retention-api-key"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const TOKEN = "oauth1-access-token-4f1c9a"

let stack: GarminStack
let server: RunningServer
let db: pg.Client

const api = wearflowApi(() => server.baseUrl, API_KEY)
const push = garminWebhook(() => server.baseUrl, CONSUMER.consumerKey, "push")
const outcomeOf = inboxOutcomes(() => db, 30_000)
const exists = async (id: number) => (await db.query("select 1 from inbox where id = $1", [id])).rows.length > 0

beforeAll(async () => {
  stack = await startGarminStack({
    name: "retention",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: { WEARFLOW_INGEST_PART_ITEMS: "2", WEARFLOW_INBOX_RETENTION: "1 hour", WEARFLOW_INBOX_RETENTION_INTERVAL: "200 millis" }
  })
  ;({ server, db } = stack)
})

afterAll(async () => {
  await stack?.close()
})

describe("OAuth 1.0a tokens", () => {
  it("are stored as their hash, in whole bodies and in parts, and token-addressed items still reach the user once linked", async () => {
    const item = (n: number, day: string) => ({ ...daily, userId: undefined, userAccessToken: TOKEN, summaryId: `oauth1-${n}`, calendarDate: day, steps: 4000 + n })
    // Nobody has linked this token yet: both bodies are parked.
    const whole = await push({ dailies: [item(1, "2023-05-01")] })
    const large = await push({ dailies: [item(2, "2023-05-02"), item(3, "2023-05-03"), item(4, "2023-05-04"), item(5, "2023-05-05"), item(6, "2023-05-06")] })
    expect((await outcomeOf(whole)).unlinked).toBe(1)
    const parts = (await db.query("select id from inbox where part_of = $1", [large])).rows.map((r) => Number(r.id))
    expect(parts.length).toBe(3)
    for (const part of parts) await outcomeOf(part)

    const digest = createHash("sha256").update(TOKEN).digest("hex")
    expect(Number((await db.query("select count(*) as n from inbox where body like $1", [`%${TOKEN}%`])).rows[0].n)).toBe(0)
    const stored = JSON.parse((await db.query("select body from inbox where id = $1", [whole])).rows[0].body)
    expect(stored.dailies[0].userAccessTokenHash).toBe(digest)
    expect(stored.dailies[0].userAccessToken).toBeUndefined()
    expect(Number((await db.query("select count(*) as n from inbox where id = any($1) and body like $2", [parts, `%${digest}%`])).rows[0].n)).toBe(3)

    // Linking the token finds every parked body (whole and parts) under the token's hash, and replays it.
    const user = await api("POST", "/v2/user", { client_user_id: "oauth1-user" })
    const linked = await api("POST", `/v2/user/${user.body.user_id}/connections/garmin`, {
      provider_user_id: "garmin-oauth1-retention",
      oauth1: { token: TOKEN, token_secret: "oauth1-token-secret" }
    })
    expect(linked.body.replayed_notifications).toBe(4)
    expect(Number((await db.query("select count(*) as n from unlinked_notifications")).rows[0].n)).toBe(0)
    // A later token-addressed body reaches the linked user (not parked), its token stored as the hash.
    const later = await push({ dailies: [{ ...item(7, "2023-05-07"), userId: "garmin-oauth1-retention" }] })
    expect(await outcomeOf(later)).toMatchObject({ unlinked: 0, created: 2, errors: [] })
    const tokenOnly = await push({ dailies: [item(8, "2023-05-08")] })
    expect((await outcomeOf(tokenOnly)).unlinked).toBe(0)
    expect(Number((await db.query("select count(*) as n from inbox where body like $1", [`%${TOKEN}%`])).rows[0].n)).toBe(0)
    expect(server.logs()).not.toContain(TOKEN)
  })
})

describe("raw body retention", () => {
  it("deletes processed bodies past the retention period, and keeps the rest", async () => {
    const user = await api("POST", "/v2/user", { client_user_id: "retention-user" })
    await api("POST", `/v2/user/${user.body.user_id}/connections/garmin`, { provider_user_id: "garmin-retention" })
    const body = (n: number, garminUser = "garmin-retention") => ({ dailies: [{ ...daily, userId: garminUser, summaryId: `retention-${garminUser}-${n}` }] })
    const old = await push(body(1))
    const recent = await push(body(2))
    const parked = await push(body(3, "garmin-nobody"))
    for (const id of [old, recent, parked]) await outcomeOf(id)
    // Never processed: no job will take it.
    const unprocessed = Number((await db.query("insert into inbox (provider, kind, body, item_count, received_at) values ('garmin', 'push', '{}', 0, now() - interval '1 day') returning id")).rows[0].id)

    await db.query("update inbox set processed_at = now() - interval '2 hours' where id = any($1)", [[old, parked]])
    await eventually(async () => ((await exists(old)) ? undefined : true), 30_000)
    expect(await exists(recent)).toBe(true)
    expect(await exists(parked)).toBe(true)
    expect(await exists(unprocessed)).toBe(true)
    // The data itself stays.
    expect(Number((await db.query("select count(*) as n from records where inbox_id = $1", [old])).rows[0].n)).toBe(2)
  })
})
