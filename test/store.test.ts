/**
 * RecordStore.write on its own, against a real Postgres: a write is a few statements whatever
 * its size, yet it must answer and emit exactly what writing its records one by one did — a
 * record twice in one write, events in the records' order, text that needs quoting in an
 * array literal, revised batches, older items and deletions.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { RecordStore } from "@wearflow/core/pipeline/store"
import * as Database from "@wearflow/core/storage/database"
import { arrayLiteral } from "@wearflow/core/storage/pg-array"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()
const Services = RecordStore.Default.pipe(Layer.provideMerge(Database.layer({ url: Option.some(url), dataDir: "unused" })))

const source = { provider: "garmin", type: "watch", device_id: null, app_id: null } as const

/** A fresh user, so each test sees only its own rows. */
const freshUser = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const teamId = randomUUID()
  const userId = randomUUID()
  yield* sql`insert into teams (id, name) values (${teamId}, 'store')`
  yield* sql`insert into users (id, team_id, client_user_id) values (${userId}, ${teamId}, ${`client-${userId}`})`
  return { userId, teamId, clientUserId: `client-${userId}` }
})

const daily = (sourceId: string, steps: number): NormalizedRecord => ({
  kind: "summary",
  resource: "activity",
  sourceId,
  data: {
    date: "2026-03-01T00:00:00.000Z",
    calendar_date: "2026-03-01",
    calories_total: 2000,
    calories_active: 500,
    steps,
    daily_movement: null,
    low: null,
    medium: null,
    high: null,
    floors_climbed: null,
    heart_rate: null,
    wheelchair_use: null,
    wheelchair_push: null,
    timezone_offset: 0,
    source
  }
})

const heartRate = (sourceId: string, samples: ReadonlyArray<readonly [string, number]>): NormalizedRecord => ({
  kind: "timeseries",
  resource: "heartrate",
  sourceId,
  data: { source, data: samples.map(([timestamp, value]) => ({ timestamp, timezone_offset: 0, type: "watch" as const, unit: "bpm", value })) }
})

const events = (userId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ event_type: string; source_id: string; steps: number | null; historical: boolean }>`
      select o.event_type, r.source_id, (o.payload->'data'->>'steps')::int as steps, o.historical
      from outbox o left join records r on r.id = o.record_id
      where o.user_id = ${userId} order by o.tx, o.position`)

const samples = (userId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ ts: Date; value: number }>`select ts, value from samples where user_id = ${userId} order by ts`).pipe(
    Effect.map((rows) => rows.map((r) => [r.ts.toISOString(), r.value] as const))
  )

const at = (minute: number) => new Date(Date.UTC(2026, 2, 1, 8, minute)).toISOString()

layer(Services, { timeout: 60_000 })("RecordStore.write", (it) => {
  it.effect("a record twice in one write is written twice, in order: created, then updated when it changed", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const user = yield* freshUser
      const outcome = yield* store.write(user, "garmin", [daily("a", 1), daily("b", 1), daily("a", 2), daily("b", 1), daily("a", 3)], 1)
      expect(outcome).toEqual({ created: 2, updated: 2, unchanged: 1 })
      expect((yield* events(user.userId)).map((e) => [e.event_type, e.source_id, e.steps])).toEqual([
        ["daily.data.activity.created", "a", 1],
        ["daily.data.activity.created", "b", 1],
        ["daily.data.activity.updated", "a", 2],
        ["daily.data.activity.updated", "a", 3]
      ])
    }))

  it.effect("events follow the records' order across summaries and batches, marked historical where asked", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const user = yield* freshUser
      const records = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? heartRate(`hr-${i}`, [[at(i), 60 + i]]) : daily(`d-${i}`, i)))
      yield* store.write(user, "garmin", records, 1, new Set(records.filter((_, i) => i % 2 === 0)))
      const emitted = yield* events(user.userId)
      expect(emitted.map((e) => e.source_id)).toEqual(records.map((r) => r.sourceId))
      expect(emitted.map((e) => e.historical)).toEqual(records.map((_, i) => i % 2 === 0))
    }))

  it.effect("text that an array literal must quote is stored as sent", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const sql = yield* SqlClient.SqlClient
      const user = yield* freshUser
      const ids = ["NULL", "null", "", "a,b", "{x}", 'say "hi"', "back\\slash", " spaced ", "ünï"]
      const outcome = yield* store.write(user, "garmin", ids.map((id) => daily(id, 1)), 1)
      expect(outcome.created).toBe(ids.length)
      const stored = yield* sql<{ source_id: string }>`select source_id from records where user_id = ${user.userId}`
      expect(stored.map((r) => r.source_id).sort()).toEqual([...ids].sort())
    }))

  it.effect("a revised batch replaces its samples; another record's samples at the same instants stay", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const user = yield* freshUser
      yield* store.write(user, "garmin", [heartRate("hr", [[at(0), 60], [at(1), 61], [at(2), 62]]), heartRate("other", [[at(0), 90]])], 1)
      const outcome = yield* store.write(user, "garmin", [heartRate("hr", [[at(1), 71], [at(3), 73], [at(3), 74]])], 2)
      expect(outcome).toEqual({ created: 0, updated: 1, unchanged: 0 })
      expect(yield* samples(user.userId)).toEqual([[at(0), 90], [at(1), 71], [at(3), 74]])
    }))

  it.effect("an older inbox item does not overwrite a newer one, and a deleted record stays deleted for older items", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const user = yield* freshUser
      yield* store.write(user, "garmin", [daily("kept", 2), daily("gone", 1)], 10)
      yield* store.remove(user, "garmin", ["gone"], 11)
      const older = yield* store.write(user, "garmin", [daily("kept", 1), daily("gone", 1), daily("new", 1)], 9)
      expect(older).toEqual({ created: 1, updated: 0, unchanged: 2 })
      const newer = yield* store.write(user, "garmin", [daily("gone", 5)], 12)
      expect(newer).toEqual({ created: 1, updated: 0, unchanged: 0 })
      expect((yield* events(user.userId)).map((e) => e.event_type)).toEqual([
        "daily.data.activity.created",
        "daily.data.activity.created",
        "daily.data.activity.deleted",
        "daily.data.activity.created",
        "daily.data.activity.created"
      ])
    }))

  it.effect("an event carries the envelope: a summary's data with its row's timestamps, a batch's data whole", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const sql = yield* SqlClient.SqlClient
      const user = yield* freshUser
      const summary = daily("d", 7)
      const batch = heartRate("hr", [[at(0), 60], [at(1), 61]])
      yield* store.write(user, "garmin", [summary, batch], 1)
      const [row] = yield* sql<{ id: string; created_at: Date; updated_at: Date }>`
        select id, created_at, updated_at from records where user_id = ${user.userId} and source_id = 'd'`
      const payloads = yield* sql<{ payload: unknown }>`select payload from outbox where user_id = ${user.userId} order by position`
      expect(payloads.map((p) => p.payload)).toEqual([
        {
          event_type: "daily.data.activity.created",
          data: { id: row!.id, user_id: user.userId, ...summary.data, created_at: row!.created_at.toISOString(), updated_at: row!.updated_at.toISOString() },
          user_id: user.userId,
          client_user_id: user.clientUserId,
          team_id: user.teamId
        },
        {
          event_type: "daily.data.heartrate.created",
          data: { user_id: user.userId, ...batch.data },
          user_id: user.userId,
          client_user_id: user.clientUserId,
          team_id: user.teamId
        }
      ])
    }))

  it.effect("summaries of several parts (one statement): the same envelopes, in the parts' order, historical marked, an update with its new updated_at", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const sql = yield* SqlClient.SqlClient
      const [first, second] = [yield* freshUser, yield* freshUser]
      yield* store.write(second, "garmin", [daily("b", 1)], 1)
      const late = daily("a", 2)
      const outcomes = yield* store.writeParts([
        { recipient: first!, provider: "garmin", records: [daily("z", 3), late], inboxId: 2, historical: new Set([late]) },
        { recipient: second!, provider: "garmin", records: [daily("b", 4), daily("c", 5)], inboxId: 3 }
      ])
      expect(outcomes).toEqual([{ created: 2, updated: 0, unchanged: 0 }, { created: 1, updated: 1, unchanged: 0 }])
      const rows = yield* sql<{ id: string; user_id: string; source_id: string; created_at: Date; updated_at: Date }>`
        select id, user_id, source_id, created_at, updated_at from records where user_id in (${first!.userId}, ${second!.userId})`
      const envelope = (user: typeof first, sourceId: string, steps: number, type: string) => {
        const row = rows.find((r) => r.user_id === user!.userId && r.source_id === sourceId)!
        return {
          event_type: `daily.data.activity.${type}`,
          data: { id: row.id, user_id: user!.userId, ...daily(sourceId, steps).data, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() },
          user_id: user!.userId,
          client_user_id: user!.clientUserId,
          team_id: user!.teamId
        }
      }
      const appended = yield* sql<{ payload: unknown; historical: boolean }>`
        select payload, historical from outbox where user_id in (${first!.userId}, ${second!.userId}) order by position offset 1`
      expect(appended).toEqual([
        { payload: envelope(first, "z", 3, "created"), historical: false },
        { payload: envelope(first, "a", 2, "created"), historical: true },
        { payload: envelope(second, "b", 4, "updated"), historical: false },
        { payload: envelope(second, "c", 5, "created"), historical: false }
      ])
    }))

  it.effect("a user's deletion takes their samples with their records", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const sql = yield* SqlClient.SqlClient
      const user = yield* freshUser
      const other = yield* freshUser
      yield* store.write(user, "garmin", [heartRate("hr", [[at(0), 60], [at(1), 61]])], 1)
      yield* store.write(other, "garmin", [heartRate("hr", [[at(0), 70]])], 1)
      yield* sql`delete from users where id = ${user.userId}`
      expect(yield* samples(user.userId)).toEqual([])
      expect(yield* samples(other.userId)).toEqual([[at(0), 70]])
    }))

  it.effect("parts of several jobs in one write: each keeps its user, inbox id and historical marks, and gets its own outcome", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const sql = yield* SqlClient.SqlClient
      const alice = yield* freshUser
      const bob = yield* freshUser
      yield* store.write(alice, "garmin", [daily("kept", 2), daily("gone", 1)], 10)
      yield* store.remove(alice, "garmin", ["gone"], 11)
      const bobHistorical = daily("b-old", 1)
      const outcomes = yield* store.writeParts([
        // Older than what alice has stored, and than her deletion: only "new" is written.
        { recipient: alice, provider: "garmin", records: [daily("kept", 1), daily("gone", 1), daily("new", 1)], inboxId: 9 },
        { recipient: bob, provider: "garmin", records: [daily("kept", 7), bobHistorical, heartRate("hr", [[at(0), 80]])], inboxId: 5, historical: new Set([bobHistorical]) },
        // Alice's "kept" again from a newer item in the same write: it wins over both.
        { recipient: alice, provider: "garmin", records: [daily("kept", 3), heartRate("hr", [[at(0), 60], [at(1), 61]])], inboxId: 12 }
      ])
      expect(outcomes).toEqual([
        { created: 1, updated: 0, unchanged: 2 },
        { created: 3, updated: 0, unchanged: 0 },
        { created: 1, updated: 1, unchanged: 0 }
      ])
      const stored = yield* sql<{ user_id: string; source_id: string; steps: number | null; inbox_id: string }>`
        select user_id, source_id, (data->>'steps')::int as steps, inbox_id from records
        where user_id in (${alice.userId}, ${bob.userId}) order by source_id, inbox_id`
      expect(stored.map((r) => [r.user_id === alice.userId ? "alice" : "bob", r.source_id, r.steps, Number(r.inbox_id)])).toEqual([
        ["bob", "b-old", 1, 5],
        ["bob", "hr", null, 5],
        ["alice", "hr", null, 12],
        ["bob", "kept", 7, 5],
        ["alice", "kept", 3, 12],
        ["alice", "new", 1, 9]
      ])
      expect(yield* samples(alice.userId)).toEqual([[at(0), 60], [at(1), 61]])
      expect(yield* samples(bob.userId)).toEqual([[at(0), 80]])
      expect((yield* events(alice.userId)).map((e) => [e.event_type, e.source_id, e.steps])).toEqual([
        ["daily.data.activity.created", "kept", 2],
        // "gone" was removed: its events no longer join a record.
        ["daily.data.activity.created", null, 1],
        ["daily.data.activity.deleted", null, null],
        ["daily.data.activity.created", "new", 1],
        ["daily.data.activity.updated", "kept", 3],
        ["daily.data.heartrate.created", "hr", null]
      ])
      expect((yield* events(bob.userId)).map((e) => [e.source_id, e.historical])).toEqual([["kept", false], ["b-old", true], ["hr", false]])
    }))

  it.effect("a write whose parts are refused as a whole changes nothing: no part is half written", () =>
    Effect.gen(function* () {
      const store = yield* RecordStore
      const alice = yield* freshUser
      const nobody = { userId: randomUUID(), teamId: alice.teamId, clientUserId: "nobody" }
      const failed = yield* Effect.either(store.writeParts([
        { recipient: alice, provider: "garmin", records: [daily("a", 1)], inboxId: 1 },
        // No such user: the foreign key refuses the statement, and with it the transaction.
        { recipient: nobody, provider: "garmin", records: [daily("a", 1)], inboxId: 1 }
      ]))
      expect(failed._tag).toBe("Left")
      expect(yield* events(alice.userId)).toEqual([])
      expect(yield* store.write(alice, "garmin", [daily("a", 1)], 1)).toEqual({ created: 1, updated: 0, unchanged: 0 })
    }))

  it.effect("array literals read back as the values they were made of", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const texts = ["a", "", "NULL", "x y", "a,b", '{"k":"v\\n"}', "\\", "}", "tab\t", null]
      const numbers = [1, -0.5, 1.5e300, null]
      const [row] = yield* sql<{ t: Array<string | null>; n: Array<number | null>; b: Array<boolean | null> }>`
        select ${arrayLiteral(texts)}::text[] as t, ${arrayLiteral(numbers)}::float8[] as n, ${arrayLiteral([true, false, null])}::boolean[] as b`
      expect(row).toEqual({ t: texts, n: numbers, b: [true, false, null] })
    }))
})
