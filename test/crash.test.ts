/**
 * Crash safety: `kill -9` the server right after it acknowledged a burst of notifications,
 * start another on the same database, and find every notification processed exactly once
 * (each inbox row's outcome, each record's events) and every event delivered to the
 * Postgres sink's tables.
 */
import { Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually, type RunningServer, startServer } from "./support/server.ts"
import { sendGarminNotification, wearflowApi } from "./support/wearflow-client.ts"

const fixture = JSON.parse(await fs.readFile(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")) as {
  dailies: Array<Record<string, any>>
}
const url = await freshDatabaseUrl()
const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-crash-"))
const env = {
  DATABASE_URL: Redacted.value(url),
  GARMIN_CLIENT_ID: "crash-client",
  WEARFLOW_API_KEY: "crash-key",
  WEARFLOW_DATA_DIR: dataDir,
  WEARFLOW_QUEUE_LOCK_EXPIRATION: "2 seconds",
  // No history request to an unreachable Garmin: its failure notice would be this user's event too.
  WEARFLOW_BACKFILL_ON_CONNECT: "false"
}
const servers: Array<RunningServer> = []
const DAY = 86_400

afterAll(async () => {
  for (const server of servers) await server.stop("SIGKILL")
  await fs.rm(dataDir, { recursive: true, force: true })
})

const BODIES = 60
/** Each body's two dailies fall on days of their own, so no two bodies share a record or a sample. */
const dailiesOf = (n: number): Array<Record<string, any>> =>
  fixture.dailies.map((daily, i) => {
    const start = (daily.startTimeInSeconds as number) + 2 * n * DAY
    return { ...daily, userId: "crash-garmin-user", summaryId: `crash-${n}-${i}`, startTimeInSeconds: start, calendarDate: new Date(start * 1000).toISOString().slice(0, 10) }
  })
const dailies = Array.from({ length: BODIES }, (_, n) => dailiesOf(n)).flat()
/** What the input holds: per daily one activity summary and one heart-rate batch. */
const expected = {
  records: dailies.length * 2,
  activities: dailies.length,
  heartrateSamples: dailies.reduce((n, d) => n + Object.keys(d.timeOffsetHeartRateSamples).length, 0)
}

describe("kill -9", () => {
  it("loses nothing it acknowledged and processes each notification exactly once", async () => {
    // One ingest worker, so that work is certainly still in flight when the kill lands.
    const first = await startServer({ ...env, WEARFLOW_INGEST_CONCURRENCY: "1" })
    servers.push(first)
    const api = wearflowApi(() => first.baseUrl, "crash-key")
    const user = (await api("POST", "/v2/user", { client_user_id: "crash" })).body as { user_id: string }
    await api("POST", `/v2/user/${user.user_id}/connections/garmin`, { provider_user_id: "crash-garmin-user" })

    const bodies = Array.from({ length: BODIES }, (_, n) => JSON.stringify({ dailies: dailiesOf(n) }))
    const replies = await Promise.all(bodies.map((body) => sendGarminNotification(first.baseUrl, "crash-client", "push", body)))
    await first.stop("SIGKILL")
    expect(replies.map((r) => r.status)).toEqual(bodies.map(() => 200))
    const inboxIds = await Promise.all(replies.map(async (r) => ((await r.json()) as { inbox_id: number }).inbox_id))
    const probe = new pg.Client({ connectionString: Redacted.value(url) })
    await probe.connect()
    const pending = Number((await probe.query("select count(*) as n from inbox where processed_at is null")).rows[0].n)
    await probe.end()
    // The kill must land while work is still in flight, or this test proves nothing.
    expect(pending).toBeGreaterThan(0)

    const second = await startServer(env)
    servers.push(second)
    const db = new pg.Client({ connectionString: Redacted.value(url) })
    await db.connect()
    try {
      const count = async (query: string, params: Array<unknown> = [user.user_id]) => Number((await db.query(query, params)).rows[0].n)
      await eventually(async () => ((await count("select count(*) as n from inbox where processed_at is null", [])) === 0 ? true : undefined), 60_000)
      // The Postgres sink has taken every event.
      await eventually(async () => {
        const behind = await count(
          "select count(*) as n from outbox o where not exists (select 1 from sink_cursors c where c.sink_id = 'postgres' and (o.tx, o.position) <= (c.tx, c.position))",
          []
        )
        return behind === 0 ? true : undefined
      }, 60_000)

      // Each body's outcome: its two items, its records created by it and nobody else. A body
      // that was cut short by the kill may be resumed (its committed records then count as
      // unchanged), but only the one the single worker had in flight.
      const outcomes = (await db.query("select id::int as id, outcome from inbox where id = any($1) order by id", [inboxIds])).rows as Array<{
        id: number
        outcome: { items: number; created: number; updated: number; unchanged: number; unlinked: number; errors: Array<unknown> }
      }>
      expect(outcomes).toHaveLength(BODIES)
      for (const { outcome } of outcomes) {
        expect(outcome).toMatchObject({ items: 2, updated: 0, unlinked: 0, errors: [] })
        expect(outcome.created + outcome.unchanged).toBe(4)
      }
      const resumed = outcomes.filter((o) => o.outcome.unchanged > 0)
      expect(resumed.length).toBeLessThanOrEqual(1)
      expect(outcomes.reduce((n, o) => n + o.outcome.created + o.outcome.unchanged, 0)).toBe(expected.records)
      // Every record was written by the body that carries it.
      const writers = (await db.query("select source_id, inbox_id::int as inbox_id from records where user_id = $1 and resource = 'activity'", [user.user_id])).rows
      expect(writers).toHaveLength(expected.activities)
      for (const { source_id, inbox_id } of writers) expect(inbox_id, source_id).toBe(inboxIds[Number(/^crash-(\d+)-/.exec(source_id)![1])])

      // The store: every record once, each with exactly one event, a .created one.
      expect(await count("select count(*) as n from records where user_id = $1")).toBe(expected.records)
      expect(await count("select count(*) as n from samples where user_id = $1 and resource = 'heartrate'")).toBe(expected.heartrateSamples)
      expect(await count("select count(*) as n from outbox where user_id = $1 and record_id is not null")).toBe(expected.records)
      expect(await count("select count(distinct record_id) as n from outbox where user_id = $1")).toBe(expected.records)
      expect(await count("select count(*) as n from outbox where user_id = $1 and event_type not like '%.created'")).toBe(0)

      // Every sink table involved holds what was posted, once.
      expect(await count("select count(*) as n from wearflow_data.activity where user_id = $1")).toBe(expected.activities)
      expect(await count("select count(distinct id) as n from wearflow_data.activity where user_id = $1")).toBe(expected.activities)
      expect(await count("select count(*) as n from wearflow_data.heartrate where user_id = $1")).toBe(expected.heartrateSamples)
      const steps = (await db.query("select sum(steps)::bigint as n from wearflow_data.activity where user_id = $1", [user.user_id])).rows[0].n
      expect(Number(steps)).toBe(dailies.reduce((n, d) => n + (d.steps as number), 0))
    } finally {
      await db.end()
    }
  })
})
