/**
 * Retention against the real server and Postgres: each policy removes rows past its age and
 * keeps the rest. Ages are an hour and rows are made old by moving their times back, so
 * nothing depends on how fast the machine is; a "sweep" is proven to have run by marker rows
 * it removes. Outbox events a sink has not passed, or still refers to, stay; health data stays
 * unless the operator sets an age; `/metrics` shows table sizes and rows removed.
 */
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { backfillFinished, connectedUser } from "./support/backfill.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"
import { type Receiver, startReceiver } from "./support/webhook-receiver.ts"
import { metricSum } from "./support/metrics.ts"

const CONSUMER = { consumerKey: "retention-policies-key", consumerSecret: "retention-policies-secret" }
const API_KEY = "retention-policies-api-key"
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0] as Record<string, unknown>
const HOUR = "1 hour"

let stack: GarminStack
let receiver: Receiver
const api = wearflowApi(() => stack.server.baseUrl, API_KEY)
const push = garminWebhook(() => stack.server.baseUrl, CONSUMER.consumerKey, "push")
const outcomeOf = inboxOutcomes(() => stack.db, 30_000)
const count = async (query: string, params: Array<unknown> = []) => Number((await stack.db.query(query, params)).rows[0].n)

/** Returns once a whole sweep has run after the call: two marker bodies, one after the other, each removed. */
const swept = async () => {
  for (let i = 0; i < 2; i++) {
    const marker = (await stack.db.query(
      "insert into inbox (provider, kind, body, item_count, processed_at) values ('garmin', 'push', '{}', 0, now() - interval '2 hours') returning id"
    )).rows[0].id
    await eventually(async () => ((await count("select count(*) as n from inbox where id = $1", [marker])) === 0 ? true : undefined), 30_000)
  }
}

const userWithData = async (name: string) => {
  const user = await api("POST", "/v2/user", { client_user_id: name })
  await api("POST", `/v2/user/${user.body.user_id}/connections/garmin`, { provider_user_id: `garmin-${name}` })
  const body = (n: number) => ({ dailies: [{ ...daily, userId: `garmin-${name}`, summaryId: `${name}-${n}` }] })
  return { userId: user.body.user_id as string, body }
}

beforeAll(async () => {
  receiver = await startReceiver()
  stack = await startGarminStack({
    name: "retention-policies",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: {
      WEARFLOW_RETENTION_INTERVAL: "200 millis",
      // The job is a cluster singleton: a restarted server takes it over soon.
      WEARFLOW_RUNNER_LOCK_EXPIRATION: "3 seconds",
      WEARFLOW_RETENTION_INBOX: HOUR,
      WEARFLOW_RETENTION_QUEUE: HOUR,
      WEARFLOW_RETENTION_OUTBOX: HOUR,
      WEARFLOW_RETENTION_PARKED: HOUR,
      WEARFLOW_RETENTION_DEAD_LETTERS: HOUR,
      WEARFLOW_RETENTION_SYNC_PAGES: HOUR,
      WEARFLOW_RETENTION_LINK_SESSIONS: HOUR,
      WEARFLOW_RETENTION_WEBHOOK_MESSAGES: HOUR,
      WEARFLOW_RETENTION_WEBHOOK_NOTICES: HOUR,
      WEARFLOW_RETENTION_ETL_BATCHES: HOUR,
      // Workflows finish on their own; any age past their end will do.
      WEARFLOW_RETENTION_WORKFLOWS: "1 millis",
      // The ETL sink keeps staged events in the outbox until their file is written: soon.
      WEARFLOW_ETL_BATCH_SECONDS: "1",
      WEARFLOW_WEBHOOK_ALLOW_HTTP: "true",
      WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true",
      WEARFLOW_BACKFILL_ON_CONNECT: "true",
      WEARFLOW_BACKFILL_DAYS: "10",
      WEARFLOW_BACKFILL_TYPES: "dailies",
      WEARFLOW_BACKFILL_QUIET_PERIOD: "1 seconds",
      WEARFLOW_BACKFILL_SETTLE: "300 millis",
      WEARFLOW_BACKFILL_BUDGET_DAYS: "10000"
    }
  })
  stack.garmin.state.backfill.deliverTo = `${stack.server.baseUrl}/api/v1/webhooks/garmin/push`
}, 90_000)

afterAll(async () => {
  await stack?.close()
  await receiver?.close()
})

describe("retention", () => {
  it("removes processed bodies, completed jobs and parked items past their age, and keeps the rest", async () => {
    const { body } = await userWithData("bodies")
    const old = await push(body(1))
    const recent = await push(body(2))
    const parked = await push({ dailies: [{ ...daily, userId: "garmin-nobody", summaryId: "parked-1" }] })
    const parkedRecent = await push({ dailies: [{ ...daily, userId: "garmin-nobody-yet", summaryId: "parked-2" }] })
    for (const id of [old, recent, parked, parkedRecent]) await outcomeOf(id)
    await eventually(async () => ((await count("select count(*) as n from ingest_queue where completed and id = $1", [`inbox-${old}`])) > 0 ? true : undefined))

    await stack.db.query("update inbox set processed_at = now() - interval '2 hours' where id = any($1)", [[old, parked, parkedRecent]])
    await stack.db.query("update ingest_queue set updated_at = now() - interval '2 hours' where id = $1", [`inbox-${old}`])
    await stack.db.query("update unlinked_notifications set received_at = now() - interval '2 hours' where inbox_id = $1", [parked])

    // The parked item goes past its age, and then its body as a processed one.
    await eventually(async () => ((await count("select count(*) as n from inbox where id = any($1)", [[old, parked]])) === 0 ? true : undefined), 30_000)
    await swept()
    expect(await count("select count(*) as n from ingest_queue where id = $1", [`inbox-${old}`])).toBe(0)
    expect(await count("select count(*) as n from ingest_queue where id = $1", [`inbox-${recent}`])).toBe(1)
    expect(await count("select count(*) as n from inbox where id = $1", [recent])).toBe(1)
    // Parked for a user nobody linked yet, not past its age: kept, body and all.
    expect(await count("select count(*) as n from unlinked_notifications where inbox_id = $1", [parkedRecent])).toBe(1)
    expect(await count("select count(*) as n from inbox where id = $1", [parkedRecent])).toBe(1)
  })

  it("removes outbox events only once every sink has passed them and none refers to them", async () => {
    const { userId, body } = await userWithData("outbox")
    const endpoint = await api("POST", "/v2/webhooks", { url: receiver.url })
    expect(endpoint.status).toBe(201)
    await outcomeOf(await push(body(1)))
    // The data's events (a connection error may come later: the link has no tokens to backfill with).
    const events = async () => count("select count(*) as n from outbox where user_id = $1 and event_type like '%.data.%'", [userId])
    // Every sink past them, the webhook messages delivered.
    await eventually(async () =>
      (await count(`select count(*) as n from outbox o where o.user_id = $1 and o.event_type like '%.data.%' and exists (
         select 1 from sink_cursors c where (o.tx, o.position) > (c.tx, c.position))`, [userId])) === 0 &&
      (await count("select count(*) as n from webhook_messages where user_id = $1 and status <> 'delivered'", [userId])) === 0 &&
      (await count("select count(*) as n from webhook_messages where user_id = $1", [userId])) > 0
        ? true
        : undefined, 30_000)
    const total = await events()
    expect(total).toBeGreaterThan(0)

    // A sink that has not passed them (its cursor at the start) holds them all.
    await stack.db.query("insert into sink_cursors (sink_id) values ('lagging')")
    // Every event so far (ages follow outbox order: the sweep stops at the first recent event).
    await stack.db.query("update outbox set created_at = now() - interval '2 hours'")
    await swept()
    expect(await events()).toBe(total)

    // Passed by every sink, but webhook messages still refer to them (a resend reads the payload there).
    await stack.db.query("delete from sink_cursors where sink_id = 'lagging'")
    await swept()
    expect(await events()).toBe(total)

    // Once the messages go past their age (and the ETL sink has written them), so do the events;
    // the messages' attempts go with them.
    await stack.db.query("update webhook_messages set created_at = now() - interval '2 hours', updated_at = now() - interval '2 hours'")
    await eventually(async () => ((await events()) === 0 ? true : undefined), 30_000)
    expect(await count("select count(*) as n from webhook_messages where user_id = $1", [userId])).toBe(0)
    expect(await count("select count(*) as n from webhook_attempts a where not exists (select 1 from webhook_messages m where m.id = a.message_id)")).toBe(0)
  })

  it("keeps webhook messages not finished or not past their age", async () => {
    const { userId, body } = await userWithData("messages")
    await outcomeOf(await push(body(1)))
    await eventually(async () => ((await count("select count(*) as n from webhook_messages where user_id = $1 and status = 'delivered'", [userId])) > 0 ? true : undefined), 30_000)
    const ids = (await stack.db.query("select id from webhook_messages where user_id = $1 order by seq", [userId])).rows.map((r) => r.id as string)
    // An old message still retrying stays; a recent delivered one stays.
    await stack.db.query(
      "update webhook_messages set status = 'retrying', created_at = now() - interval '2 hours', updated_at = now() - interval '2 hours' where id = $1",
      [ids[0]]
    )
    await stack.db.query("insert into webhook_notices (team_id, endpoint_id, kind, detail, created_at) select team_id, endpoint_id, 'endpoint.disabled', 'old', now() - interval '2 hours' from webhook_messages where id = $1", [ids[0]])
    await stack.db.query("insert into webhook_notices (team_id, endpoint_id, kind, detail) select team_id, endpoint_id, 'endpoint.disabled', 'recent' from webhook_messages where id = $1", [ids[0]])
    await swept()
    expect(await count("select count(*) as n from webhook_messages where id = any($1)", [ids])).toBe(ids.length)
    expect(await count("select count(*) as n from webhook_notices where detail = 'old'")).toBe(0)
    expect(await count("select count(*) as n from webhook_notices where detail = 'recent'")).toBe(1)
    await stack.db.query("update webhook_messages set status = 'failed' where id = $1", [ids[0]])
    await eventually(async () => ((await count("select count(*) as n from webhook_messages where id = $1", [ids[0]])) === 0 ? true : undefined), 30_000)
  })

  it("removes dead letters, polled pages and expired connect sessions past their age", async () => {
    const { userId } = await userWithData("bookkeeping")
    const connection = (await stack.db.query("select c.id, u.team_id from provider_connections c join users u on u.id = c.user_id where c.user_id = $1", [userId])).rows[0]
    for (const [label, age] of [["old", "2 hours"], ["recent", "1 minute"]] as const) {
      await stack.db.query("insert into sink_dead_letters (sink_id, event_id, position, error, created_at) values ($1, gen_random_uuid(), 0, 'x', now() - $2::interval)", [`retention-${label}`, age])
      await stack.db.query("insert into sync_pages (connection_id, round, page, digest, committed_at) values ($1, $2, 0, '\\x00', now() - $3::interval)", [connection.id, label === "old" ? 1 : 2, age])
      await stack.db.query(
        "insert into link_sessions (id, team_id, user_id, provider, created_at, expires_at) values ($1, $2, $3, 'garmin', now() - $4::interval, now() - $4::interval)",
        [`retention-${label}`, connection.team_id, userId, age]
      )
    }
    await eventually(async () =>
      (await count("select count(*) as n from sink_dead_letters where sink_id = 'retention-old'")) +
          (await count("select count(*) as n from sync_pages where connection_id = $1 and round = 1", [connection.id])) +
          (await count("select count(*) as n from link_sessions where id = 'retention-old'")) === 0
        ? true
        : undefined, 30_000)
    expect(await count("select count(*) as n from sink_dead_letters where sink_id = 'retention-recent'")).toBe(1)
    expect(await count("select count(*) as n from sync_pages where connection_id = $1 and round = 2", [connection.id])).toBe(1)
    expect(await count("select count(*) as n from link_sessions where id = 'retention-recent'")).toBe(1)
  })

  it("removes written ETL batches past their age, keeping failed and recent ones", async () => {
    const insert = (status: string, age: string) =>
      stack.db.query(
        `insert into etl_batches (resource, format, first_seq, last_seq, events, records, status, sealed_at, written_at)
         values ('retention-test', 'ndjson', 0, 0, 0, 0, $1, now() - $2::interval, now() - $2::interval) returning id`,
        [status, age]
      ).then((r) => r.rows[0].id as string)
    const old = await insert("written", "2 hours")
    const recent = await insert("written", "1 minute")
    const failed = await insert("failed", "2 hours")
    await eventually(async () => ((await count("select count(*) as n from etl_batches where id = $1", [old])) === 0 ? true : undefined), 30_000)
    expect(await count("select count(*) as n from etl_batches where id = any($1)", [[recent, failed]])).toBe(2)
  })

  it("removes the journals of finished workflows, and keeps suspended ones", async () => {
    // A suspended workflow: its `run` processed with a suspension as its exit.
    const snowflake = (ms: number) => ((BigInt(ms - Date.UTC(2025, 0, 1)) << 22n) + BigInt(Math.floor(Math.random() * 4000))).toString()
    const old = Date.now() - 3_600_000
    const request = snowflake(old)
    await stack.db.query(
      `insert into cluster_messages (id, message_id, shard_id, entity_type, entity_id, kind, tag, payload, headers, processed, request_id)
       values ($1, 'Workflow/RetentionTest/suspended/run/', 'default:1', 'Workflow/RetentionTest', 'suspended', 0, 'run', '{}', '{}', true, $1)`,
      [request]
    )
    await stack.db.query(
      `insert into cluster_replies (id, kind, request_id, payload) values ($1, 0, $2, '{"_tag":"Success","value":{"_tag":"Suspended"}}')`,
      [snowflake(old + 1), request]
    )
    const { userId } = await connectedUser(stack.garmin, api, "workflows", { types: ["dailies"] })
    const view = await backfillFinished(api, userId)
    expect(view.status).toBe("done")
    await eventually(async () => ((await count("select count(*) as n from cluster_messages where entity_type like 'Workflow/Backfill%'")) === 0 ? true : undefined), 30_000)
    await swept()
    expect(await count("select count(*) as n from cluster_messages where entity_id = 'suspended'")).toBe(1)
    expect(await count("select count(*) as n from cluster_replies where request_id = $1", [request])).toBe(1)
    expect(await count("select count(*) as n from cluster_replies r where not exists (select 1 from cluster_messages m where m.id = r.request_id)")).toBe(0)
    // Journals are found by execution id: the job indexed the cluster's table for that.
    expect(await count("select count(*) as n from pg_indexes where indexname = 'wearflow_cluster_messages_by_entity'")).toBe(1)
  })

  it("shows table sizes and rows removed per table in /metrics", async () => {
    await stack.db.query("analyze")
    const text = await (await fetch(`${stack.server.baseUrl}/metrics`)).text()
    const value = (line: RegExp) => Number(text.match(line)?.[1])
    const removed = (table: string) => metricSum(text, "wearflow_retention_rows_removed_total", { table })
    expect(value(/^wearflow_table_bytes\{table="inbox"\} (\d+(?:\.\d+)?(?:e\+\d+)?)$/m)).toBeGreaterThan(0)
    expect(value(/^wearflow_table_rows_estimate\{table="records"\} (\d+(?:\.\d+)?)$/m)).toBeGreaterThan(0)
    expect(removed("inbox")).toBeGreaterThan(0)
    expect(removed("outbox")).toBeGreaterThan(0)
    expect(removed("webhook_messages")).toBeGreaterThan(0)
    // Health data has no policy unless the operator sets an age.
    expect(metricSum(text, "wearflow_retention_rows_removed_total", { table: "records" })).toBeUndefined()
  })
  it("keeps health data by default, and removes it past an age the operator sets", async () => {
    const { userId } = await userWithData("health")
    await outcomeOf(await push({ dailies: [{ ...daily, userId: "garmin-health", summaryId: "health-1", calendarDate: "2023-05-01" }] }))
    const records = await count("select count(*) as n from records where user_id = $1", [userId])
    expect(records).toBeGreaterThan(0)
    const samples = await count("select count(*) as n from samples where user_id = $1", [userId])
    await swept()
    expect(await count("select count(*) as n from records where user_id = $1", [userId])).toBe(records)
    expect(await count("select count(*) as n from samples where user_id = $1", [userId])).toBe(samples)

    // Restarted with an age for health data: data from 2023 goes, samples with it.
    await stack.server.stop()
    let restarted: RunningServer | undefined
    try {
      restarted = await startServer({ ...stack.env, WEARFLOW_RETENTION_HEALTH_DATA: "365 days" })
      await eventually(async () => ((await count("select count(*) as n from records where user_id = $1", [userId])) === 0 ? true : undefined), 60_000)
      expect(await count("select count(*) as n from samples where user_id = $1", [userId])).toBe(0)
    } finally {
      await restarted?.stop()
    }
  })
})
