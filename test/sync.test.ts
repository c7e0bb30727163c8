/**
 * Polling: a provider (defined here) whose `sync.poll` reads a loopback server's change log
 * since the connection's cursor, page by page; the real poll workflow runs on the real engine
 * and Postgres. Linking starts the poll; its first round fetches everything; a change plus a
 * change notification (a lifecycle item saying the data changed) wakes the poll, whose next
 * round fetches only the change (a revision stored as `.updated`); a round failing after its
 * first page is committed is tried again from the same cursor without storing that page
 * twice; a round another caller tries while one runs is refused by the connection's lock;
 * disconnecting ends the poll; two processes on one database never poll one connection at
 * once, and a wake from either reaches the poll. The poll hands over to a fresh execution every two rounds, so
 * all of this also holds across hand-overs. Pages are processed by the test (no ingest takers run).
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import * as Parked from "@wearflow/core/pipeline/parked"
import { Connections } from "@wearflow/core/connections/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Engine from "@wearflow/core/engine"
import { ActivityFiles } from "@wearflow/core/pipeline/files"
import * as History from "@wearflow/core/pipeline/history"
import { Inbox, IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import { RecordStore } from "@wearflow/core/pipeline/store"
import { type PollAnswer, type Provider, Providers } from "@wearflow/core/provider"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import * as Database from "@wearflow/core/storage/database"
import * as SyncOnConnect from "@wearflow/core/sync/on-connect"
import * as SyncPoll from "@wearflow/core/sync/poll"
import { SyncRounds } from "@wearflow/core/sync/rounds"
import { SyncSettings } from "@wearflow/core/sync/settings"
import { SyncStatus } from "@wearflow/core/sync/status"
import { ConnectionPoll, wake } from "@wearflow/core/sync/workflows"
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
const TOKEN = "poll-access-token"
const PROVIDER_USER = `poll-user-${randomBytes(3).toString("hex")}`
const NOW = Date.now()

const daily = JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")).dailies[0]
const dailyOf = (i: number, steps: number, userId = PROVIDER_USER) => {
  const start = Math.floor((NOW - (i + 1.5) * DAY_MS) / 1000)
  return { ...daily, userId, summaryId: `poll-${userId}-${i}`, steps, startTimeInSeconds: start, calendarDate: new Date(start * 1000).toISOString().slice(0, 10) }
}

/** The provider's change log: every write gets the next sequence number; the cursor is the last one seen. */
const changes: Array<{ seq: number; record: Record<string, unknown> }> = []
const write = (record: Record<string, unknown>) => changes.push({ seq: changes.length + 1, record })

/** `GET /changes?since&page`: the changes after `since`, PAGE_SIZE a page; `cursor` is the newest of them. */
const served: Array<{ since: number; page: number }> = []
let inFlight = 0
let maxInFlight = 0
/** Requests in flight per provider user, and the most ever at once. */
const inFlightOf = new Map<string, number>()
const maxInFlightOf = new Map<string, number>()
/** While closed, answers wait (a round held in flight). */
let gate: Promise<void> = Promise.resolve()
let openGate = () => {}
const changeServer = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost")
  const user = url.searchParams.get("user") ?? ""
  inFlight++
  maxInFlight = Math.max(maxInFlight, inFlight)
  inFlightOf.set(user, (inFlightOf.get(user) ?? 0) + 1)
  maxInFlightOf.set(user, Math.max(maxInFlightOf.get(user) ?? 0, inFlightOf.get(user)!))
  try {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401).end()
      return
    }
    const refusal = refusals.get(user)?.shift()
    if (refusal !== undefined) {
      res.writeHead(refusal).end()
      return
    }
    const since = Number(url.searchParams.get("since"))
    const page = Number(url.searchParams.get("page"))
    served.push({ since, page })
    await gate
    const after = changes.filter((c) => c.seq > since && c.record.userId === user)
    const data = after.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map((c) => c.record)
    res.writeHead(200, { "content-type": "application/json" })
    res.end(JSON.stringify({ data, more: (page + 1) * PAGE_SIZE < after.length, cursor: after.at(-1)?.seq ?? since }))
  } finally {
    inFlight--
    inFlightOf.set(user, inFlightOf.get(user)! - 1)
  }
})
let changeBase = ""
/** Statuses to answer a provider user's next requests with, instead of their changes. */
const refusals = new Map<string, Array<number>>()

/** Every commit the provider made: the cursor it polled from, the page, whether it was stored. */
const commits: Array<{ since: number; page: number; stored: boolean }> = []
/** Makes the next round fail right after committing its first page. */
let failAfterFirstPage = false

const Page = Schema.Struct({ data: Schema.Array(Schema.Unknown), more: Schema.Boolean, cursor: Schema.Number })

const pollProvider: Provider = {
  id: "pollfit",
  name: "PollFit",
  // A `hint` body is a change notification naming its user; the rest are Garmin-shaped dailies.
  itemsOf: (kind, body) =>
    kind === "hint"
      ? [{ key: "changed", index: 0, user: { _tag: "UserId", id: (body as { user: string }).user }, raw: body, carries: "record" }]
      : itemsOf(kind, body),
  normalizers: { dailies: normalizers.dailies },
  fetch: () => Effect.die(new Error("pollfit sends no pointers")),
  lifecycle: (item) => (item.key === "changed" ? { _tag: "DataChanged" } : undefined),
  requiredPermissions: [],
  resourceScopes: {},
  auth: undefined,
  backfill: undefined,
  sync: {
    interval: Duration.hours(1),
    poll: (credentials, cursor, pages) =>
      Effect.gen(function* () {
        const client = yield* HttpClient.HttpClient
        const since = Number(cursor ?? "0")
        for (let page = 0; ; page++) {
          const request = HttpClientRequest.get(`${changeBase}/changes`).pipe(
            HttpClientRequest.setUrlParams({ since: String(since), page: String(page), user: pages.providerUserId }),
            HttpClientRequest.bearerToken(credentials.bearer!)
          )
          const response = yield* client.execute(request)
          if (response.status === 403) return { _tag: "Forbidden", message: "access revoked" } satisfies PollAnswer
          if (response.status === 429) return { _tag: "RateLimited", retryAfter: Duration.millis(50) } satisfies PollAnswer
          const body = yield* response.json.pipe(Effect.flatMap(Schema.decodeUnknown(Page)))
          const stored = yield* pages.commit(page, { kind: "push", body: JSON.stringify({ dailies: body.data }), itemCount: body.data.length })
          commits.push({ since, page, stored })
          if (failAfterFirstPage && pages.providerUserId === PROVIDER_USER) {
            failAfterFirstPage = false
            return { _tag: "Unavailable", message: "injected after the first page" } satisfies PollAnswer
          }
          if (!body.more) return { _tag: "Polled", cursor: String(body.cursor), more: false } satisfies PollAnswer
        }
      }).pipe(
        Effect.scoped,
        Effect.provide(FetchHttpClient.layer),
        Effect.catchAll((e) => Effect.succeed<PollAnswer>({ _tag: "Unavailable", message: e._tag }))
      )
  }
}

const url = await freshDatabaseUrl()
const KEY = randomBytes(32)
const Storage = () => Layer.mergeAll(
  IngestQueue.layer.pipe(Layer.provide(layerQueueStore({ pollInterval: "20 millis" }))),
  layerTokenCipher(Redacted.make([KEY]))
).pipe(Layer.provideMerge(Database.layer({ url: Option.some(url), dataDir: "unused" })))

/** A process: the poll workflow and its starter on an engine of its own, on the shared database. */
const makeRuntime = (host: string) => ManagedRuntime.make(
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
      Layer.succeed(Providers, new Map([[pollProvider.id, pollProvider]])),
      ActivityFiles.layerLocal(path.join(os.tmpdir(), "wearflow-sync-files"))
    )),
    Layer.provideMerge(Engine.layer({
      runnerAddress: { host, port: 40_000 + Math.floor(Math.random() * 20_000) },
      // When the second process joins, shards move to it once the first one's locks lapse.
      lockExpiration: "3 seconds"
    })),
    Layer.provideMerge(Layer.succeed(SyncSettings, {
      ...SyncSettings.defaults,
      jitter: Duration.zero,
      retryBackoff: Duration.millis(10),
      startInterval: Duration.millis(100),
      // Hands over to a fresh execution every two rounds: wakes and the lock must hold across.
      roundsPerExecution: 2
    })),
    Layer.provideMerge(Storage())
  )
)
const runtime = makeRuntime("sync-test")
/** A second process on the same database, started by the test that needs it. */
const other = makeRuntime("sync-test-other")

beforeAll(async () => {
  await new Promise<void>((done) => changeServer.listen(0, "127.0.0.1", done))
  changeBase = `http://127.0.0.1:${(changeServer.address() as AddressInfo).port}`
})
afterAll(async () => {
  await other.dispose()
  await runtime.dispose()
  await new Promise<void>((done) => changeServer.close(() => done()))
})

const run = <A, E>(effect: Effect.Effect<A, E, any>) => runtime.runPromise(effect as Effect.Effect<A, E, never>)
const query = <A extends object>(text: string, ...params: Array<unknown>) =>
  run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text, params)))

/** Processes every inbox row of the provider not yet processed, as an ingest taker would. */
const processWaiting = async () => {
  const rows = await query<{ id: string }>("select id::text from inbox where provider = 'pollfit' and processed_at is null order by id")
  for (const row of rows) await run(Effect.flatMap(IngestWorker, (worker) => worker.process({ inboxId: Number(row.id) })))
}
const syncRow = (connectionId: string) =>
  query<{ cursor: string | null; rounds: number; poll_id: string; ended_at: Date | null; end_reason: string | null; last_error: string | null }>(
    "select cursor, rounds, poll_id::text, ended_at, end_reason, last_error from connection_sync where connection_id = $1",
    connectionId
  ).then((rows) => rows[0])
const afterRound = (connectionId: string, rounds: number) =>
  eventually(async () => {
    const row = await syncRow(connectionId)
    return row !== undefined && row.rounds >= rounds ? row : undefined
  }, 30_000)
const summaries = (userId: string) =>
  run(Effect.flatMap(DataQuery, (q) => q.summaries(userId, "activity", Either.getOrThrow(parseDateRange("2000-01-01", "2100-01-01")))))

it("polls a linked connection from its cursor: everything first, then only what changed once woken; a retried round stores no page twice; one round at a time; disconnecting ends the poll", async () => {
  for (let i = 0; i < 3; i++) write(dailyOf(i, 1000 + i))
  const { teamId, userId, connectionId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const sql = yield* SqlClient.SqlClient
    const teamId = yield* accounts.ensureTeamKey("poll", Redacted.make("poll-api-key"))
    const user = yield* accounts.createUser(teamId, "poll-client-user")
    yield* links.link(teamId, user.user_id, pollProvider, PROVIDER_USER, { accessToken: Redacted.make(TOKEN) })
    const [row] = yield* sql<{ id: string }>`select id from provider_connections where user_id = ${user.user_id}`
    return { teamId, userId: user.user_id, connectionId: row!.id }
  }))

  // Linking started the poll; its first round fetched all three changes in two pages.
  const first = await afterRound(connectionId, 1)
  expect(first.cursor).toBe("3")
  expect(served).toEqual([{ since: 0, page: 0 }, { since: 0, page: 1 }])
  await processWaiting()
  expect(await summaries(userId)).toHaveLength(3)
  const [waiting] = await run(Effect.flatMap(SyncStatus, (status) => status.list(teamId, userId)))
  expect(waiting).toMatchObject({ provider: "pollfit", cursor: "3", rounds: 1, state: "waiting", last_error: null })
  expect(waiting!.last_poll_at).not.toBeNull()
  // The interval is an hour: only a wake polls again.
  expect(new Date(waiting!.next_poll_at!).getTime()).toBeGreaterThan(Date.now() + 30 * 60_000)

  // A revision on the provider's side, and its change notification: it wakes the poll, whose next round fetches only it.
  write(dailyOf(1, 5555))
  await run(Effect.flatMap(Inbox, (inbox) => inbox.commit({ provider: "pollfit", kind: "hint", body: JSON.stringify({ user: PROVIDER_USER }), itemCount: 1 })))
  await processWaiting()
  const second = await afterRound(connectionId, 2)
  expect(second.cursor).toBe("4")
  expect(served.slice(2)).toEqual([{ since: 3, page: 0 }])
  await processWaiting()
  const updated = await query<{ event_type: string }>("select event_type from outbox where user_id = $1 and event_type like '%.updated'", userId)
  expect(updated).toHaveLength(1)
  expect((await summaries(userId)).some((s: any) => JSON.stringify(s).includes("5555"))).toBe(true)

  // A round failing after its first page: tried again from the same cursor, page 0 not stored twice.
  for (let i = 3; i < 6; i++) write(dailyOf(i, 2000 + i))
  failAfterFirstPage = true
  await run(wake(connectionId))
  const third = await afterRound(connectionId, 3)
  expect(third.cursor).toBe("7")
  expect(commits.filter((c) => c.since === 4).map((c) => [c.page, c.stored])).toEqual([[0, true], [0, false], [1, true]])
  const [pages] = await query<{ n: number }>("select count(*)::int as n from sync_pages where connection_id = $1 and round = 3", connectionId)
  expect(pages!.n).toBe(2)
  await processWaiting()
  expect(await summaries(userId)).toHaveLength(6)

  // A round held in flight: another attempt at the connection is refused by its lock and asks nothing.
  gate = new Promise((open) => (openGate = open))
  write(dailyOf(6, 3006))
  await run(wake(connectionId))
  await eventually(async () => (inFlight === 1 ? true : undefined), 30_000)
  const requestsBefore = served.length
  const current = (await syncRow(connectionId))!
  const refused = await run(Effect.flatMap(SyncRounds, (rounds) => rounds.round(connectionId, current.poll_id)))
  expect(refused._tag).toBe("Retry")
  expect(served.length).toBe(requestsBefore)
  openGate()
  const fourth = await afterRound(connectionId, 4)
  expect(fourth.cursor).toBe("8")
  expect(maxInFlight).toBe(1)

  // Disconnecting ends the poll now, not after its hour.
  await run(Effect.flatMap(Connections, (connections) => connections.disconnect(teamId, userId, "pollfit")))
  const ended = await eventually(async () => {
    const row = await syncRow(connectionId)
    return row?.ended_at ? row : undefined
  }, 30_000)
  expect(ended.end_reason).toBe("the connection is disconnected")
  // The poll handed over to fresh executions on the way.
  expect(ended.poll_id).not.toBe(first.poll_id)
  const executionId = await run(ConnectionPoll.executionId({ connectionId, pollId: ended.poll_id, provider: "pollfit" }))
  await eventually(async () => ((await run(ConnectionPoll.poll(executionId))) !== undefined ? true : undefined), 30_000)
  const [status] = await run(Effect.flatMap(SyncStatus, (status) => status.list(teamId)))
  expect(status).toMatchObject({ state: "ended", cursor: "8" })
}, 120_000)

it("two processes on one database never poll one connection at once, and a wake from either reaches the poll", async () => {
  const user2 = `${PROVIDER_USER}-2`
  for (let i = 0; i < 3; i++) write(dailyOf(i, 100 + i, user2))
  await other.runPromise(Effect.flatMap(SqlClient.SqlClient, () => Effect.void))
  const { connectionId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const sql = yield* SqlClient.SqlClient
    const teamId = yield* accounts.ensureTeamKey("poll", Redacted.make("poll-api-key"))
    const user = yield* accounts.createUser(teamId, "poll-client-user-2")
    yield* links.link(teamId, user.user_id, pollProvider, user2, { accessToken: Redacted.make(TOKEN) })
    const [row] = yield* sql<{ id: string }>`select id from provider_connections where user_id = ${user.user_id}`
    return { connectionId: row!.id }
  }))
  await afterRound(connectionId, 1)
  for (let round = 2; round <= 7; round++) {
    write(dailyOf(round + 2, 200 + round, user2))
    const from = round % 2 === 0 ? other : runtime
    await from.runPromise(wake(connectionId) as Effect.Effect<boolean, never, never>)
    const row = await afterRound(connectionId, round)
    expect(row.cursor).toBe(String(changes.filter((c) => c.record.userId === user2).at(-1)!.seq))
  }
  expect(maxInFlightOf.get(user2)).toBe(1)
}, 120_000)

it("a rate-limited round waits and is tried again; a refused one ends the poll and tells the user's team", async () => {
  const user3 = `${PROVIDER_USER}-3`
  write(dailyOf(0, 300, user3))
  refusals.set(user3, [429, 429])
  const { userId, connectionId } = await run(Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const sql = yield* SqlClient.SqlClient
    const teamId = yield* accounts.ensureTeamKey("poll", Redacted.make("poll-api-key"))
    const user = yield* accounts.createUser(teamId, "poll-client-user-3")
    yield* links.link(teamId, user.user_id, pollProvider, user3, { accessToken: Redacted.make(TOKEN) })
    const [row] = yield* sql<{ id: string }>`select id from provider_connections where user_id = ${user.user_id}`
    return { userId: user.user_id, connectionId: row!.id }
  }))
  // Two answers of 429, then the round goes through from the first cursor.
  const first = await afterRound(connectionId, 1)
  expect(first.cursor).toBe(String(changes.filter((c) => c.record.userId === user3).at(-1)!.seq))
  expect(first.last_error).toBeNull()
  expect(refusals.get(user3)).toEqual([])

  refusals.set(user3, [403])
  write(dailyOf(1, 301, user3))
  await run(wake(connectionId))
  const ended = await eventually(async () => {
    const row = await syncRow(connectionId)
    return row?.ended_at ? row : undefined
  }, 30_000)
  expect(ended).toMatchObject({ end_reason: "the provider refused the poll", last_error: "access revoked", rounds: 1, cursor: first.cursor })
  const errors = await query<{ payload: any }>("select payload from outbox where user_id = $1 and event_type = 'provider.connection.error'", userId)
  expect(errors.map((e) => e.payload.data.error_type)).toEqual(["provider_credential_error"])
  // The connection is marked, as a refused token refresh marks it: no more refreshes until the user connects again.
  expect(await query<{ last_error: string }>("select last_error from provider_connections where id = $1", connectionId)).toEqual([{ last_error: "provider_credential_error" }])
  // An ended poll is not woken.
  expect(await run(wake(connectionId))).toBe(false)
}, 120_000)
