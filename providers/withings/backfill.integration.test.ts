/**
 * Withings history on core's backfill chain: the real chain on the real engine and Postgres,
 * the Withings Provider built in its sandbox against the fake Withings. Linking schedules the
 * history; each window is fetched by the plugin and committed page by page; once every page
 * is processed, `historical.data.<resource>.created` goes out for each of the plugin's types.
 * Pages are processed by the test (no ingest takers run).
 */
import { SqlClient } from "@effect/sql"
import { Backfills, layerHistoryObserver, startChain } from "@wearflow/core/backfill/backfills"
import * as BackfillChains from "@wearflow/core/backfill/chain"
import * as OnConnect from "@wearflow/core/backfill/on-connect"
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { Connections } from "@wearflow/core/connections/connections"
import { Links } from "@wearflow/core/connections/links"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Engine from "@wearflow/core/engine"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import { Inbox, IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import * as Parked from "@wearflow/core/pipeline/parked"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { Providers } from "@wearflow/core/provider"
import { DataQuery } from "@wearflow/core/query"
import * as Database from "@wearflow/core/storage/database"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { freshDatabase } from "@wearflow/core/testing/database"
import { Duration, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"
import { processWaiting, sandboxedProvider, seedIntraday, seedRecent } from "./testing/sync-harness.ts"
import { eventually } from "../../test/support/server.ts"

const WITHINGS_USER = "7400001"

let fake: FakeWithings
let runtime: ManagedRuntime.ManagedRuntime<any, any>

beforeAll(async () => {
  fake = await startFakeWithings()
  const provider = await sandboxedProvider(fake)
  // Core's backfill is what is tested here: the poll must not run.
  const historyOnly = { ...provider, sync: undefined }
  const url = await freshDatabase()
  const storage = Layer.mergeAll(
    IngestQueue.layer.pipe(Layer.provide(layerQueueStore({ pollInterval: "20 millis" }))),
    layerTokenCipher(Redacted.make([randomBytes(32)]))
  ).pipe(Layer.provideMerge(Database.layer({ url: Option.some(url), dataDir: "unused" })))
  runtime = ManagedRuntime.make(
    BackfillChains.layer.pipe(
      Layer.provideMerge(IngestWorker.layer()),
      Layer.provideMerge(layerHistoryObserver),
      Layer.provideMerge(Backfills.Default),
      Layer.provideMerge(Connections.Default),
      Layer.provideMerge(Layer.mergeAll(
        Links.Default.pipe(Layer.provide(Layer.merge(Parked.layer, OnConnect.layer)), Layer.provideMerge(Accounts.Default)),
        Inbox.Default,
        RecordStore.Default,
        DataQuery.Default,
        Layer.succeed(Providers, new Map([[historyOnly.id, historyOnly]])),
        ActivityFiles.layerLocal(path.join(os.tmpdir(), "wearflow-withings-backfill-files"))
      )),
      Layer.provideMerge(Engine.layer({ runnerAddress: { host: "withings-backfill-test", port: 40_000 + Math.floor(Math.random() * 20_000) } })),
      Layer.provideMerge(Layer.succeed(BackfillSettings, { ...BackfillSettings.defaults, days: 10, retryBackoff: Duration.millis(10), budgetDays: 1000 })),
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

it("fetches each history type's windows, and announces historical.data.* per resource once their pages are processed", async () => {
  seedRecent(fake, WITHINGS_USER)
  seedIntraday(fake, WITHINGS_USER, [1, 2])
  const tokens = fake.connect(WITHINGS_USER)
  const { backfillId, userId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const providers = yield* Providers
    const teamId = yield* accounts.ensureTeamKey("withings-history", Redacted.make("withings-history-api-key"))
    const user = yield* accounts.createUser(teamId, "withings-history-user")
    const linked = yield* links.link(teamId, user.user_id, providers.get("withings")!, WITHINGS_USER, {
      accessToken: Redacted.make(tokens.access_token),
      state: { userid: WITHINGS_USER, scopes: ["user.metrics", "user.activity"] }
    })
    return { userId: user.user_id, backfillId: linked.backfillId! }
  }))
  expect(backfillId).toBeDefined()
  await run(startChain(backfillId))

  // The pages the chain commits are processed as ingest takers would, until the backfill is done.
  await eventually(async () => {
    await run(processWaiting)
    const [row] = await query<{ status: string }>("select status from backfills where id = $1", backfillId)
    return row?.status === "done" ? row : undefined
  }, 90_000)
  const windows = await query<{ type: string; status: string; completion: string | null }>(
    "select type, status, completion from backfill_windows where backfill_id = $1", backfillId)
  expect(windows.every((w) => w.status === "complete")).toBe(true)
  const notices = await query<{ event_type: string }>("select event_type from outbox where user_id = $1 and event_type like 'historical.data.%'", userId)
  const announced = new Set(notices.map((n) => n.event_type))
  for (const resource of ["body", "activity", "workouts", "sleep", "steps"]) expect(announced, resource).toContain(`historical.data.${resource}.created`)
  const stored = await query<{ resource: string }>("select distinct resource from records where user_id = $1", userId)
  for (const resource of ["body", "activity", "workouts", "sleep", "steps"]) expect(stored.map((r) => r.resource), resource).toContain(resource)
  const historical = await query<{ historical: boolean }>("select historical from outbox where user_id = $1 and record_id is not null", userId)
  expect(historical.length).toBeGreaterThan(0)
  expect(historical.every((e) => e.historical)).toBe(true)
}, 120_000)
