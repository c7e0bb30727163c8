/**
 * Benchmark of the poll scheduler (core/sync): N connections of a provider defined here,
 * whose poll reads a loopback change log (one page of one record a round, committed to the
 * inbox), polled by one process on the real engine and an embedded Postgres. The provider's
 * rate limit is off (the budget is unbounded). Figures only, never assertions.
 *
 * Two scenarios, each measured over SYNC_BENCH_SECONDS once every connection has polled once:
 * - `interval`: every connection sleeps SYNC_BENCH_INTERVAL between rounds (a durable clock):
 *   rounds a minute against the ideal N × 60 / interval;
 * - `back-to-back`: the poll always answers `more` (no sleep): the scheduler's ceiling,
 *   against the baseline of the same poll and page commits called directly, N at a time,
 *   with no engine, lock or bookkeeping.
 *
 *   npm run bench:sync
 *     env: SYNC_BENCH_CONNECTIONS=200   SYNC_BENCH_SECONDS=20   SYNC_BENCH_INTERVAL="5 seconds"
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Logger, LogLevel, ManagedRuntime, Option, Redacted, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { Connections } from "../core/connections/connections.ts"
import { Links } from "../core/connections/links.ts"
import { layerTokenCipher } from "../core/crypto.ts"
import * as Engine from "../core/engine.ts"
import { Inbox, IngestQueue, layerQueueStore } from "../core/pipeline/inbox.ts"
import * as Parked from "../core/pipeline/parked.ts"
import { type PollAnswer, type Provider, Providers, type SyncPages } from "../core/provider.ts"
import * as Database from "../core/storage/database.ts"
import * as SyncOnConnect from "../core/sync/on-connect.ts"
import { syncPages } from "../core/sync/pages.ts"
import * as SyncPoll from "../core/sync/poll.ts"
import { SyncSettings } from "../core/sync/settings.ts"
import { Accounts } from "../core/tenancy/accounts.ts"
import { startBenchPostgres } from "./postgres.ts"

const CONNECTIONS = Number(process.env.SYNC_BENCH_CONNECTIONS ?? 200)
const SECONDS = Number(process.env.SYNC_BENCH_SECONDS ?? 20)
const INTERVAL = Duration.decode((process.env.SYNC_BENCH_INTERVAL ?? "5 seconds") as Duration.DurationInput)
const TOKEN = "bench-token"

/** The change log: every request sees one new record after its cursor. */
const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost")
  const since = Number(url.searchParams.get("since"))
  res.writeHead(200, { "content-type": "application/json" })
  res.end(JSON.stringify({ data: [{ id: since + 1, user: url.searchParams.get("user") }], cursor: since + 1 }))
})
await new Promise<void>((done) => server.listen(0, "127.0.0.1", done))
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

const Page = Schema.Struct({ data: Schema.Array(Schema.Unknown), cursor: Schema.Number })
let more = false
const poll = (cursor: string | undefined, pages: SyncPages) =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const since = Number(cursor ?? "0")
    const request = HttpClientRequest.get(`${base}/changes`).pipe(
      HttpClientRequest.setUrlParams({ since: String(since), user: pages.providerUserId }),
      HttpClientRequest.bearerToken(TOKEN)
    )
    const body = yield* client.execute(request).pipe(Effect.flatMap((r) => r.json), Effect.flatMap(Schema.decodeUnknown(Page)), Effect.scoped)
    yield* pages.commit(0, { kind: "bench", body: JSON.stringify(body), itemCount: body.data.length })
    return { _tag: "Polled", cursor: String(body.cursor), more } satisfies PollAnswer
  }).pipe(Effect.provide(FetchHttpClient.layer), Effect.catchAll((e) => Effect.succeed<PollAnswer>({ _tag: "Unavailable", message: e._tag })))

const provider: Provider = {
  id: "benchpoll",
  name: "BenchPoll",
  itemsOf: () => [],
  normalizers: {},
  fetch: () => Effect.die(new Error("no pointers")),
  lifecycle: () => undefined,
  requiredPermissions: [],
  resourceScopes: {},
  auth: undefined,
  backfill: undefined,
  sync: { interval: INTERVAL, poll: (_credentials, cursor, pages) => poll(cursor, pages) }
}

const postgres = await startBenchPostgres("wearflow-bench-sync-")
const Storage = Layer.mergeAll(IngestQueue.layer.pipe(Layer.provide(layerQueueStore({}))), layerTokenCipher(Redacted.make([randomBytes(32)]))).pipe(
  Layer.provideMerge(Database.layer({ url: Option.some(Redacted.make(postgres.url)), dataDir: postgres.dir, maxConnections: 40 }))
)
const runtime = ManagedRuntime.make(
  SyncPoll.layerStarter.pipe(
    Layer.provideMerge(SyncPoll.layer),
    Layer.provideMerge(Connections.Default),
    Layer.provideMerge(Layer.mergeAll(
      Links.Default.pipe(Layer.provide(Layer.merge(Parked.layer, SyncOnConnect.layer)), Layer.provideMerge(Accounts.Default)),
      Inbox.Default,
      Layer.succeed(Providers, new Map([[provider.id, provider]]))
    )),
    Layer.provideMerge(Engine.layer({ runnerAddress: { host: "bench-sync", port: 45_000 } })),
    Layer.provideMerge(Layer.succeed(SyncSettings, { ...SyncSettings.defaults, jitter: Duration.zero, budgetRounds: 1_000_000_000, startInterval: Duration.millis(200) })),
    Layer.provideMerge(Storage),
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Warning))
  )
)
const run = <A, E>(effect: Effect.Effect<A, E, any>) => runtime.runPromise(effect as Effect.Effect<A, E, never>)
const totalRounds = () =>
  run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number; polled: number }>`select coalesce(sum(rounds), 0)::int as n, count(*) filter (where rounds > 0)::int as polled from connection_sync`)).then((r) => r[0]!)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Rounds a minute over SECONDS, once every connection has polled. */
const measure = async () => {
  while ((await totalRounds()).polled < CONNECTIONS) await sleep(200)
  const start = await totalRounds()
  const t0 = performance.now()
  await sleep(SECONDS * 1000)
  const end = await totalRounds()
  return ((end.n - start.n) / ((performance.now() - t0) / 1000)) * 60
}

await run(Effect.gen(function* () {
  const accounts = yield* Accounts
  const links = yield* Links
  const teamId = yield* accounts.ensureTeamKey("bench", Redacted.make("bench-api-key"))
  yield* Effect.forEach(Array.from({ length: CONNECTIONS }, (_, i) => i), (i) =>
    Effect.flatMap(accounts.createUser(teamId, `bench-${i}`), (user) =>
      links.link(teamId, user.user_id, provider, `bench-user-${i}`, { accessToken: Redacted.make(TOKEN) })), { concurrency: 8, discard: true })
}))

const intervalRate = await measure()
const ideal = (CONNECTIONS * 60) / Duration.toSeconds(INTERVAL)

// Back-to-back: every poll asks for another round at once; woken so sleeping polls start now.
more = true
const { wake } = await import("../core/sync/workflows.ts")
const ids = await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ connection_id: string }>`select connection_id from connection_sync`))
await run(Effect.forEach(ids, (r) => wake(r.connection_id), { discard: true }))
const backToBack = await measure()

// Baseline: the same poll and page commits, N at a time, nothing else.
const baseline = await run(Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const inbox = yield* Inbox
  let rounds = 0
  const stopAt = performance.now() + SECONDS * 1000
  const t0 = performance.now()
  yield* Effect.forEach(Array.from({ length: CONNECTIONS }, (_, i) => i), (i) =>
    Effect.gen(function* () {
      let cursor: string | undefined = undefined
      for (let round = 1_000_000; performance.now() < stopAt; round++) {
        const connectionId = ids[i]!.connection_id
        const answer: PollAnswer = yield* poll(cursor, syncPages(sql, inbox, { provider: provider.id, connectionId, round, providerUserId: `bench-user-${i}` }))
        if (answer._tag === "Polled") cursor = answer.cursor
        rounds++
      }
    }), { concurrency: "unbounded", discard: true })
  return (rounds / ((performance.now() - t0) / 1000)) * 60
}))

const f = (n: number) => Math.round(n).toLocaleString("en-US")
console.log(`poll scheduler, ${CONNECTIONS} connections, one process, ${SECONDS} s per scenario`)
console.log(`  interval ${Duration.format(INTERVAL)}: ${f(intervalRate)} rounds/min (ideal ${f(ideal)}; ${(intervalRate / ideal).toFixed(2)}×)`)
console.log(`  back-to-back:  ${f(backToBack)} rounds/min`)
console.log(`  baseline (poll + page commit, no engine): ${f(baseline)} rounds/min; scheduler/baseline ${(backToBack / baseline).toFixed(2)}×`)

await runtime.dispose()
server.close()
await postgres.stop()
process.exit(0)
