/**
 * Events as the store appends them, written straight into the outbox by SQL (fast to make
 * in the hundreds of thousands): heart-rate series of `$4` samples and activity summaries,
 * events `$2`..`$3` of team `$1`, spread over `users` users. The Postgres-sink and ETL
 * benchmarks feed their sinks from these.
 */
export const BENCH_TEAM = "7d3f5a2e-1c4b-4e8a-9f60-0b1c2d3e4f50"

export const benchEvents = (users: number) => {
  const userSql = (e: string) => `('00000000-0000-4000-8000-' || lpad((${e} % ${users})::text, 12, '0'))::uuid`

  /** Heart-rate events as the store appends them: `{ user_id, source, data: [samples] }`. */
  const heartrateSql = `
    insert into outbox (event_id, event_type, team_id, user_id, record_id, payload, historical)
    select gen_random_uuid(), 'daily.data.heartrate.created', $1::uuid, ${userSql("e")}, gen_random_uuid(),
      jsonb_build_object(
        'event_type', 'daily.data.heartrate.created', 'user_id', ${userSql("e")}, 'client_user_id', 'bench-user-' || (e % ${users}), 'team_id', $1::uuid,
        'data', jsonb_build_object(
          'user_id', ${userSql("e")},
          'source', jsonb_build_object('provider', 'garmin', 'type', 'watch', 'device_id', null, 'app_id', null),
          'data', (select jsonb_agg(jsonb_build_object(
                     'timestamp', to_char(timestamp '2025-01-01' + make_interval(secs => ((e / ${users}) * $4::int + i) * 15), 'YYYY-MM-DD"T"HH24:MI:SS"+01:00"'),
                     'timezone_offset', 3600, 'type', 'watch', 'unit', 'bpm', 'value', 52 + (e * 7 + i * 13) % 71) order by i)
                   from generate_series(0, $4::int - 1) i))),
      false
    from generate_series($2::int, $3::int) e`

  /** Activity summaries as the store appends them: `{ id, user_id, ...fields, created_at, updated_at }`. */
  const activitySql = `
    insert into outbox (event_id, event_type, team_id, user_id, record_id, payload, historical)
    select gen_random_uuid(), 'daily.data.activity.created', $1::uuid, ${userSql("e")}, a.id,
      jsonb_build_object(
        'event_type', 'daily.data.activity.created', 'user_id', ${userSql("e")}, 'client_user_id', 'bench-user-' || (e % ${users}), 'team_id', $1::uuid,
        'data', jsonb_build_object(
          'id', a.id, 'user_id', ${userSql("e")},
          'date', to_char(a.day, 'YYYY-MM-DD"T00:00:00+01:00"'), 'calendar_date', to_char(a.day, 'YYYY-MM-DD'),
          'calories_total', 1800 + (e * 37) % 1400 + 0.25, 'calories_active', 200 + (e * 37) % 900 + 0.5,
          'steps', a.steps, 'daily_movement', round(a.steps * 0.762, 1),
          'low', 90 + e % 180, 'medium', e % 45, 'high', e % 25, 'floors_climbed', e % 30,
          'heart_rate', jsonb_build_object('avg_bpm', 62 + e % 25, 'min_bpm', 44 + e % 12, 'max_bpm', 140 + e % 50, 'resting_bpm', 50 + e % 15, 'avg_walking_bpm', null),
          'wheelchair_use', null, 'wheelchair_push', null, 'timezone_offset', 3600,
          'source', jsonb_build_object('provider', 'garmin', 'type', 'watch', 'device_id', 'fr965-' || (e % ${users}), 'app_id', null),
          'created_at', to_char(a.day + interval '1 day 2 hours', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'updated_at', to_char(a.day + interval '1 day 2 hours' + make_interval(secs => e % 3600), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))),
      false
    from generate_series($2::int, $3::int) e,
      lateral (select gen_random_uuid() as id, date '2024-01-01' + (e / ${users}) as day, 3000 + (e * 7919) % 17000 as steps) a`
  return { heartrateSql, activitySql }
}
