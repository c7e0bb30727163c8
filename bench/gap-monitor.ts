/**
 * Benchmark of the silent-gap monitor (core/pipeline/gap-monitor.ts): one round over
 * `data_arrivals` as a deployment of USERS users with RESOURCES resources each would have it
 * after DAYS days (one row per user, resource and day), a tenth of them silent for three days.
 * Two figures: the first round (it opens every alert), and a steady round (nothing changes,
 * the usual case every interval). Anchor, same run: one plain scan of the daily rows
 * (`count(*)`, `max(last_at)` grouped per user, provider and resource) — what a rule over every
 * connection costs without the latest-arrival table (`connection_arrivals`).
 *
 * Also the arrivals sink (core/pipeline/data-arrivals.ts) draining EVENTS outbox events (20 in
 * a row per user, as a notification brings a user's records together) through
 * the real sink runner; anchor: the same runner draining the same events into a sink that does
 * nothing (the reading alone).
 *
 *   bun bench/gap-monitor.ts
 *     env: GAP_BENCH_USERS=10000  GAP_BENCH_RESOURCES=6  GAP_BENCH_DAYS=37  GAP_BENCH_EVENTS=100000
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Option, Redacted } from "effect"
import * as DataArrivals from "../core/pipeline/data-arrivals.ts"
import * as GapMonitor from "../core/pipeline/gap-monitor.ts"
import * as SinkRunner from "../core/pipeline/sink-runner.ts"
import type { EntrySink } from "../core/sink.ts"
import * as Database from "../core/storage/database.ts"
import { startBenchPostgres } from "./postgres.ts"
import { ms, rate, report } from "./report.ts"

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const USERS = env("GAP_BENCH_USERS", 10_000)
const RESOURCES = env("GAP_BENCH_RESOURCES", 6)
const DAYS = env("GAP_BENCH_DAYS", 37)
const EVENTS = env("GAP_BENCH_EVENTS", 100_000)

const postgres = await startBenchPostgres("wearflow-gap-bench-")
const runtime = ManagedRuntime.make(
  Database.layer({ url: Option.some(Redacted.make(postgres.url)), dataDir: postgres.dir }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)))
)
const run = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) => runtime.runPromise(effect)
const timed = async <A>(f: () => Promise<A>) => {
  const start = performance.now()
  const value = await f()
  return { value, ms: performance.now() - start }
}

try {
  await run(Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`insert into teams (id, name) values ('00000000-0000-0000-0000-000000000001', 'bench')`
    yield* sql`insert into users (id, team_id, client_user_id)
               select gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'u' || g from generate_series(1, ${USERS}) g`
    yield* sql`insert into provider_connections (id, user_id, provider, provider_user_id)
               select gen_random_uuid(), id, 'garmin', client_user_id from users`
    // Every user daily for DAYS days; every tenth stopped three days ago.
    yield* sql`insert into data_arrivals (user_id, provider, resource, day, team_id, events, last_at)
               select u.id, 'garmin', 'resource_' || r, current_date - d, u.team_id, 3, (current_date - d)::timestamptz + interval '12 hours'
               from (select id, team_id, row_number() over () as n from users) u, generate_series(1, ${RESOURCES}) r, generate_series(0, ${DAYS - 1}) d
               where u.n % 10 <> 0 or d >= 3`
    yield* sql`insert into connection_arrivals (user_id, provider, resource, team_id, last_at, last_day)
               select user_id, provider, resource, team_id, max(last_at), max(day) from data_arrivals group by 1, 2, 3, 4`
    yield* sql`insert into provider_arrivals (provider, last_received_at) values ('garmin', now())`
    yield* sql`analyze`
  }))
  const rows = await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`select count(*)::int as n from data_arrivals`))
  const round = await run(Effect.map(GapMonitor.make(GapMonitor.defaults), (m) => m.round))
  const first = await timed(() => run(round))
  const steady = await timed(() => run(round))
  const scan = await timed(() =>
    run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`select user_id, provider, resource, count(*), max(last_at) from data_arrivals group by 1, 2, 3`))
  )
  // Outbox events about records of the first users, as the store appends them.
  await run(Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`insert into records (id, user_id, provider, resource, source_id, data, content_hash, inbox_id)
               select gen_random_uuid(), u.id, 'garmin', 'resource_' || (g % ${RESOURCES} + 1), 's' || g, '{}', '\\x00', 0
               from generate_series(1, ${EVENTS}) g join (select id, row_number() over () as n from users) u on u.n = (g / 20) % ${USERS} + 1`
    yield* sql`insert into outbox (event_id, event_type, team_id, user_id, record_id, payload)
               select gen_random_uuid(), 'daily.data.' || r.resource || '.created', '00000000-0000-0000-0000-000000000001', r.user_id, r.id, '{}'
               from records r`
  }))
  const drain = (sink: Parameters<typeof SinkRunner.make>[0]) =>
    timed(() => run(Effect.gen(function* () {
      const runner = yield* SinkRunner.make(sink)
      let n = 0
      for (;;) {
        const round = yield* runner.once
        if (round._tag !== "Delivered" || round.count === 0) return n
        n += round.count
      }
    })))
  const nothing: EntrySink = { id: "bench-nothing", reads: "entries", health: Effect.void, deliver: () => Effect.void }
  const bare = await drain(nothing)
  const counted = await drain(await run(DataArrivals.make))

  console.log(`${rows[0]!.n} arrival rows (${USERS} users × ${RESOURCES} resources × ${DAYS} days); first round opened ${first.value.opened}, steady round opened ${steady.value.opened}`)
  report([
    { path: "gap monitor, first round (opens alerts)", wearflow: ms(first.ms), anchor: `one grouped scan: ${ms(scan.ms)}`, ratio: first.ms / scan.ms, target: "≤ 15 s (5% of the 5-min interval)", met: first.ms <= 15_000 },
    {
      path: "arrivals sink, outbox events counted",
      wearflow: rate((counted.value / counted.ms) * 1000, "events/s"),
      anchor: `same runner, sink doing nothing: ${rate((bare.value / bare.ms) * 1000, "events/s")}`,
      ratio: bare.ms / counted.ms,
      target: "≥ 10,000 events/s (the store's summary target)",
      met: (counted.value / counted.ms) * 1000 >= 10_000
    },
    { path: "gap monitor, steady round", wearflow: ms(steady.ms), anchor: `one grouped scan: ${ms(scan.ms)}`, ratio: steady.ms / scan.ms, target: "≤ 15 s (5% of the 5-min interval)", met: steady.ms <= 15_000 }
  ])
} finally {
  await runtime.dispose()
  await postgres.stop()
}
