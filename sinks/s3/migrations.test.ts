/** The ETL sink's migrations on a real Postgres: chunks staged before 0003 get their batch's fill. */
import { Migrator, SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import * as Database from "@wearflow/core/storage/database"
import { Effect, Layer, Option } from "effect"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import { migrate, migrations } from "./migrations.ts"

describe("ETL migrations", () => {
  it.scopedLive("0003 gives each resource's last open chunk its open batch's sum, and every other chunk its own size", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { "0003_chunk_fill": _, ...before } = migrations
      yield* Migrator.make({})({ loader: Migrator.fromRecord(before), table: "etl_migrations" })
      // activity: chunks 1–2 sealed, 3–4 open; heartrate: nothing sealed, 5–6 open.
      yield* sql`
        insert into etl_pending (resource, positions, event_records, events, records, bytes)
        values ('activity', '{1}', '{10}', 1, 10, 100), ('activity', '{2}', '{20}', 1, 20, 200),
               ('activity', '{3}', '{30}', 1, 30, 300), ('activity', '{4}', '{40}', 1, 40, 400),
               ('heartrate', '{5}', '{5}', 1, 5, 50), ('heartrate', '{6}', '{6}', 1, 6, 60)`
      yield* sql`insert into etl_sealed (resource, through_seq) values ('activity', 2)`
      yield* migrate
      const rows = yield* sql<{ readonly seq: string; readonly fill_records: string; readonly fill_bytes: string }>`
        select seq::text, fill_records::text, fill_bytes::text from etl_pending order by seq`
      expect(rows.map((r) => [Number(r.seq), Number(r.fill_records), Number(r.fill_bytes)])).toEqual([
        [1, 10, 100], [2, 20, 200], [3, 30, 300], [4, 70, 700], [5, 5, 50], [6, 11, 110]
      ])
    }).pipe(Effect.provide(Layer.unwrapEffect(Effect.promise(() => freshDatabaseUrl()).pipe(
      Effect.map((url) => Database.layer({ url: Option.some(url), dataDir: "unused", maxConnections: 2 }))
    )))))
})
