/**
 * The Postgres sink's start beside a running replica: tables already as they should be get no
 * DDL (its `alter table` locks would wait on, or deadlock with, the other's deliveries), and a
 * table an upgrade changed still gets its new column.
 */
import { layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as Database from "@wearflow/core/storage/database"
import * as PostgresSink from "@wearflow/sink-postgres"
import { Effect, Layer, Option } from "effect"
import { expect } from "vitest"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()
const Services = Layer.orDie(Database.layer({ url: Option.some(url), dataDir: "unused" }))

layer(Services, { timeout: 60_000 })("postgres sink start", (it) => {
  it.scoped("starts while another process's delivery holds its tables, and adds a column an upgrade brought", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* PostgresSink.make(sql, "wearflow_data")

      // Another replica's delivery, mid-transaction: row locks on two typed tables.
      const other = yield* sql.reserve
      yield* other.executeRaw("begin", [])
      yield* other.executeRaw("lock table wearflow_data.steps, wearflow_data.sleep in row exclusive mode", [])
      // Before: `alter table ... add column if not exists` waited here for that transaction to end.
      yield* PostgresSink.make(sql, "wearflow_data")
      yield* other.executeRaw("rollback", [])

      // A column the tables lack is added at the next start.
      yield* sql.unsafe(`alter table wearflow_data.sleep drop column synced_at`)
      yield* PostgresSink.make(sql, "wearflow_data")
      const columns = yield* sql<{ column_name: string }>`
        select column_name from information_schema.columns where table_schema = 'wearflow_data' and table_name = 'sleep' and column_name = 'synced_at'`
      expect(columns).toHaveLength(1)
    }))
})
