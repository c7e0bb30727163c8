/**
 * Operator alerts: a problem an operator should hear of — a connection or a provider gone
 * silent, a resource whose daily volume dropped to nothing, a customer's webhook endpoint
 * disabled or a message that ran out of retries. One row per problem, open until it clears;
 * opening and clearing each append an event to the operator webhook's outbox
 * (`operator_notices`, sent by operator-webhook.ts) in the same statement, so no alert is
 * lost however long the operator's endpoint is down.
 *
 * Below every floor of core, like the event outbox: the gap monitor (pipeline/gap-monitor.ts)
 * and sinks (the webhooks sink's endpoint notices) raise alerts with `raiseAlert`.
 * An alert names ids, kinds and times only: never a health value.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, Metric } from "effect"

export type AlertKind =
  /** A connection and resource that usually sends data daily has sent nothing for a while. */
  | "connection.gap"
  /** A provider with active connections has sent nothing at all for a while. */
  | "provider.silent"
  /** A resource that arrived steadily for a team from a provider stopped arriving. */
  | "resource.volume_drop"
  /** A customer's webhook endpoint was disabled after failing continuously. */
  | "endpoint.disabled"
  /** A webhook message failed its last retry. */
  | "message.attempt.exhausted"

export type AlertStatus = "open" | "cleared"

export interface Alert {
  readonly id: string
  readonly kind: AlertKind
  readonly status: AlertStatus
  readonly team_id: string | null
  readonly user_id: string | null
  readonly provider: string | null
  readonly resource: string | null
  readonly endpoint_id: string | null
  readonly message_id: string | null
  readonly detail: string | null
  /** Since when the problem stands: the last data before the silence, or when the notice happened. */
  readonly since: Date
  readonly last_data_at: Date | null
  readonly opened_at: Date
  readonly cleared_at: Date | null
}

export const alertColumns = "id, kind, status, team_id, user_id, provider, resource, endpoint_id, message_id, detail, since, last_data_at, opened_at, cleared_at"

/**
 * The operator event of alert row `a` (a table alias), as jsonb: `alert.opened` / `alert.cleared`
 * with the alert as data. Timestamps in ISO 8601, UTC.
 */
const noticePayload = (sql: SqlClient.SqlClient, eventType: string, alias: string) => {
  const a = sql(alias)
  const iso = (column: string) => sql`to_char(${a}.${sql(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
  return sql`jsonb_build_object(
    'event_type', ${eventType}::text,
    'data', jsonb_build_object(
      'id', ${a}.id, 'kind', ${a}.kind, 'status', ${a}.status, 'team_id', ${a}.team_id, 'user_id', ${a}.user_id,
      'provider', ${a}.provider, 'resource', ${a}.resource, 'endpoint_id', ${a}.endpoint_id, 'message_id', ${a}.message_id,
      'detail', ${a}.detail, 'since', ${iso("since")}, 'last_data_at', ${iso("last_data_at")},
      'opened_at', ${iso("opened_at")}, 'cleared_at', ${iso("cleared_at")}))`
}

/**
 * Opens the alerts `candidates` (a query yielding the alerts table's columns but id, status,
 * opened_at and cleared_at) that are not open already, and queues their `alert.opened` events,
 * in one statement; answers how many opened.
 */
export const openAlerts = (sql: SqlClient.SqlClient, candidates: ReturnType<SqlClient.SqlClient["unsafe"]>) =>
  sql<{ n: number }>`
    with opened as (
      insert into alerts (id, kind, subject, team_id, user_id, provider, resource, endpoint_id, message_id, detail, since, last_data_at)
      select gen_random_uuid(), c.kind, c.subject, c.team_id, c.user_id, c.provider, c.resource, c.endpoint_id, c.message_id, c.detail, c.since, c.last_data_at
      from (${candidates}) c
      on conflict (kind, subject) where status = 'open' do nothing
      returning *
    ), queued as (
      insert into operator_notices (event_id, alert_id, event_type, payload)
      select gen_random_uuid(), o.id, 'alert.opened', ${noticePayload(sql, "alert.opened", "o")} from opened o
      returning 1
    )
    select count(*)::int as n from queued`.pipe(Effect.map((rows) => rows[0]?.n ?? 0))

/**
 * Clears the open alerts `ids` selects (a query yielding alert ids) and queues their
 * `alert.cleared` events, in one statement; answers how many cleared.
 */
export const clearAlerts = (sql: SqlClient.SqlClient, ids: ReturnType<SqlClient.SqlClient["unsafe"]>) =>
  sql<{ n: number }>`
    with cleared as (
      update alerts set status = 'cleared', cleared_at = now()
      where status = 'open' and id in (${ids})
      returning *
    ), queued as (
      insert into operator_notices (event_id, alert_id, event_type, payload)
      select gen_random_uuid(), c.id, 'alert.cleared', ${noticePayload(sql, "alert.cleared", "c")} from cleared c
      returning 1
    )
    select count(*)::int as n from queued`.pipe(Effect.map((rows) => rows[0]?.n ?? 0))

/** An alert a caller raises itself (a notice), keyed by `subject` within its kind. */
export interface NewAlert {
  readonly kind: AlertKind
  /** What the alert is about, unique among the open alerts of its kind (e.g. an endpoint id). */
  readonly subject: string
  readonly teamId: string | null
  readonly userId?: string | null
  readonly provider?: string | null
  readonly resource?: string | null
  readonly endpointId?: string | null
  readonly messageId?: string | null
  /** Ids, counts and times only: never a health value, never a caller's text. */
  readonly detail?: string | null
  readonly since?: Date
}

/** Opens one alert unless one of its kind and subject is open (inside the caller's transaction, if any). */
export const raiseAlert = (sql: SqlClient.SqlClient, alert: NewAlert): Effect.Effect<number, SqlError.SqlError> =>
  openAlerts(sql, sql`
    select ${alert.kind}::text as kind, ${alert.subject}::text as subject, ${alert.teamId}::uuid as team_id, ${alert.userId ?? null}::uuid as user_id,
           ${alert.provider ?? null}::text as provider, ${alert.resource ?? null}::text as resource, ${alert.endpointId ?? null}::uuid as endpoint_id,
           ${alert.messageId ?? null}::text as message_id, ${alert.detail ?? null}::text as detail,
           coalesce(${alert.since ?? null}::timestamptz, now()) as since, null::timestamptz as last_data_at`)

/** Clears the open alert of `kind` about `subject`, if any (inside the caller's transaction, if any). */
export const resolveAlert = (sql: SqlClient.SqlClient, kind: AlertKind, subject: string): Effect.Effect<number, SqlError.SqlError> =>
  clearAlerts(sql, sql`select id from alerts where kind = ${kind} and subject = ${subject} and status = 'open'`)

export const openAlertsGauge = Metric.gauge("wearflow_alerts_open", { description: "operator alerts open, by kind and provider (all processes)" })

/**
 * Sets the open-alerts gauge from the database: every process shows the same figures. Label
 * sets seen before and now without open alerts go to zero rather than vanish.
 */
export const makeGaugeRefresh = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const seen = new Set<string>()
  return Effect.gen(function* () {
    const rows = yield* sql<{ kind: string; provider: string; n: number }>`
      select kind, coalesce(provider, '') as provider, count(*)::int as n from alerts where status = 'open' group by 1, 2`
    const now = new Map(rows.map((r) => [`${r.kind}\u0000${r.provider}`, r.n]))
    for (const key of now.keys()) seen.add(key)
    yield* Effect.forEach(seen, (key) => {
      const [kind, provider] = key.split("\u0000") as [string, string]
      return Metric.set(openAlertsGauge.pipe(Metric.tagged("kind", kind), Metric.tagged("provider", provider)), now.get(key) ?? 0)
    }, { discard: true })
  })
})

/** Which alerts a listing shows: one team's, or (admins) all, provider-wide ones included. */
export type AlertScope = { readonly _tag: "Team"; readonly teamId: string } | { readonly _tag: "All" }

export interface AlertPage {
  readonly alerts: ReadonlyArray<Alert>
  /** Where the next page starts; undefined on the last page. */
  readonly next: { readonly openedAt: Date; readonly id: string } | undefined
}

/** Alerts, newest first, read with a keyset cursor (opened_at, id). */
export class Alerts extends Effect.Service<Alerts>()("wearflow/Alerts", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const list = Effect.fn("Alerts.list")(function* (options: {
      readonly scope: AlertScope
      readonly status: AlertStatus | "all"
      readonly limit: number
      readonly after?: { readonly openedAt: Date; readonly id: string } | undefined
    }) {
      const rows = yield* sql<Alert>`
        select ${sql.unsafe(alertColumns)} from alerts
        where ${options.scope._tag === "Team" ? sql`team_id = ${options.scope.teamId}` : sql`true`}
          and ${options.status === "all" ? sql`true` : sql`status = ${options.status}`}
          and ${options.after ? sql`(opened_at, id) < (${options.after.openedAt}, ${options.after.id}::uuid)` : sql`true`}
        order by opened_at desc, id desc
        limit ${options.limit + 1}`
      const alerts = rows.slice(0, options.limit)
      const last = alerts[alerts.length - 1]
      return { alerts, next: rows.length > options.limit && last ? { openedAt: last.opened_at, id: last.id } : undefined } satisfies AlertPage
    })
    return { list } as const
  })
}) {}
