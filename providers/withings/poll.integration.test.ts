/**
 * The Withings poll on core's durable sync: the real poll workflow on the real engine and
 * Postgres, the Withings Provider built in its sandbox against the fake Withings. Linking
 * starts the poll; its first round stores the seeded data and a cursor; processed, the pages
 * give records; a revision at Withings, the poll woken, arrives as `.updated`. Pages are
 * processed by the test (no ingest takers run).
 */
import { SqlClient } from "@effect/sql"
import { Connections } from "@wearflow/core/connections/connections"
import { Links } from "@wearflow/core/connections/links"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Engine from "@wearflow/core/engine"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import * as History from "@wearflow/core/pipeline/history"
import { Inbox, IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import * as Parked from "@wearflow/core/pipeline/parked"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { Providers } from "@wearflow/core/provider"
import { DataQuery } from "@wearflow/core/query"
import * as Database from "@wearflow/core/storage/database"
import * as SyncOnConnect from "@wearflow/core/sync/on-connect"
import * as SyncPoll from "@wearflow/core/sync/poll"
import { SyncSettings } from "@wearflow/core/sync/settings"
import { SyncStatus } from "@wearflow/core/sync/status"
import { wake } from "@wearflow/core/sync/workflows"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { freshDatabase } from "@wearflow/core/testing/database"
import { Duration, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"
import { processWaiting, sandboxedProvider, seedRecent } from "./testing/sync-harness.ts"
import { eventually } from "../../test/support/server.ts"

const WITHINGS_USER = "7300001"

let fake: FakeWithings
let runtime: ManagedRuntime.ManagedRuntime<any, any>

beforeAll(async () => {
  fake = await startFakeWithings()
  const provider = await sandboxedProvider(fake)
  const url = await freshDatabase()
  const storage = Layer.mergeAll(
    IngestQueue.layer.pipe(Layer.provide(layerQueueStore({ pollInterval: "20 millis" }))),
    layerTokenCipher(Redacted.make([randomBytes(32)]))
  ).pipe(Layer.provideMerge(Database.layer({ url: Option.some(url), dataDir: "unused" })))
  runtime = ManagedRuntime.make(
    SyncPoll.layerStarter.pipe(
      Layer.provideMerge(SyncPoll.layer),
      Layer.provideMerge(IngestWorker.layer().pipe(Layer.provide(History.none))),
      Layer.provideMerge(SyncStatus.Default),
      Layer.provideMerge(Connections.Default),
      Layer.provideMerge(Layer.mergeAll(
        Links.Default.pipe(Layer.provide(Layer.merge(Parked.layer, SyncOnConnect.layer)), Layer.provideMerge(Accounts.Default)),
        Inbox.Default,
        RecordStore.Default,
        DataQuery.Default,
        Layer.succeed(Providers, new Map([[provider.id, provider]])),
        ActivityFiles.layerLocal(path.join(os.tmpdir(), "wearflow-withings-poll-files"))
      )),
      Layer.provideMerge(Engine.layer({ runnerAddress: { host: "withings-poll-test", port: 40_000 + Math.floor(Math.random() * 20_000) } })),
      Layer.provideMerge(Layer.succeed(SyncSettings, { ...SyncSettings.defaults, jitter: Duration.zero, retryBackoff: Duration.millis(10), startInterval: Duration.millis(100) })),
      Layer.provideMerge(storage)
    )
  )
})

afterAll(async () => {
  await runtime?.dispose()
  await fake?.close()
})

const run = <A, E>(effect: Effect.Effect<A, E, any>) => runtime.runPromise(effect as Effect.Effect<A, E, never>)
const query = <A extends object>(text: string, ...params: Array<unknown>) => run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text, params)))

const afterRound = (connectionId: string, rounds: number) =>
  eventually(async () => {
    const [row] = await query<{ cursor: string | null; rounds: number; last_error: string | null }>(
      "select cursor, rounds, last_error from connection_sync where connection_id = $1", connectionId)
    return row !== undefined && row.rounds >= rounds ? row : undefined
  }, 60_000)

it("polls a linked Withings connection on core's durable sync: the seeded data stored, then a revision as .updated once woken", async () => {
  seedRecent(fake, WITHINGS_USER)
  const tokens = fake.connect(WITHINGS_USER)
  const { connectionId, userId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const providers = yield* Providers
    const sql = yield* SqlClient.SqlClient
    const teamId = yield* accounts.ensureTeamKey("withings-poll", Redacted.make("withings-poll-api-key"))
    const user = yield* accounts.createUser(teamId, "withings-poll-user")
    yield* links.link(teamId, user.user_id, providers.get("withings")!, WITHINGS_USER, {
      accessToken: Redacted.make(tokens.access_token),
      state: { userid: WITHINGS_USER, scopes: ["user.metrics", "user.activity"] }
    })
    const [row] = yield* sql<{ id: string }>`select id from provider_connections where user_id = ${user.user_id}`
    return { userId: user.user_id, connectionId: row!.id }
  }))

  const first = await afterRound(connectionId, 1)
  expect(first.last_error).toBeNull()
  expect(JSON.parse(first.cursor!)).toMatchObject({ v: 1, families: { getmeas: { since: expect.any(Number) } } })
  await run(processWaiting)
  const resources = await query<{ resource: string; n: number }>("select resource, count(*)::int as n from records where user_id = $1 group by resource", userId)
  const stored = new Map(resources.map((r) => [r.resource, r.n]))
  for (const resource of ["body", "weight", "activity", "workouts", "sleep", "heartrate"]) expect(stored.get(resource), resource).toBeGreaterThan(0)
  const [failed] = await query<{ n: number }>(
    "select count(*)::int as n from inbox where provider = 'withings' and (outcome is null or jsonb_array_length(coalesce(outcome->'errors', '[]'::jsonb)) > 0)")
  expect(failed!.n).toBe(0)

  // A night revised at Withings; the poll woken (as a notification would) stores it as an update.
  const night = fake.state.users.get(WITHINGS_USER)!.sleepSummaries[0]!
  fake.revise(WITHINGS_USER, "sleepSummaries", { ...night, data: { ...(night["data"] as object), sleep_score: 99 } })
  expect(await run(wake(connectionId))).toBe(true)
  const second = await afterRound(connectionId, 2)
  expect(second.last_error).toBeNull()
  // Only the night and the sleep series of the UTC days it touches: nothing else changed.
  const kinds = await query<{ kind: string }>(
    "select i.kind from sync_pages p join inbox i on i.id = p.inbox_id where p.connection_id = $1 and p.round = 2 order by p.page", connectionId)
  const [summary, ...windows] = kinds.map((k) => k.kind)
  expect(summary).toBe("getsummary")
  expect(windows.length).toBeGreaterThanOrEqual(1)
  expect(windows.every((kind) => kind === "sleep")).toBe(true)
  await run(processWaiting)
  const updated = await query<{ event_type: string }>("select event_type from outbox where user_id = $1 and event_type like 'daily.data.sleep.updated'", userId)
  expect(updated.length).toBeGreaterThan(0)
})
