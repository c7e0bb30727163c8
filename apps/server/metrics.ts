/**
 * `GET /metrics`: every metric of this process and of the worker processes it started (ingest,
 * sinks, the ETL backlog, …; theirs labelled `process`) in Prometheus' text format, for a scraper. Counts and sizes only: no health data, no ids. Table
 * sizes (rows estimated, bytes) are read from the catalog when scraped; rows retention removed
 * are `wearflow_retention_rows_removed_total{table}`.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { SqlClient } from "@effect/sql"
import { IngestBacklog } from "@wearflow/core/pipeline/inbox"
import { Effect, Metric, MetricState, Option } from "effect"
import type { MetricPair } from "effect"
import { StartedWorkers } from "./worker-processes.ts"

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

const labelsOf = (tags: ReadonlyArray<{ readonly key: string; readonly value: string }>, extra: ReadonlyArray<[string, string]> = []) => {
  const all = [...tags.map((t) => [t.key, t.value] as const), ...extra]
  return all.length === 0 ? "" : `{${all.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`
}

/** A metric's series as Prometheus text lines, with its type and help: what a worker process sends its server. */
export interface MetricFamily {
  readonly name: string
  readonly type: string
  readonly help: string | undefined
  readonly lines: ReadonlyArray<string>
}
export type MetricFamilies = ReadonlyArray<MetricFamily>

/** `pairs` as families, each series labelled with `labels` beside its own tags. */
export const familiesOf = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, labels: ReadonlyArray<[string, string]> = []): MetricFamilies => {
  const byName = new Map<string, { name: string; type: string; help: string | undefined; lines: Array<string> }>()
  const entry = (name: string, type: string, help: Option.Option<string>) => {
    const found = byName.get(name) ?? { name, type, help: Option.getOrUndefined(help), lines: [] }
    byName.set(name, found)
    return found.lines
  }
  for (const { metricKey: key, metricState: state } of pairs) {
    const tags = labelsOf(key.tags, labels)
    const tagsWith = (extra: [string, string]) => labelsOf(key.tags, [...labels, extra])
    if (MetricState.isCounterState(state)) entry(key.name, "counter", key.description).push(`${key.name}${tags} ${state.count}`)
    else if (MetricState.isGaugeState(state)) entry(key.name, "gauge", key.description).push(`${key.name}${tags} ${state.value}`)
    else if (MetricState.isHistogramState(state)) {
      const lines = entry(key.name, "histogram", key.description)
      for (const [bound, count] of state.buckets) lines.push(`${key.name}_bucket${tagsWith(["le", String(bound)])} ${count}`)
      lines.push(`${key.name}_bucket${tagsWith(["le", "+Inf"])} ${state.count}`)
      lines.push(`${key.name}_sum${tags} ${state.sum}`, `${key.name}_count${tags} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      const lines = entry(key.name, "counter", key.description)
      for (const [value, count] of state.occurrences) lines.push(`${key.name}${tagsWith(["value", value])} ${count}`)
    } else if (MetricState.isSummaryState(state)) {
      const lines = entry(key.name, "summary", key.description)
      for (const [quantile, value] of state.quantiles) {
        if (Option.isSome(value)) lines.push(`${key.name}${tagsWith(["quantile", String(quantile)])} ${value.value}`)
      }
      lines.push(`${key.name}_sum${tags} ${state.sum}`, `${key.name}_count${tags} ${state.count}`)
    }
  }
  return [...byName.values()]
}

/** One text exposition of the families of one or more processes, each metric's series together. */
export const render = (...sources: ReadonlyArray<MetricFamilies>): string => {
  const byName = new Map<string, { type: string; help: string | undefined; lines: Array<string> }>()
  for (const family of sources.flat()) {
    const found = byName.get(family.name) ?? { type: family.type, help: family.help, lines: [] }
    byName.set(family.name, found)
    found.lines.push(...family.lines)
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
        const workers = yield* (yield* StartedWorkers).metrics
        return HttpServerResponse.text(render(familiesOf(Metric.unsafeSnapshot()), ...workers), { contentType: "text/plain; version=0.0.4; charset=utf-8" })
      })
    )
  })
)
