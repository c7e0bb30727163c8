/**
 * Silent-gap monitoring. Push integrations fail quietly: when a provider cannot reach us past
 * its own retries, that data is gone unless someone notices. Every `interval` the monitor
 * compares what usually arrives with what did, and opens or clears operator alerts
 * (alerts.ts):
 *
 * - `connection.gap`: a user's connection and resource that arrived on at least `minDays` of
 *   the `windowDays` days up to its last arrival (it usually syncs daily) has sent nothing for
 *   `connectionSilence` (48 h), while the connection is active.
 * - `resource.volume_drop`: the same for a team's whole daily volume of a resource from a
 *   provider: steady, then nothing for `volumeSilence` (24 h).
 * - `provider.silent`: a provider with active connections has sent nothing at all (no body
 *   reached the inbox) for `providerSilence` (24 h).
 *
 * An alert clears itself when data arrives again after it (or its connections are gone).
 * Arrivals come from the outbox (data-arrivals.ts: the latest per connection and resource is
 * what the rules scan, the daily rows say how often) and from the inbox, read past a cursor.
 * Time is the database's `now()`, so every process agrees on it.
 *
 * Two processes may run it: a round holds a transaction-scoped advisory lock, and a process
 * that does not get it skips the round. Every process refreshes the open-alerts gauge.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Schedule } from "effect"
import { clearAlerts, makeGaugeRefresh, openAlerts } from "../alerts.ts"
import { retryWhileTransient } from "../storage/errors.ts"
import * as DataArrivals from "./data-arrivals.ts"
import * as SinkRunner from "./sink-runner.ts"

export interface GapMonitorSettings {
  /** How often the rules are evaluated. */
  readonly interval: Duration.DurationInput
  /** A daily connection and resource silent this long raises `connection.gap`. */
  readonly connectionSilence: Duration.DurationInput
  /** A team's steady resource silent this long raises `resource.volume_drop`. */
  readonly volumeSilence: Duration.DurationInput
  /** A provider with active connections silent this long raises `provider.silent`. */
  readonly providerSilence: Duration.DurationInput
  /** "Usually daily": data on at least `minDays` of the `windowDays` days up to the last arrival. */
  readonly windowDays: number
  readonly minDays: number
}

export const defaults = {
  interval: Duration.minutes(5),
  connectionSilence: Duration.hours(48),
  volumeSilence: Duration.hours(24),
  providerSilence: Duration.hours(24),
  windowDays: 7,
  minDays: 5
} satisfies GapMonitorSettings

/**
 * Inbox ids read per round at most; a backlog is caught up over several rounds. A body whose
 * insert commits after a later id was read is not seen: at worst a provider's last arrival
 * reads a moment early, until its next body.
 */
const INBOX_STEP = 200_000
/** Daily arrival rows are kept this many days past the window. */
const KEEP_EXTRA_DAYS = 30
const PRUNE_EVERY_MS = 3_600_000

export interface RoundOutcome {
  readonly ran: boolean
  readonly opened: number
  readonly cleared: number
}

export const make = Effect.fnUntraced(function* (settings: GapMonitorSettings) {
  const sql = yield* SqlClient.SqlClient
  const secs = (d: Duration.DurationInput) => Duration.toSeconds(Duration.decode(d))
  const connectionSilence = secs(settings.connectionSilence)
  const volumeSilence = secs(settings.volumeSilence)
  const providerSilence = secs(settings.providerSilence)
  const { minDays, windowDays } = settings

  /** When each provider last sent anything: the inbox rows past the cursor, folded in. */
  const readInbox = sql`
    with bounds as (select inbox_id as after from gap_monitor_state),
    fresh as (
      select i.provider, max(i.received_at) as at, max(i.id) as id
      from inbox i, bounds b
      where i.id > b.after and i.id <= b.after + ${INBOX_STEP}
      group by i.provider
    ), folded as (
      insert into provider_arrivals (provider, last_received_at)
      select provider, at from fresh
      on conflict (provider) do update set last_received_at = greatest(provider_arrivals.last_received_at, excluded.last_received_at)
    )
    -- Every id up to the step's end was read (ids deleted by retention leave gaps to step over).
    update gap_monitor_state set inbox_id = greatest(inbox_id, least(inbox_id + ${INBOX_STEP}, coalesce((select max(id) from inbox), inbox_id)))`

  const connectionGaps = sql`
    select 'connection.gap'::text as kind, l.user_id || '/' || l.provider || '/' || l.resource as subject, l.team_id, l.user_id,
           l.provider, l.resource, null::uuid as endpoint_id, null::text as message_id, null::text as detail,
           l.last_at as since, l.last_at as last_data_at
    from connection_arrivals l
    where l.last_at < now() - make_interval(secs => ${connectionSilence})
      and (select count(*) from data_arrivals d
           where d.user_id = l.user_id and d.provider = l.provider and d.resource = l.resource and d.day > l.last_day - ${windowDays}::int) >= ${minDays}
      and exists (select 1 from provider_connections c where c.user_id = l.user_id and c.provider = l.provider and c.status = 'active')`

  const connectionGapsOver = sql`
    select a.id from alerts a
    where a.kind = 'connection.gap' and a.status = 'open'
      and (exists (select 1 from connection_arrivals c
                   where c.user_id = a.user_id and c.provider = a.provider and c.resource = a.resource and c.last_at > a.last_data_at)
           or not exists (select 1 from provider_connections c where c.user_id = a.user_id and c.provider = a.provider and c.status = 'active'))`

  /** Whether alias `t`'s team has an active connection to `t`'s provider. */
  const teamHasActive = (t: "l" | "a") => sql`
    exists (select 1 from provider_connections c join users u on u.id = c.user_id
            where u.team_id = ${sql.unsafe(t)}.team_id and c.provider = ${sql.unsafe(t)}.provider and c.status = 'active')`

  const volumeDrops = sql`
    select 'resource.volume_drop'::text as kind, l.team_id || '/' || l.provider || '/' || l.resource as subject, l.team_id, null::uuid as user_id,
           l.provider, l.resource, null::uuid as endpoint_id, null::text as message_id, null::text as detail,
           l.last_at as since, l.last_at as last_data_at
    from (
      select team_id, provider, resource, max(last_at) as last_at, max(last_day) as last_day
      from connection_arrivals group by team_id, provider, resource
    ) l
    where l.last_at < now() - make_interval(secs => ${volumeSilence})
      and (select count(distinct d.day) from data_arrivals d
           where d.team_id = l.team_id and d.provider = l.provider and d.resource = l.resource and d.day > l.last_day - ${windowDays}::int) >= ${minDays}
      and ${teamHasActive("l")}`

  const volumeDropsOver = sql`
    select a.id from alerts a
    where a.kind = 'resource.volume_drop' and a.status = 'open'
      and (exists (select 1 from connection_arrivals c
                   where c.team_id = a.team_id and c.provider = a.provider and c.resource = a.resource and c.last_at > a.last_data_at)
           or not ${teamHasActive("a")})`

  const silentProviders = sql`
    select 'provider.silent'::text as kind, c.provider as subject, null::uuid as team_id, null::uuid as user_id,
           c.provider, null::text as resource, null::uuid as endpoint_id, null::text as message_id, null::text as detail,
           coalesce(p.last_received_at, c.first_linked_at) as since, p.last_received_at as last_data_at
    from (select provider, min(created_at) as first_linked_at from provider_connections where status = 'active' group by provider) c
    left join provider_arrivals p on p.provider = c.provider
    where coalesce(p.last_received_at, c.first_linked_at) < now() - make_interval(secs => ${providerSilence})`

  const silentProvidersOver = sql`
    select a.id from alerts a
    where a.kind = 'provider.silent' and a.status = 'open'
      and (exists (select 1 from provider_arrivals p where p.provider = a.provider and p.last_received_at > coalesce(a.last_data_at, '-infinity'))
           or not exists (select 1 from provider_connections c where c.provider = a.provider and c.status = 'active'))`

  /** Old daily rows, notices long delivered (or never deliverable), alerts long cleared. */
  const prune = Effect.all([
    sql`delete from data_arrivals where day < current_date - ${windowDays + KEEP_EXTRA_DAYS}::int`,
    sql`delete from operator_notices where (delivered_at is not null and delivered_at < now() - interval '7 days') or created_at < now() - interval '30 days'`,
    sql`delete from alerts where status = 'cleared' and cleared_at < now() - interval '90 days'`
  ], { discard: true })

  let lastPrune = 0

  /** One round, if no other process is running one: read the inbox, clear, open, prune. */
  const round = Effect.gen(function* () {
    const [lock] = yield* sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtextextended('wearflow:gap-monitor', 0)) as locked`
    if (!lock?.locked) return { ran: false, opened: 0, cleared: 0 } satisfies RoundOutcome
    yield* readInbox
    // Clear first: an alert whose data came back and then stopped again is a new alert.
    let cleared = 0
    for (const over of [connectionGapsOver, volumeDropsOver, silentProvidersOver]) cleared += yield* clearAlerts(sql, over)
    let opened = 0
    for (const candidates of [connectionGaps, volumeDrops, silentProviders]) opened += yield* openAlerts(sql, candidates)
    // Pruning reads the whole daily table: hourly is often enough.
    if (Date.now() - lastPrune >= PRUNE_EVERY_MS) {
      yield* prune
      lastPrune = Date.now()
    }
    return { ran: true, opened, cleared } satisfies RoundOutcome
  }).pipe(sql.withTransaction, retryWhileTransient("1 minute"))

  return { round } as const
})

/**
 * Counts arrivals (an internal sink on the outbox) and runs the monitor every `interval`, for
 * the lifetime of the layer. Failures are logged and tried again next round.
 */
export const layer = (settings: GapMonitorSettings) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const arrivals = yield* SinkRunner.make(yield* DataArrivals.make)
      yield* Effect.forkScoped(arrivals.run)
      const { round } = yield* make(settings)
      const refreshGauge = yield* makeGaugeRefresh
      yield* round.pipe(
        Effect.tap((r) =>
          r.opened + r.cleared > 0 ? Effect.logInfo("operator alerts changed").pipe(Effect.annotateLogs({ opened: r.opened, cleared: r.cleared })) : Effect.void
        ),
        Effect.zipRight(refreshGauge),
        Effect.catchAllCause((cause) => Effect.logWarning("gap monitor round failed; trying again later", cause)),
        Effect.repeat(Schedule.spaced(settings.interval)),
        Effect.annotateLogs("module", "GapMonitor"),
        Effect.forkScoped
      )
    })
  )
