/**
 * The rows the Postgres sink makes in SQL from a batch, on the app's database (payloads read
 * from the outbox) and sending the events along (as to another database): the same rows, and
 * the rules of the sink: the last row per key wins within a batch, a deletion removes what came
 * before it and nothing after, a summary without a string id is passed over, a sample without
 * its record goes to the unknown record, a source without a provider is "unknown".
 */
import { layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { appendEvent } from "@wearflow/core/outbox"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import type { EventEnvelope } from "@wearflow/core/schema"
import * as Database from "@wearflow/core/storage/database"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { expect } from "vitest"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import * as PostgresSink from "./mod.ts"
import { UNKNOWN_RECORD } from "./tables.ts"

const url = await freshDatabaseUrl()
const Services = Layer.orDie(Database.layer({ url: Option.some(url), dataDir: "unused" }))

const TEAM = randomUUID()
const USER = randomUUID()
const [a1, a2, r1] = [randomUUID(), randomUUID(), randomUUID()]
const garmin = { provider: "garmin", type: "watch", device_id: null, app_id: null }
const envelope = (eventType: string, data: unknown): EventEnvelope =>
  ({ event_type: eventType, data, user_id: USER, client_user_id: "client-1", team_id: TEAM }) as unknown as EventEnvelope
const activity = (change: string, id: string | undefined, steps: number) =>
  envelope(`daily.data.activity.${change}`, {
    ...(id ? { id } : {}), user_id: USER, created_at: "2026-03-02T00:00:00Z", updated_at: "2026-03-02T00:00:00Z",
    date: "2026-03-01T00:00:00+01:00", calendar_date: "2026-03-01", steps, heart_rate: { min_bpm: 50 }, wheelchair_use: null, source: garmin
  })
const sample = (timestamp: string, value: number) => ({ timestamp, timezone_offset: 0, type: "watch", unit: "bpm", value })
const heartrate = (samples: ReadonlyArray<ReturnType<typeof sample>>, source: unknown = garmin) =>
  envelope("daily.data.heartrate.created", { user_id: USER, source, data: samples })
const deleted = (resource: string, id: string) =>
  envelope(`daily.data.${resource}.deleted`, { id, user_id: USER, provider: "garmin", resource, source_id: "x", deleted_at: "2026-03-02T00:00:00Z" })

layer(Services, { timeout: 60_000 })("Postgres sink rows", (it) => {
  it.effect("are the same from the outbox and sent along, by the sink's rules", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // One batch, in order.
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* appendEvent(sql, activity("created", a2, 1), a2)
        yield* appendEvent(sql, activity("created", a1, 100), a1)
        yield* appendEvent(sql, activity("updated", a1, 200), a1)
        yield* appendEvent(sql, heartrate([sample("2026-03-01T00:00:00Z", 60), sample("2026-03-01T00:01:00Z", 61), sample("2026-03-01T00:00:00Z", 62)], { type: "watch" }), r1)
        yield* appendEvent(sql, heartrate([sample("2026-03-01T00:02:00Z", 70)]), null)
        yield* appendEvent(sql, deleted("heartrate", r1), r1)
        yield* appendEvent(sql, heartrate([sample("2026-03-01T00:01:00Z", 80)]), r1)
        yield* appendEvent(sql, activity("created", undefined, 5), null)
        yield* appendEvent(sql, deleted("activity", a2), a2)
      }))

      const contents = (schema: string) =>
        Effect.gen(function* () {
          const activities = yield* sql.unsafe<{ id: string; steps: string; heart_rate: unknown; wheelchair_use: boolean | null; provider: string; client_user_id: string }>(
            `select id, steps, heart_rate, wheelchair_use, provider, client_user_id from "${schema}".activity order by id`
          )
          const samples = yield* sql.unsafe<{ record_id: string; timestamp: Date; value: number; provider: string; user_id: string }>(
            `select record_id, "timestamp", value, provider, user_id from "${schema}".heartrate order by record_id, "timestamp"`
          )
          return { activities, samples }
        })

      for (const [schema, make] of [["from_outbox", PostgresSink.make], ["sent_along", PostgresSink.makeSending]] as const) {
        yield* sql`delete from sink_cursors where sink_id = 'postgres'`
        const runner = yield* SinkRunner.make(yield* make(sql, schema), { batchSize: 10_000 })
        yield* runner.once
      }

      expect(yield* sql`select count(*)::int as n from sink_dead_letters`).toEqual([{ n: 0 }])
      const fromOutbox = yield* contents("from_outbox")
      expect(fromOutbox).toEqual(yield* contents("sent_along"))
      expect(fromOutbox.activities).toEqual([
        { id: a1, steps: "200", heart_rate: { min_bpm: 50 }, wheelchair_use: null, provider: "garmin", client_user_id: "client-1" }
      ])
      expect(fromOutbox.samples.map((s) => [s.record_id, s.timestamp.toISOString(), s.value, s.provider, s.user_id]).sort()).toEqual([
        [UNKNOWN_RECORD, "2026-03-01T00:02:00.000Z", 70, "garmin", USER],
        [r1, "2026-03-01T00:01:00.000Z", 80, "garmin", USER]
      ].sort())
    }))

  it.effect("writes a record's samples once when its event repeats a timestamp: the last value", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const record = randomUUID()
      yield* appendEvent(sql, heartrate([sample("2026-04-01T00:00:00Z", 60), sample("2026-04-01T00:00:00Z", 65)], {}), record)
      const runner = yield* SinkRunner.make(yield* PostgresSink.make(sql, "from_outbox"), { batchSize: 10_000 })
      yield* runner.once
      const rows = yield* sql<{ value: number; provider: string }>`select value, provider from from_outbox.heartrate where record_id = ${record}`
      expect(rows).toEqual([{ value: 65, provider: "unknown" }])
    }))
})
