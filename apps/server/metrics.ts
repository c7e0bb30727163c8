/**
 * `GET /metrics`: every metric of this process (ingest, sinks, the ETL backlog, …) in
 * Prometheus' text format, for a scraper. Counts and sizes only: no health data, no ids. Table
 * sizes (rows estimated, bytes) are read from the catalog when scraped; rows retention removed
 * are `wearflow_retention_rows_removed_total{table}`.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { IngestBacklog } from "@wearflow/core/pipeline/inbox"
import { Effect, Metric, MetricState, Option } from "effect"
import type { MetricPair } from "effect"

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

const labelsOf = (tags: ReadonlyArray<{ readonly key: string; readonly value: string }>, extra: ReadonlyArray<[string, string]> = []) => {
  const all = [...tags.map((t) => [t.key, t.value] as const), ...extra]
  return all.length === 0 ? "" : `{${all.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`
}

/** One text exposition of `pairs`, grouped by metric name. */
export const exposition = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const byName = new Map<string, { type: string; help: string | undefined; lines: Array<string> }>()
  const entry = (name: string, type: string, help: Option.Option<string>) => {
    const found = byName.get(name) ?? { type, help: Option.getOrUndefined(help), lines: [] }
    byName.set(name, found)
    return found.lines
  }
  for (const { metricKey: key, metricState: state } of pairs) {
    const tags = key.tags
    if (MetricState.isCounterState(state)) entry(key.name, "counter", key.description).push(`${key.name}${labelsOf(tags)} ${state.count}`)
    else if (MetricState.isGaugeState(state)) entry(key.name, "gauge", key.description).push(`${key.name}${labelsOf(tags)} ${state.value}`)
    else if (MetricState.isHistogramState(state)) {
      const lines = entry(key.name, "histogram", key.description)
      for (const [bound, count] of state.buckets) lines.push(`${key.name}_bucket${labelsOf(tags, [["le", String(bound)]])} ${count}`)
      lines.push(`${key.name}_bucket${labelsOf(tags, [["le", "+Inf"]])} ${state.count}`)
      lines.push(`${key.name}_sum${labelsOf(tags)} ${state.sum}`, `${key.name}_count${labelsOf(tags)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      const lines = entry(key.name, "counter", key.description)
      for (const [value, count] of state.occurrences) lines.push(`${key.name}${labelsOf(tags, [["value", value]])} ${count}`)
    } else if (MetricState.isSummaryState(state)) {
      const lines = entry(key.name, "summary", key.description)
      for (const [quantile, value] of state.quantiles) {
        if (Option.isSome(value)) lines.push(`${key.name}${labelsOf(tags, [["quantile", String(quantile)]])} ${value.value}`)
      }
      lines.push(`${key.name}_sum${labelsOf(tags)} ${state.sum}`, `${key.name}_count${labelsOf(tags)} ${state.count}`)
    }
  }
  let text = ""
  for (const [name, { type, help, lines }] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    if (help !== undefined) text += `# HELP ${name} ${help.replace(/\n/g, " ")}\n`
    text += `# TYPE ${name} ${type}\n${lines.join("\n")}\n`
  }
  return text
}

const backlogJobs = Metric.gauge("wearflow_ingest_backlog_jobs", { description: "ingest jobs waiting or running (all processes)" })
const oldestJobAge = Metric.gauge("wearflow_ingest_oldest_job_age_seconds", { description: "age of the oldest ingest job not yet completed" })
const sinceProgress = Metric.gauge("wearflow_ingest_seconds_since_completion", { description: "seconds since an ingest job last completed" })

const tableRows = Metric.gauge("wearflow_table_rows_estimate", { description: "rows per table, as Postgres estimates them (pg_class.reltuples)" })
const tableBytes = Metric.gauge("wearflow_table_bytes", { description: "bytes per table with its indexes and TOAST (pg_total_relation_size)" })

/** Every table's estimated rows and size: cheap catalog reads, no scan. Tables outside `public` are named with their schema. */
const tableSizes = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ name: string; rows: number; bytes: number }>`
    select case when n.nspname = 'public' then c.relname else n.nspname || '.' || c.relname end as name,
           greatest(c.reltuples, 0)::float8 as rows, pg_total_relation_size(c.oid)::float8 as bytes
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_%'`.pipe(
    Effect.flatMap((tables) =>
      Effect.forEach(tables, (t) =>
        Effect.all([Metric.set(Metric.tagged(tableRows, "table", t.name), t.rows), Metric.set(Metric.tagged(tableBytes, "table", t.name), t.bytes)]), { discard: true }))
  ))

export const MetricsRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const backlog = yield* IngestBacklog
    const sql = yield* SqlClient.SqlClient
    yield* router.get(
      "/metrics",
      Effect.gen(function* () {
        // The backlog is the database's, read when scraped; a failing read leaves the last figures.
        yield* backlog.pipe(
          Effect.tap((b) =>
            Effect.all([
              Metric.set(backlogJobs, b.pending),
              Metric.set(oldestJobAge, b.oldestSeconds),
              b.sinceCompletionSeconds === undefined ? Effect.void : Metric.set(sinceProgress, b.sinceCompletionSeconds)
            ])
          ),
          Effect.timeout("5 seconds"),
          Effect.ignore
        )
        yield* tableSizes.pipe(Effect.provideService(SqlClient.SqlClient, sql), Effect.timeout("5 seconds"), Effect.ignore)
        return HttpServerResponse.text(exposition(Metric.unsafeSnapshot()), { contentType: "text/plain; version=0.0.4; charset=utf-8" })
      })
    )
  })
)
