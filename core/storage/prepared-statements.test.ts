/**
 * The pool names the statements it runs again and again: each connection then prepares a text
 * once. Checked on a real Postgres through the project's database layer: what is named, that
 * results stay the same, the bound on names, and a connection whose prepared statement a
 * schema change broke being replaced.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import * as Database from "./database.ts"
import { namer } from "./prepared-statements.ts"

describe("namer", () => {
  it("names a text on its `after`th run, the same name every time after", () => {
    const nameOf = namer({ after: 3, most: 10 })
    expect([nameOf("select $1"), nameOf("select $1")]).toEqual([undefined, undefined])
    const name = nameOf("select $1")
    expect(name).toMatch(/^wearflow_\d+$/)
    expect(nameOf("select $1")).toBe(name)
    expect(nameOf("select $2")).toBeUndefined()
  })

  it("names at most `most` texts; others stay unnamed, named ones keep their names", () => {
    const nameOf = namer({ after: 1, most: 2 })
    const a = nameOf("a")
    const b = nameOf("b")
    expect(new Set([a, b]).size).toBe(2)
    expect(nameOf("c")).toBeUndefined()
    expect(nameOf("a")).toBe(a)
  })
})

const run = <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>, preparedStatements = true) =>
  freshDatabaseUrl().then((url) =>
    Effect.runPromise(effect.pipe(Effect.provide(Database.layer({ url: Option.some(url), dataDir: "unused", maxConnections: 2, preparedStatements }))) as Effect.Effect<A>))

/** Runs a statement ten times on one connection; what that connection then holds prepared of it. */
const preparedAfterTenRuns = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // In a transaction, so on one connection: the one whose prepared statements are listed.
  return yield* sql.withTransaction(Effect.gen(function* () {
    const results: Array<number> = []
    for (let i = 0; i < 10; i++) {
      const [row] = yield* sql<{ readonly n: number }>`select ${i}::int * 2 as n, 'prepared-statements-test' as tag`
      results.push(row!.n)
    }
    const prepared = yield* sql<{ readonly name: string }>`
      select name from pg_prepared_statements where statement like ${"%prepared-statements-" + "test%"}`
    return { prepared, results }
  }))
})

describe("the database pool", () => {
  it("prepares a statement run often, once per connection, with the same results", () =>
    run(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { prepared, results } = yield* preparedAfterTenRuns
        expect(results).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
        expect(prepared).toHaveLength(1)
        expect(prepared[0]!.name).toMatch(/^wearflow_\d+$/)
        // A statement without parameters is never named (it may hold several statements).
        for (let i = 0; i < 5; i++) yield* sql.unsafe("select 1 as one; select 2 as two")
      })
    ))

  it("prepares a statement anew as its table grows, so that its plan is made for the table's size", () =>
    run(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`create table grows (id int primary key, v int)`
        yield* sql`insert into grows select n, n * 10 from generate_series(1, 10) as n`
        // Statistics of the small table, as autovacuum would have taken them.
        yield* sql`analyze grows`
        return yield* sql.withTransaction(Effect.gen(function* () {
          // Ten ids, as many rows as Postgres assumes for an array parameter: the generic plan is as cheap as a custom one, so it is kept.
          const ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          const values = ids.map((id) => id * 10)
          // As the queue's claim reads inbox rows: a join of the given ids with the table.
          const read = sql<{ readonly v: number }>`
            select g.v, 'prepared-statements-grows' as tag from unnest(${ids}::int[]) as u(id) join grows g on g.id = u.id order by g.v`
          // Planned while the table is ten rows: a hash join over a sequential scan is the cheapest plan.
          for (let i = 0; i < 10; i++) expect((yield* read).map((r) => r.v)).toEqual(values)
          // It grows (no ANALYZE: a cached plan would be kept as it is).
          yield* sql`insert into grows select n, n * 10 from generate_series(11, 50000) as n`
          for (let i = 0; i < 30; i++) expect((yield* read).map((r) => r.v)).toEqual(values)
          const prepared = yield* sql<{ readonly name: string }>`
            select name from pg_prepared_statements where statement like ${"%prepared-statements-" + "grows%"}`
          // Prepared anew (at the 16th and 32nd runs), the earlier ones deallocated.
          expect(prepared).toHaveLength(1)
          expect(prepared[0]!.name).toMatch(/^wearflow_\d+_2$/)
          const plan = yield* sql.unsafe<{ readonly "QUERY PLAN": string }>(`explain execute ${prepared[0]!.name}('{${ids.join(",")}}')`)
          const planText = plan.map((line) => line["QUERY PLAN"]).join("\n")
          expect(planText).toMatch(/Index (Only )?Scan/)
          expect(planText).not.toMatch(/Seq Scan on grows/)
        }))
      })
    ))

  it("prepares nothing when told not to (WEARFLOW_DATABASE_PREPARED_STATEMENTS=false)", () =>
    run(
      Effect.gen(function* () {
        const { prepared, results } = yield* preparedAfterTenRuns
        expect(results).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
        expect(prepared).toEqual([])
      }),
      false
    ))

  it("replaces a connection whose prepared statement a schema change broke; the next try succeeds", () =>
    run(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`create table widened (id int primary key)`
        yield* sql`insert into widened values (1)`
        const read = sql<Record<string, unknown>>`select * from widened where id = ${1}`
        for (let i = 0; i < 5; i++) yield* read
        // Another process's migration, as it were: the prepared `select *` changes its columns.
        yield* sql`alter table widened add column note text default 'added'`
        // Each connection that prepared it refuses it once (Postgres: "cached plan must not
        // change result type") and is replaced; the pool has two, so the third try at the latest reads the new column.
        const tries: Array<string> = []
        let row: Record<string, unknown> | undefined
        while (row === undefined && tries.length < 3) {
          const result = yield* Effect.either(read)
          if (result._tag === "Right") row = result.right[0]
          else tries.push(String((result.left as { cause?: unknown }).cause))
        }
        expect(row).toEqual({ id: 1, note: "added" })
        for (const refused of tries) expect(refused).toMatch(/cached plan must not change result type/)
        for (let i = 0; i < 5; i++) expect(yield* read).toEqual([{ id: 1, note: "added" }])
      })
    ))
})
