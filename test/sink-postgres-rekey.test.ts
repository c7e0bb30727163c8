/**
 * A Postgres sink table made when samples were keyed by (user, provider, type, timestamp) is
 * moved to the record key at start: rows written before get the record of the stored sample
 * they came from, or the unknown record when the app's store does not have it.
 */
import { layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as Database from "@wearflow/core/storage/database"
import * as PostgresSink from "@wearflow/sink-postgres"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { expect } from "vitest"
import { ddlOf, tables, UNKNOWN_RECORD } from "../sinks/postgres/tables.ts"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()
const Services = Layer.orDie(Database.layer({ url: Option.some(url), dataDir: "unused" }))

layer(Services, { timeout: 60_000 })("postgres sink tables of the old sample key", (it) => {
  it.effect("are re-keyed by record and timestamp, keeping their rows", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const steps = tables.find((t) => t.resource === "steps")!
      const legacy = { ...steps, columns: steps.columns.filter((c) => c.name !== "record_id"), primaryKey: ["user_id", "provider", "type", "timestamp"] }
      yield* sql.unsafe(`create schema wearflow_data`)
      yield* sql.unsafe(ddlOf("wearflow_data", legacy)[0]!)

      const teamId = randomUUID()
      const userId = randomUUID()
      const recordId = randomUUID()
      yield* sql`insert into teams (id, name) values (${teamId}, 'legacy')`
      yield* sql`insert into users (id, team_id, client_user_id) values (${userId}, ${teamId}, 'legacy-user')`
      yield* sql`insert into samples (user_id, resource, provider, source_type, ts, value, unit, record_id)
                 values (${userId}, 'steps', 'garmin', 'watch', '2023-11-14T22:15:00Z', 300, 'count', ${recordId})`
      const row = (ts: string, value: number) => ({
        user_id: userId, provider: "garmin", timestamp: ts, start: ts, end: ts, timezone_offset: 0, type: "watch", unit: "count", value,
        team_id: teamId, client_user_id: "legacy-user", event_id: randomUUID()
      })
      yield* sql`insert into wearflow_data.steps ${sql.insert([row("2023-11-14T22:15:00Z", 300), row("2023-11-14T22:30:00Z", 40)])}`

      yield* PostgresSink.make(sql, "wearflow_data")

      const key = yield* sql<{ attname: string }>`
        select a.attname from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
        where c.conrelid = 'wearflow_data.steps'::regclass and c.contype = 'p' order by array_position(c.conkey, a.attnum)`
      expect(key.map((k) => k.attname)).toEqual(["record_id", "timestamp"])
      const rows = yield* sql<{ value: number; record_id: string }>`select value, record_id from wearflow_data.steps order by "timestamp"`
      expect(rows).toEqual([{ value: 300, record_id: recordId }, { value: 40, record_id: UNKNOWN_RECORD }])

      // A second start finds the table re-keyed and leaves it alone.
      yield* PostgresSink.make(sql, "wearflow_data")
      expect(yield* sql`select value, record_id from wearflow_data.steps order by "timestamp"`).toEqual(rows)
    }))
})
