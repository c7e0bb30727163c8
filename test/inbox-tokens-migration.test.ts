/**
 * Migration 0007 takes OAuth 1.0a tokens out of bodies stored before it: each item's
 * `userAccessToken` becomes `userAccessTokenHash`, the hash connections are matched by.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { migrate, migrations } from "@wearflow/core/storage/database"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()

it.effect("rewrites stored tokens as their hash and leaves other bodies alone", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // The schema as it was before 0007.
    const before = Effect.map(migrations, (all) => all.filter(([id]) => id < 7))
    yield* Migrator.make({})({ loader: before })
    const withToken = JSON.stringify({
      dailies: [{ userAccessToken: "old-oauth1-token", summaryId: "a", steps: 1 }, { userId: "u", summaryId: "b" }],
      deregistrations: [{ userAccessToken: "other-token" }]
    })
    const [tokenRow] = yield* sql<{ id: string }>`insert into inbox (provider, kind, body, item_count) values ('garmin', 'push', ${withToken}, 3) returning id`
    const [plainRow] = yield* sql<{ id: string }>`insert into inbox (provider, kind, body, item_count) values ('garmin', 'push', '{"dailies": [{"userId": "u"}]}', 1) returning id`
    const [brokenRow] = yield* sql<{ id: string }>`insert into inbox (provider, kind, body, item_count) values ('garmin', 'push', '{"userAccessToken": oops', 0) returning id`

    yield* migrate
    const body = (id: string) => sql<{ body: string }>`select body from inbox where id = ${id}`.pipe(Effect.map((rows) => rows[0]!.body))
    const rewritten = JSON.parse(yield* body(tokenRow!.id))
    const digest = (token: string) => createHash("sha256").update(token).digest("hex")
    expect(rewritten).toEqual({
      dailies: [{ userAccessTokenHash: digest("old-oauth1-token"), summaryId: "a", steps: 1 }, { userId: "u", summaryId: "b" }],
      deregistrations: [{ userAccessTokenHash: digest("other-token") }]
    })
    expect(yield* body(plainRow!.id)).toBe('{"dailies": [{"userId": "u"}]}')
    expect(yield* body(brokenRow!.id)).toBe('{"userAccessToken": oops')
  }).pipe(Effect.provide(PgClient.layer({ url })), Effect.scoped))
