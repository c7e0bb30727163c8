/**
 * Pull-style history: a provider (defined here) fetches its history range itself, page by
 * page from a loopback server, and commits each page to the inbox through the backfill's
 * `pages`; the real backfill chain runs on the real workflow engine and Postgres. A page is
 * committed once even when the request is tried again after a failure that followed its
 * commit, and `historical.data.<resource>.created` goes out only once every page is processed.
 * Pages are processed by the test (no ingest takers run), so the order is the test's to see.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import * as OnConnect from "@wearflow/core/backfill/on-connect"
import * as Parked from "@wearflow/core/pipeline/parked"
import { Backfills, layerHistoryObserver, startChain } from "@wearflow/core/backfill/backfills"
import * as BackfillChains from "@wearflow/core/backfill/chain"
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { Connections } from "@wearflow/core/connections/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Engine from "@wearflow/core/engine"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import { Inbox, INGEST_MAX_ATTEMPTS, IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { type BackfillAnswer, type Provider, Providers } from "@wearflow/core/provider"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import * as Database from "@wearflow/core/storage/database"
import { Duration, Effect, Either, Layer, ManagedRuntime, Option, Redacted, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { itemsOf } from "../providers/garmin/notifications.ts"
import { normalizers } from "../providers/garmin/normalize.ts"
import { freshDatabaseUrl } from "./support/database.ts"
import { eventually } from "./support/server.ts"

const DAY_MS = 86_400_000
const PAGE_SIZE = 2
const TOKEN = "pull-access-token"
const PROVIDER_USER = `pull-user-${randomBytes(3).toString("hex")}`
const NOW = Date.now()

// Nine days of history, one daily summary each, all inside the 10 days asked for and before the last day (live data).
const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0]
const history = Array.from({ length: 9 }, (_, i) => {
  const start = Math.floor((NOW - (i + 1.5) * DAY_MS) / 1000)
  return { ...daily, userId: PROVIDER_USER, summaryId: `pull-${i}`, startTimeInSeconds: start, calendarDate: new Date(start * 1000).toISOString().slice(0, 10) }
})

/** The provider's history API on loopback: `GET /history?start&end&page` (epoch ms), PAGE_SIZE records a page. */
const served: Array<{ start: number; end: number; page: number }> = []
const historyServer = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost")
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    res.writeHead(401).end()
    return
  }
  const start = Number(url.searchParams.get("start"))
  const end = Number(url.searchParams.get("end"))
  const page = Number(url.searchParams.get("page"))
  served.push({ start, end, page })
  const inRange = history.filter((r) => r.startTimeInSeconds * 1000 >= start && r.startTimeInSeconds * 1000 < end)
  const data = inRange.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)
  res.writeHead(200, { "content-type": "application/json" })
  res.end(JSON.stringify({ data, next: (page + 1) * PAGE_SIZE < inRange.length ? page + 1 : null }))
})
let historyBase = ""

/** Every commit the provider made: page number, whether it was stored, per window range. */
const commits: Array<{ start: number; page: number; stored: boolean }> = []
/** Fails the very first request once, right after its first page is committed (and processed). */
let failureInjected = false
/** Processes every inbox row of the provider not yet processed, as an ingest taker would. */
const processWaiting = async () => {
  const rows = await query<{ id: string }>("select id::text from inbox where provider = 'pullfit' and processed_at is null order by id")
  for (const row of rows) await run(Effect.flatMap(IngestWorker, (worker) => worker.process({ inboxId: Number(row.id) })))
}

const Page = Schema.Struct({ data: Schema.Array(Schema.Unknown), next: Schema.NullOr(Schema.Number) })

/** A pull-style provider: Garmin-shaped dailies (so Garmin's `itemsOf` and normalizer read them), history fetched by the plugin. */
const pullProvider: Provider = {
  id: "pullfit",
  name: "PullFit",
  itemsOf,
  normalizers: { dailies: normalizers.dailies },
  fetch: () => Effect.die(new Error("pullfit sends no pointers")),
  lifecycle: () => undefined,
  requiredPermissions: [],
  resourceScopes: {},
  auth: undefined,
  backfill: {
    types: [{ type: "dailies", resource: "activity", keys: ["dailies"], maxDays: 5 }],
    request: (credentials, _type, range, pages) =>
      Effect.gen(function* () {
        const client = yield* HttpClient.HttpClient
        for (let page = 0; ; page++) {
          const request = HttpClientRequest.get(`${historyBase}/history`).pipe(
            HttpClientRequest.setUrlParams({ start: String(range.start.getTime()), end: String(range.end.getTime()), page: String(page) }),
            HttpClientRequest.bearerToken(credentials.bearer!)
          )
          const body = yield* client.execute(request).pipe(Effect.flatMap((r) => r.json), Effect.flatMap(Schema.decodeUnknown(Page)), Effect.scoped)
          // The body names its user, as a notification would: itemsOf routes by it.
          const records = body.data.map((r) => ({ ...(r as object), userId: pages.providerUserId }))
          const stored = yield* pages.commit(page, { kind: "push", body: JSON.stringify({ dailies: records }), itemCount: records.length })
          commits.push({ start: range.start.getTime(), page, stored })
          if (!failureInjected) {
            failureInjected = true
            // The ingest worker takes the page at once, while the window is still being asked for.
            yield* Effect.promise(processWaiting)
            return { _tag: "Unavailable", message: "injected after the first page" } satisfies BackfillAnswer
          }
          if (body.next === null) return { _tag: "Fetched", pages: page + 1 } satisfies BackfillAnswer
        }
      }).pipe(
        Effect.provide(FetchHttpClient.layer),
        Effect.catchAll((e) => Effect.succeed<BackfillAnswer>({ _tag: "Unavailable", message: e._tag }))
      ),
    itemTime: (item) => {
      const seconds = (item.raw as { startTimeInSeconds?: unknown }).startTimeInSeconds
      return typeof seconds === "number" ? new Date(seconds * 1000) : undefined
    }
  }
}

const url = await freshDatabaseUrl()
const Storage = Layer.mergeAll(
  IngestQueue.layer.pipe(Layer.provide(layerQueueStore({ pollInterval: "20 millis" }))),
  layerTokenCipher(Redacted.make([randomBytes(32)]))
).pipe(Layer.provideMerge(Database.layer({ url: Option.some(url), dataDir: "unused" })))

const runtime = ManagedRuntime.make(
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
      Layer.succeed(Providers, new Map([[pullProvider.id, pullProvider]])),
      ActivityFiles.layerLocal(path.join(os.tmpdir(), "wearflow-backfill-pull-files"))
    )),
    Layer.provideMerge(Engine.layer({ runnerAddress: { host: "backfill-pull-test", port: 40_000 + Math.floor(Math.random() * 20_000) } })),
    Layer.provideMerge(Layer.succeed(BackfillSettings, { ...BackfillSettings.defaults, days: 10, retryBackoff: Duration.millis(10), budgetDays: 1000 })),
    Layer.provideMerge(Storage)
  )
)

beforeAll(async () => {
  await new Promise<void>((done) => historyServer.listen(0, "127.0.0.1", done))
  historyBase = `http://127.0.0.1:${(historyServer.address() as AddressInfo).port}`
})
afterAll(async () => {
  await runtime.dispose()
  await new Promise<void>((done) => historyServer.close(() => done()))
})

const run = <A, E>(effect: Effect.Effect<A, E, any>) => runtime.runPromise(effect as Effect.Effect<A, E, never>)
const query = <A extends object>(text: string, ...params: Array<unknown>) =>
  run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text, params)))

const windows = (backfillId: string) =>
  query<{ id: string; seq: number; status: string; completion: string | null; items: number; range_start: Date; range_end: Date }>(
    "select id, seq, status, completion, items, range_start, range_end from backfill_windows where backfill_id = $1 order by seq",
    backfillId
  )
const pagesOf = (windowId: string) =>
  query<{ page: number; inbox_id: string; processed: boolean }>(
    "select p.page, p.inbox_id::text, i.processed_at is not null as processed from backfill_pages p join inbox i on i.id = p.inbox_id where p.window_id = $1 order by p.page",
    windowId
  )
const historicalNotices = (userId: string) =>
  query<{ event_type: string; payload: any }>("select event_type, payload from outbox where user_id = $1 and event_type like 'historical.data.%'", userId)
const processPages = async (windowId: string) => {
  for (const page of await pagesOf(windowId)) {
    if (!page.processed) await run(Effect.flatMap(IngestWorker, (worker) => worker.process({ inboxId: Number(page.inbox_id) })))
  }
}

it("fetches the history range page by page, commits each page once despite a retry, and announces it only once every page is processed", async () => {
  const { userId, backfillId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const teamId = yield* accounts.ensureTeamKey("pull", Redacted.make("pull-api-key"))
    const user = yield* accounts.createUser(teamId, "pull-client-user")
    const linked = yield* links.link(teamId, user.user_id, pullProvider, PROVIDER_USER, { accessToken: Redacted.make(TOKEN) })
    return { userId: user.user_id, backfillId: linked.backfillId! }
  }))
  expect(backfillId).toBeDefined()
  await run(startChain(backfillId))

  // The newest window: fetched (page 0 once more after the injected failure), then waiting for its pages.
  const [newest] = await eventually(async () => {
    const all = await windows(backfillId)
    return all[0]?.status === "fetched" ? all : undefined
  }, 30_000)
  expect(commits.filter((c) => c.start === newest!.range_start.getTime()).map((c) => [c.page, c.stored])).toEqual([[0, true], [0, false], [1, true]])
  expect(served.filter((s) => s.start === newest!.range_start.getTime()).map((s) => s.page)).toEqual([0, 0, 1])
  const newestPages = await pagesOf(newest!.id)
  expect(newestPages.map((p) => [p.page, p.processed])).toEqual([[0, true], [1, false]])
  expect(newest!.items).toBe(4)
  // Not all processed yet: nothing announced, and the chain does not move on.
  expect(await historicalNotices(userId)).toEqual([])
  expect((await windows(backfillId))[1]!.status).toBe("scheduled")

  await processPages(newest!.id)
  const [, older] = await eventually(async () => {
    const all = await windows(backfillId)
    return all[0]!.status === "complete" && all[1]!.status === "fetched" ? all : undefined
  }, 30_000)
  expect((await windows(backfillId))[0]!.completion).toBe("fetched")
  // One window of the resource is still waiting for its pages: no notice yet.
  expect(await historicalNotices(userId)).toEqual([])
  expect((await pagesOf(older!.id)).map((p) => p.page)).toEqual([0, 1, 2])

  await processPages(older!.id)
  const notices = await eventually(async () => {
    const found = await historicalNotices(userId)
    return found.length > 0 ? found : undefined
  }, 30_000)
  expect(notices.map((n) => n.event_type)).toEqual(["historical.data.activity.created"])
  expect(notices[0]!.payload.data.start_date).toBe(older!.range_start.toISOString())
  expect(notices[0]!.payload.data.end_date).toBe(newest!.range_end.toISOString())
  await eventually(async () => {
    const [row] = await query<{ status: string }>("select status from backfills where id = $1", backfillId)
    return row?.status === "done" ? row : undefined
  }, 30_000)

  // Every fetched record stored once; the inbox holds one row per page; their events are
  // historical, those of the page processed while its window was still being asked for too.
  const range = Either.getOrThrow(parseDateRange("2000-01-01", "2100-01-01"))
  const stored = await run(Effect.flatMap(DataQuery, (q) => q.summaries(userId, "activity", range)))
  expect(stored).toHaveLength(history.length)
  const [inbox] = await query<{ n: number }>("select count(*)::int as n from inbox where provider = 'pullfit'")
  expect(inbox!.n).toBe(5)
  const recordEvents = await query<{ historical: boolean }>("select historical from outbox where user_id = $1 and record_id is not null", userId)
  expect(recordEvents.length).toBeGreaterThan(0)
  expect(recordEvents.every((e) => e.historical)).toBe(true)
}, 120_000)

it("a fetched window whose page can never be processed (its ingest job gave up) fails; the chain goes on and nothing is announced", async () => {
  const { userId, backfillId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const teamId = yield* accounts.ensureTeamKey("pull", Redacted.make("pull-api-key"))
    const user = yield* accounts.createUser(teamId, "pull-client-user-2")
    const linked = yield* links.link(teamId, user.user_id, pullProvider, `${PROVIDER_USER}-2`, { accessToken: Redacted.make(TOKEN) })
    return { userId: user.user_id, backfillId: linked.backfillId! }
  }))
  await run(startChain(backfillId))
  const [newest] = await eventually(async () => {
    const all = await windows(backfillId)
    return all[0]?.status === "fetched" ? all : undefined
  }, 30_000)
  const [first, second] = await pagesOf(newest!.id)
  // Page 0's ingest used up its attempts (as a body that always breaks the worker would); page 1 is processed.
  await query(`update ingest_queue set attempts = ${INGEST_MAX_ATTEMPTS} where id = $1`, `inbox-${first!.inbox_id}`)
  await run(Effect.flatMap(IngestWorker, (worker) => worker.process({ inboxId: Number(second!.inbox_id) })))

  const [failed, older] = await eventually(async () => {
    const all = await windows(backfillId)
    return all[0]!.status === "failed" && all[1]!.status === "fetched" ? all : undefined
  }, 30_000)
  expect(failed!.completion).toBe("failed")
  await processPages(older!.id)
  await eventually(async () => {
    const [row] = await query<{ status: string; error: string | null }>("select status, error from backfills where id = $1", backfillId)
    return row?.status === "done" ? row : undefined
  }, 30_000)
  expect((await windows(backfillId)).map((w) => w.status)).toEqual(["failed", "complete"])
  expect(await historicalNotices(userId)).toEqual([])
}, 120_000)
