/**
 * Benchmark of the poll scheduler with the real Withings plugin against the fake Withings on
 * loopback: N connected users (each with the recorded examples' data), polled by one process on the
 * real engine and an embedded Postgres. The fake's rate limit is off, and so are the plugin's
 * shared budget and core's round budget. Figures only, never assertions.
 *
 * Scenarios, each measured over WITHINGS_BENCH_SECONDS once every connection has polled once:
 * - `interval`: every connection polls every WITHINGS_BENCH_INTERVAL: rounds a minute against
 *   the ideal N × 60 / interval;
 * - `back-to-back`: an interval of one millisecond: the scheduler's ceiling with Withings'
 *   rounds (a steady-state round asks each endpoint family once and finds nothing new);
 * - baseline: the same Withings poll and page commits called directly, N at a time, with no
 *   engine, lock or bookkeeping.
 *
 *   npm run bench:withings
 *     env: WITHINGS_BENCH_CONNECTIONS=100   WITHINGS_BENCH_SECONDS=20   WITHINGS_BENCH_INTERVAL="5 seconds"
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { SqlClient } from "@effect/sql"
import { ConfigProvider, Duration, Effect, Layer, Logger, LogLevel, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { Connections } from "../core/connections/connections.ts"
import { Links } from "../core/connections/links.ts"
import { layerTokenCipher } from "../core/crypto.ts"
import * as Engine from "../core/engine.ts"
import { Inbox, IngestQueue, layerQueueStore } from "../core/pipeline/inbox.ts"
import * as Parked from "../core/pipeline/parked.ts"
import { type PollAnswer, Providers } from "../core/provider.ts"
import * as Registry from "../core/registry.ts"
import * as Database from "../core/storage/database.ts"
import * as SyncOnConnect from "../core/sync/on-connect.ts"
import { syncPages } from "../core/sync/pages.ts"
import * as SyncPoll from "../core/sync/poll.ts"
import { SyncSettings } from "../core/sync/settings.ts"
import * as ApiKeyAuth from "../core/tenancy/api-key-auth.ts"
import { Accounts } from "../core/tenancy/accounts.ts"
import { plugin } from "../providers/withings/mod.ts"
import { startFakeWithings } from "../providers/withings/testing/fake-withings.ts"
import { startBenchPostgres } from "./postgres.ts"

const CONNECTIONS = Number(process.env.WITHINGS_BENCH_CONNECTIONS ?? 100)
const SECONDS = Number(process.env.WITHINGS_BENCH_SECONDS ?? 20)
const INTERVAL = Duration.decode((process.env.WITHINGS_BENCH_INTERVAL ?? "5 seconds") as Duration.DurationInput)

const withings = await startFakeWithings()
// Pages as large as Withings' (hundreds); the fake's default of 3 is for paging tests.
withings.state.pageSize = 200
// Each user holds the recorded measures, older than the first poll's look-back: after a first
// round that finds nothing new, every round is Withings' steady state (each family asked once).
const users = Array.from({ length: CONNECTIONS }, (_, i) => String(6_000_000_000 + i))
for (const id of users) withings.seed(id, ["measuregrps", "activities", "workouts", "devices"])

const env = new Map(Object.entries({
  WITHINGS_API_URL: withings.url,
  WITHINGS_AUTH_URL: `${withings.url}/oauth2_user/authorize2`,
  WITHINGS_CLIENT_ID: withings.clientId,
  WITHINGS_CLIENT_SECRET: withings.clientSecret,
  // The plugin's own share of Withings' limit is off, as is the fake's.
  WITHINGS_RATE_LIMIT: "1000000000"
}))

const postgres = await startBenchPostgres("wearflow-bench-withings-")
const Storage = Layer.mergeAll(IngestQueue.layer.pipe(Layer.provide(layerQueueStore({}))), layerTokenCipher(Redacted.make([randomBytes(32)]))).pipe(
  Layer.provideMerge(Database.layer({ url: Option.some(Redacted.make(postgres.url)), dataDir: postgres.dir, maxConnections: 40 }))
)
let interval = INTERVAL
const settings = Layer.effect(
  SyncSettings,
  Effect.succeed({
    ...SyncSettings.defaults,
    jitter: Duration.zero,
    budgetRounds: 1_000_000_000,
    startInterval: Duration.millis(200),
    get interval() {
      return interval
    }
  })
)
const Base = Layer.mergeAll(
  Links.Default.pipe(Layer.provide(Layer.merge(Parked.layer, SyncOnConnect.layer)), Layer.provideMerge(Accounts.Default)),
  Inbox.Default,
  FetchHttpClient.layer
).pipe(
  Layer.provideMerge(Engine.layer({ runnerAddress: { host: "bench-withings", port: 45_100 } })),
  Layer.provideMerge(settings),
  Layer.provideMerge(Storage)
)
const runtime = ManagedRuntime.make(
  SyncPoll.layerStarter.pipe(
    Layer.provideMerge(SyncPoll.layer),
    Layer.provideMerge(Connections.Default),
    Layer.provideMerge(Registry.layer([plugin], ConfigProvider.fromMap(env)).pipe(Layer.provide(ApiKeyAuth.layer))),
    Layer.provideMerge(Base),
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Warning))
  )
)
const run = <A, E>(effect: Effect.Effect<A, E, any>) => runtime.runPromise(effect as Effect.Effect<A, E, never>)
const totalRounds = () =>
  run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number; polled: number }>`select coalesce(sum(rounds), 0)::int as n, count(*) filter (where rounds > 0)::int as polled from connection_sync`)).then((r) => r[0]!)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Rounds a minute over SECONDS, once every connection has polled; and Withings requests a round. */
const measure = async () => {
  while ((await totalRounds()).polled < CONNECTIONS) await sleep(200)
  const start = await totalRounds()
  const requests = withings.state.counters.requests
  const t0 = performance.now()
  await sleep(SECONDS * 1000)
  const end = await totalRounds()
  const rounds = end.n - start.n
  return { perMinute: (rounds / ((performance.now() - t0) / 1000)) * 60, requestsPerRound: (withings.state.counters.requests - requests) / Math.max(1, rounds) }
}

await run(Effect.gen(function* () {
  const accounts = yield* Accounts
  const links = yield* Links
  const provider = (yield* Providers).get("withings")!
  const teamId = yield* accounts.ensureTeamKey("bench", Redacted.make("bench-api-key"))
  yield* Effect.forEach(users, (id) =>
    Effect.gen(function* () {
      const user = yield* accounts.createUser(teamId, `bench-${id}`)
      const tokens = withings.connect(id, ["user.metrics", "user.activity"])
      yield* links.link(teamId, user.user_id, provider, id, {
        accessToken: Redacted.make(tokens.access_token),
        refreshToken: Redacted.make(tokens.refresh_token),
        accessTokenExpiresAt: new Date(Date.now() + tokens.expires_in * 1000),
        scopes: ["user.metrics", "user.activity"],
        state: { userid: id, scopes: ["user.metrics", "user.activity"] }
      })
    }), { concurrency: 8, discard: true })
}))

const atInterval = await measure()
const ideal = (CONNECTIONS * 60) / Duration.toSeconds(INTERVAL)

// Back-to-back: the next round is due at once; sleeping polls are woken so they start now.
interval = Duration.millis(1)
const { wake } = await import("../core/sync/workflows.ts")
const ids = await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ connection_id: string; provider_user_id: string }>`
  select s.connection_id, c.provider_user_id from connection_sync s join provider_connections c on c.id = s.connection_id`))
await run(Effect.forEach(ids, (r) => wake(r.connection_id), { discard: true }))
const backToBack = await measure()
interval = Duration.hours(1)

// Baseline: the same poll and page commits, N at a time, nothing else.
const baseline = await run(Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const inbox = yield* Inbox
  const connections = yield* Connections
  const sync = (yield* Providers).get("withings")!.sync!
  let rounds = 0
  const stopAt = performance.now() + SECONDS * 1000
  const t0 = performance.now()
  yield* Effect.forEach(ids, ({ connection_id, provider_user_id }) =>
    Effect.gen(function* () {
      const credentials = (yield* connections.credentialsFor("withings", { _tag: "UserId", id: provider_user_id }))!
      const [row] = yield* sql<{ cursor: string | null }>`select cursor from connection_sync where connection_id = ${connection_id}`
      let cursor: string | undefined = row?.cursor ?? undefined
      for (let round = 1_000_000; performance.now() < stopAt; round++) {
        const answer: PollAnswer = yield* sync.poll(credentials, cursor, syncPages(sql, inbox, { provider: "withings", connectionId: connection_id, round, providerUserId: provider_user_id }))
        if (answer._tag === "Polled") cursor = answer.cursor
        rounds++
      }
    }), { concurrency: "unbounded", discard: true })
  return (rounds / ((performance.now() - t0) / 1000)) * 60
}))

const f = (n: number) => Math.round(n).toLocaleString("en-US")
console.log(`Withings polls, ${CONNECTIONS} connections against the fake Withings (rate limits off), one process, ${SECONDS} s per scenario`)
console.log(`  interval ${Duration.format(INTERVAL)}: ${f(atInterval.perMinute)} connections polled/min (ideal ${f(ideal)}; ${(atInterval.perMinute / ideal).toFixed(2)}×), ${atInterval.requestsPerRound.toFixed(1)} Withings requests a round`)
console.log(`  back-to-back:  ${f(backToBack.perMinute)} connections polled/min, ${backToBack.requestsPerRound.toFixed(1)} Withings requests a round`)
console.log(`  baseline (the plugin's poll + page commits, no engine): ${f(baseline)} polls/min; scheduler/baseline ${(backToBack.perMinute / baseline).toFixed(2)}×`)
console.log(`  at Withings' 120 requests a minute, one application polls at most ${f(120 / Math.max(1, backToBack.requestsPerRound))} connections a minute`)

await runtime.dispose()
await withings.close()
await postgres.stop()
process.exit(0)
