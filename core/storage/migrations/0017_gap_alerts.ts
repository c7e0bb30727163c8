import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Silent-gap monitoring and operator alerts. None of these tables holds a health value.
 *
 * `data_arrivals`: per user, provider, resource and UTC day, how many data events arrived and
 * when the last did — counted from the outbox by an internal sink (pipeline/data-arrivals.ts),
 * so the ingest path writes nothing more; `connection_arrivals` keeps the latest per user,
 * provider and resource. `provider_arrivals`: per provider, when a body last
 * reached the inbox (anything at all), read incrementally past `inbox_id`.
 *
 * `alerts`: one row per problem, open until it clears itself; at most one open row per
 * (kind, subject). `operator_notices`: the operator webhook's outbox — an alert's events wait
 * here until the operator's endpoint takes them, however long it is down.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`create table data_arrivals (
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    resource text not null,
    day date not null,
    team_id uuid not null,
    events integer not null,
    last_at timestamptz not null,
    primary key (user_id, provider, resource, day)
  )`
  yield* sql`create index data_arrivals_by_team on data_arrivals (team_id, provider, resource, day)`
  // The latest arrival per user, provider and resource: what the monitor's rules scan (one row
  // per connection and resource, not one per day).
  yield* sql`create table connection_arrivals (
    user_id uuid not null references users(id) on delete cascade,
    provider text not null,
    resource text not null,
    team_id uuid not null,
    last_at timestamptz not null,
    last_day date not null,
    primary key (user_id, provider, resource)
  )`
  yield* sql`create index connection_arrivals_by_team on connection_arrivals (team_id, provider, resource)`
  yield* sql`create table provider_arrivals (
    provider text primary key,
    last_received_at timestamptz not null
  )`
  // Where the monitor's read of the inbox stands (one row).
  yield* sql`create table gap_monitor_state (
    id boolean primary key default true check (id),
    inbox_id bigint not null default 0
  )`
  yield* sql`insert into gap_monitor_state default values`
  yield* sql`create table alerts (
    id uuid primary key,
    kind text not null,
    subject text not null,
    status text not null default 'open' check (status in ('open', 'cleared')),
    team_id uuid references teams(id) on delete cascade,
    user_id uuid references users(id) on delete cascade,
    provider text,
    resource text,
    endpoint_id uuid,
    message_id text,
    detail text,
    since timestamptz not null,
    last_data_at timestamptz,
    -- Whole milliseconds: the listing's cursor carries it through JavaScript's Date.
    opened_at timestamptz not null default date_trunc('milliseconds', now()),
    cleared_at timestamptz
  )`
  yield* sql`create unique index alerts_open_subject on alerts (kind, subject) where status = 'open'`
  yield* sql`create index alerts_by_team on alerts (team_id, opened_at desc, id desc)`
  yield* sql`create table operator_notices (
    id bigint generated always as identity primary key,
    event_id uuid not null unique,
    -- Erasing a user erases their alerts, and with them the events naming them.
    alert_id uuid not null references alerts(id) on delete cascade,
    event_type text not null,
    payload jsonb not null,
    created_at timestamptz not null default now(),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error text,
    delivered_at timestamptz
  )`
  yield* sql`create index operator_notices_waiting on operator_notices (next_attempt_at) where delivered_at is null`
  yield* sql`create index operator_notices_by_alert on operator_notices (alert_id)`
})
