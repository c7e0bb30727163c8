/**
 * Benchmark of the ETL sink (sinks/s3): events already in the outbox → SinkRunner staging →
 * sealed batches → rows → NDJSON.gz or Parquet files in a local directory and in an s3rver
 * bucket on loopback, composed as the server composes it. The issue's target: ≥ 50,000
 * records/s from outbox to files. A record is one summary or one timeseries sample (one row).
 *
 * The baseline, measured in the same run on the same rows: the outbox read once into memory,
 * then only `rowsOf` + the format's encoder, on batches cut at the sink's limits (per resource,
 * in outbox order), two at a time like the sink's two writers. Each scenario runs several
 * rounds; the table shows the median. Figures only, never assertions.
 *
 *   npm run bench:etl
 *     env: ETL_BENCH_RECORDS=500000        records in the outbox (each sample counts as one)
 *          ETL_BENCH_SAMPLES=100           samples per heartrate event
 *          ETL_BENCH_SUMMARY_SHARE=0.1     share of the records that are activity summaries (one per event)
 *          ETL_BENCH_FORMATS=ndjson,parquet
 *          ETL_BENCH_BATCH_RECORDS=100000  WEARFLOW_ETL_BATCH_RECORDS, and the baseline's batch size
 *          ETL_BENCH_ROUNDS=3              rounds per scenario (the median is reported)
 *          ETL_BENCH_GZIP_LEVEL=4          WEARFLOW_ETL_GZIP_LEVEL (its default), and the baseline's (bytes/record and CPU show the trade-off)
 *          ETL_BENCH_S3=0                  skips the runs into an s3rver bucket on loopback (s3rver runs
 *                                          in this process, sharing its event loop and CPU with the sink)
 *          ETL_BENCH_BUDGET_SECONDS=60     a run still writing after this is cut short
 *          ETL_BENCH_TRACE=1               prints the pipeline's progress every 250 ms
 *          ETL_BENCH_PG_STATS=1            loads pg_stat_statements and prints each run's costliest statements
 */
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { DuckDBInstance } from "@duckdb/node-api"
import { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, Logger, LogLevel, ManagedRuntime, Metric, Option } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { gunzipSync } from "node:zlib"
import pg from "pg"
// @ts-expect-error s3rver ships no type declarations
import S3rver from "s3rver"
import * as Host from "../core/host.ts"
import * as OutboundHttp from "../core/http-client.ts"
import * as SinkRunner from "../core/pipeline/sink-runner.ts"
import { type OutboxRow, toEvent } from "../core/pipeline/sink-runner.ts"
import * as Database from "../core/storage/database.ts"
import { BENCH_TEAM, benchEvents } from "./outbox-events.ts"
import { cpuMs, postgresCpuMs, startBenchPostgres } from "./postgres.ts"
import { keysOf, type Manifest as BatchManifest } from "../sinks/s3/batches.ts"
import { type Encoder, type Format, ndjsonGzip, parquet, writeSeconds } from "../sinks/s3/encode.ts"
import { migrate as migrateEtl } from "../sinks/s3/migrations.ts"
import * as EtlSink from "../sinks/s3/mod.ts"
import { resourceOf, rowsOf } from "../sinks/s3/rows.ts"
import * as BenchReport from "./report.ts"

type Destination = "directory" | "s3rver"
type Target = Destination | "baseline"

interface Run {
  readonly name: string
  readonly format: Format
  readonly target: Target
  readonly records: number
  readonly wallMs: number
  readonly bytes: number
  readonly batches: number
  readonly partial: boolean
  /** CPU time of this process (all its threads: zlib's, DuckDB's) and of the Postgres server, ms. */
  readonly bunCpuMs: number
  readonly pgCpuMs: number
  /** Where the time went, one line. */
  readonly split: string
  readonly check: string
}

const BUCKET = "wearflow-etl"
const USERS = 1000
/** WEARFLOW_ETL_BATCH_BYTES' default, for cutting the baseline's batches as the sink does. */
const BATCH_BYTES = 64 * 1024 * 1024

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? value : fallback
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a"

const seconds = (ms: number) => (Number.isNaN(ms) ? "n/a" : `${(ms / 1000).toFixed(2)} s`)

/** Releases what the run started, last first, even when it fails half-way. */
const cleanups: Array<() => Promise<unknown>> = []

const runBench = async () => {
  const startedAt = performance.now()
  const totalRecords = Math.floor(env("ETL_BENCH_RECORDS", 500_000))
  const samplesPerEvent = Math.floor(env("ETL_BENCH_SAMPLES", 100))
  const share = Number(process.env.ETL_BENCH_SUMMARY_SHARE ?? 0.1)
  const summaryShare = Number.isFinite(share) && share >= 0 && share <= 1 ? share : 0.1
  const batchRecords = Math.floor(env("ETL_BENCH_BATCH_RECORDS", 100_000))
  const rounds = Math.floor(env("ETL_BENCH_ROUNDS", 3))
  const gzipLevel = Math.min(9, Math.floor(env("ETL_BENCH_GZIP_LEVEL", 4)))
  const budgetMs = env("ETL_BENCH_BUDGET_SECONDS", 60) * 1000
  const formats = (process.env.ETL_BENCH_FORMATS ?? "ndjson,parquet").split(",").map((f) => f.trim())
    .filter((f): f is Format => f === "ndjson" || f === "parquet")
  const targets: ReadonlyArray<Destination> = process.env.ETL_BENCH_S3 === "0" ? ["directory"] : ["directory", "s3rver"]
  const trace = process.env.ETL_BENCH_TRACE === "1"
  const pgStats = process.env.ETL_BENCH_PG_STATS === "1"
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

  // Exactly `totalRecords`: whole heartrate events, the rest activity summaries.
  const timeseriesEvents = Math.floor((totalRecords * (1 - summaryShare)) / samplesPerEvent)
  const summaryEvents = totalRecords - timeseriesEvents * samplesPerEvent
  const totalEvents = timeseriesEvents + summaryEvents

  // Postgres, with a pool of our own for set-up and progress queries.
  const postgres = await startBenchPostgres("wearflow-bench-etl-", pgStats ? { shared_preload_libraries: "pg_stat_statements" } : {})
  cleanups.push(postgres.stop)
  const { dir } = postgres
  const pgDir = path.join(dir, "pg")
  const db = new pg.Pool({ connectionString: postgres.url, max: 2 })
  if (pgStats) await db.query("create extension if not exists pg_stat_statements")
  // Postgres stops at the end of the run; idle connections it terminates are expected then.
  db.on("error", () => {})
  cleanups.push(() => db.end())

  // One migrated database for every run; each run builds only the sink on top of it.
  const quiet = Logger.minimumLogLevel(LogLevel.Warning)
  const storage = ManagedRuntime.make(Database.layer({ url: Option.some(postgres.redactedUrl), dataDir: dir }).pipe(Layer.provide(quiet)))
  cleanups.push(() => storage.dispose())
  const storageContext = (await storage.runtime()).context
  await storage.runPromise(migrateEtl)

  // ---- the outbox ---------------------------------------------------------------------------
  // Chunks of both kinds, one transaction each, so resources interleave in outbox order as they would live.
  const TEAM = BENCH_TEAM
  const { heartrateSql, activitySql } = benchEvents(USERS)

  const setupStart = performance.now()
  const chunks = Math.max(1, Math.ceil(totalRecords / 50_000))
  for (let c = 0; c < chunks; c++) {
    const span = (n: number) => [Math.floor((n * c) / chunks), Math.floor((n * (c + 1)) / chunks) - 1] as const
    const [hFrom, hTo] = span(timeseriesEvents)
    const [aFrom, aTo] = span(summaryEvents)
    if (hTo >= hFrom) await db.query(heartrateSql, [TEAM, hFrom, hTo, samplesPerEvent])
    if (aTo >= aFrom) await db.query(activitySql, [TEAM, aFrom, aTo])
  }
  await db.query("vacuum analyze outbox")
  const outbox = (await db.query(
    `select count(*)::int as events, max(position)::text as last, sum(octet_length(payload::text))::float8 as json from outbox`
  )).rows[0] as { events: number; last: string; json: number }
  console.log(
    `ETL sink, outbox → files: ${fmt(totalRecords)} records in ${fmt(outbox.events)} events ` +
      `(${fmt(timeseriesEvents)} heartrate × ${samplesPerEvent} samples, ${fmt(summaryEvents)} activity summaries), ` +
      `${(outbox.json / totalRecords).toFixed(0)} bytes of payload JSON per record; set up in ${seconds(performance.now() - setupStart)}. ` +
      `Sink: batch ${fmt(batchRecords)} records / 1 s, runner batch ${fmt(EtlSink.plugin.sink.pacing.batchSize)} events (as the server); gzip level ${gzipLevel}; ${rounds} rounds each; Bun ${Bun.version}, ${os.cpus().length} cores`
  )

  // ---- baseline: rowsOf + encoder on rows read once ------------------------------------------
  const readStart = performance.now()
  let outboxRows: ReadonlyArray<OutboxRow> = await storage.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<OutboxRow>`
        select position, tx::text as tx, event_id, event_type, team_id, user_id, record_id, payload, created_at, historical
        from outbox order by tx, position`)
  )
  const readMs = performance.now() - readStart

  // Cut as the sink seals full batches: per resource, in order, at the record (and byte) limit.
  const cutBatches = (all: ReadonlyArray<OutboxRow>) => {
    const open = new Map<string, { events: Array<OutboxRow>; records: number; bytes: number }>()
    const done: Array<ReadonlyArray<OutboxRow>> = []
    for (const row of all) {
      const rows = resourceOf(row.event_type)
      if (rows === undefined) continue
      const records = rows.kind === "summary" ? 1 : ((row.payload.data as { data?: ReadonlyArray<unknown> }).data?.length ?? 0)
      const bytes = JSON.stringify(row.payload.data).length
      let batch = open.get(rows.resource)
      if (batch !== undefined && batch.events.length > 0 && (batch.records + records > batchRecords || batch.bytes + bytes > BATCH_BYTES)) {
        done.push(batch.events)
        batch = undefined
      }
      if (batch === undefined) open.set(rows.resource, batch = { events: [], records: 0, bytes: 0 })
      batch.events.push(row)
      batch.records += records
      batch.bytes += bytes
    }
    for (const batch of open.values()) done.push(batch.events)
    return done
  }
  let baselineBatches = cutBatches(outboxRows)

  const baseline = (format: Format, batches: ReadonlyArray<ReadonlyArray<OutboxRow>>): Promise<Run> =>
    storage.runPromise(Effect.scoped(Effect.gen(function* () {
      // DuckDB starts outside the clock, as the sink starts it once per process.
      const encoder: Encoder = format === "parquet" ? yield* parquet : ndjsonGzip(gzipLevel)
      let rowsMs = 0
      let bytes = 0
      let records = 0
      const [cpu0, pg0] = [cpuMs(), yield* Effect.promise(() => postgresCpuMs(pgDir))]
      const start = performance.now()
      yield* Effect.forEach(batches, (events) =>
        Effect.gen(function* () {
          const rows = resourceOf(events[0]!.event_type)!
          const t = performance.now()
          const batchRows = events.flatMap((row) => rowsOf(rows, toEvent(row)))
          rowsMs += performance.now() - t
          const body = yield* encoder.encode(rows, batchRows)
          bytes += body.length
          records += batchRows.length
        }), { concurrency: 2, discard: true })
      const wallMs = performance.now() - start
      const bunCpuMs = cpuMs() - cpu0
      const pgCpuMs = (yield* Effect.promise(() => postgresCpuMs(pgDir))) - pg0
      return {
        name: `baseline ${format}`, format, target: "baseline", records, wallMs, bytes, batches: batches.length, partial: false, bunCpuMs, pgCpuMs,
        split: `rowsOf ${seconds(rowsMs)} of the main thread, the rest rendering and encoding; CPU ${seconds(bunCpuMs)}; ` +
          `reading the outbox once (not counted) took ${seconds(readMs)}`,
        check: ""
      } satisfies Run
    })))

  // Warms up the code both sides share, on a few events of each resource.
  const warmup = [...new Map(baselineBatches.map((b) => [b[0]!.event_type, b.slice(0, 50)])).values()]
  for (const format of formats) await baseline(format, warmup)

  const results: Array<Run> = []
  const report = (run: Run, round: number) => {
    results.push(run)
    console.log(
      `${`${run.name} (${round}/${rounds})`.padEnd(36)} ${fmt(run.records / (run.wallMs / 1000)).padStart(9)} records/s  ` +
        `${fmt(totalEvents / (run.wallMs / 1000)).padStart(7)} events/s  ${fmt(run.bytes / Math.max(1, run.records), 1)} bytes/record  ` +
        `${run.batches} batches${run.partial ? `  cut short at ${seconds(budgetMs)}` : ""}${run.check ? `  ${run.check}` : ""}`
    )
  }
  for (let round = 1; round <= rounds; round++) {
    for (const format of formats) report(await baseline(format, baselineBatches), round)
  }
  // The pipeline runs without the baseline's rows alive: a heap that large slows every collection.
  outboxRows = []
  baselineBatches = []

  // ---- Wearflow: the sink as the server composes it --------------------------------------------
  let s3Url = ""
  if (targets.includes("s3rver")) {
    const s3Dir = path.join(dir, "s3rver")
    await fs.mkdir(s3Dir)
    const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: s3Dir, configureBuckets: [{ name: BUCKET }] }) as {
      run(): Promise<{ port: number }>
      close(): Promise<void>
    }
    s3Url = `http://127.0.0.1:${(await server.run()).port}`
    cleanups.push(() => server.close())
  }

  // Polled every 50 ms: cheap queries only (counting etl_pending would cost Postgres CPU the sink needs), unless tracing.
  const progress = async () =>
    (await db.query(
      `select (select position from sink_cursors where sink_id = 's3')::text as cursor,
              (select coalesce(sum(records), 0) from etl_batches)::float8 as sealed,
              (select coalesce(sum(records), 0) from etl_batches where status = 'written')::float8 as written,
              ${trace ? "(select coalesce(sum(events), 0) from etl_pending)::float8" : "(select exists (select 1 from etl_pending))::int"} as pending`
    )).rows[0] as { cursor: string | null; sealed: number; written: number; pending: number }

  /** Seconds the writers spent per stage so far (sinks/s3/encode.ts writeSeconds), in STAGES order. */
  const STAGES = ["read", "render", "gzip", "store"] as const
  const writeStages = () => Effect.runPromise(Effect.forEach(STAGES, (stage) => Metric.value(writeSeconds(stage)).pipe(Effect.map((state) => state.count))))

  let runIndex = 0
  const pipeline = async (format: Format, target: Destination): Promise<Run> => {
    const name = `Wearflow ${format} → ${target}`
    runIndex++
    const outDir = path.join(dir, `out-${runIndex}`)
    const prefix = `run-${runIndex}`
    await db.query("delete from etl_pending")
    await db.query("delete from etl_batches")
    await db.query("delete from etl_sealed")
    await db.query("delete from sink_cursors where sink_id = 's3'")
    const settings: Array<[string, string]> = [
      ["WEARFLOW_ETL_FORMAT", format],
      ["WEARFLOW_ETL_BATCH_RECORDS", String(batchRecords)],
      ["WEARFLOW_ETL_BATCH_SECONDS", "1"],
      ["WEARFLOW_ETL_GZIP_LEVEL", String(gzipLevel)]
    ]
    if (target === "s3rver") {
      settings.push(
        ["WEARFLOW_ETL_S3_BUCKET", BUCKET],
        ["WEARFLOW_ETL_S3_PREFIX", prefix],
        ["WEARFLOW_ETL_S3_ENDPOINT", s3Url],
        ["WEARFLOW_ETL_S3_FORCE_PATH_STYLE", "true"],
        ["AWS_ACCESS_KEY_ID", "S3RVER"],
        ["AWS_SECRET_ACCESS_KEY", "S3RVER"]
      )
    } else settings.push(["WEARFLOW_ETL_DIR", outDir])
    const App = SinkRunner.layer(EtlSink.EtlSink, EtlSink.plugin.sink.pacing).pipe(
      Layer.provideMerge(Host.load({ manifest: EtlSink.manifest, layer: EtlSink.layer }, ConfigProvider.fromMap(new Map(settings)))),
      // Host.load guards an HttpClient; the sink makes no HTTP calls through it (the AWS SDK has its own).
      Layer.provide(OutboundHttp.layer()),
      Layer.provide(Layer.succeedContext(storageContext)),
      Layer.provide(quiet)
    )

    if (pgStats) await db.query("select pg_stat_statements_reset()")
    const stages0 = await writeStages()
    // The clock includes building the sink: the runner starts as the layer is built.
    const [cpu0, pg0] = [cpuMs(), await postgresCpuMs(pgDir)]
    const t0 = performance.now()
    const runtime = ManagedRuntime.make(App)
    await runtime.runtime()
    const at = () => performance.now() - t0
    const stages = { built: at(), staged: NaN, firstWritten: NaN, lastSealed: NaN }
    let lastSealed = -1
    let complete = false
    for (;;) {
      const p = await progress()
      if (Number.isNaN(stages.staged) && p.cursor === outbox.last) stages.staged = at()
      if (Number.isNaN(stages.firstWritten) && p.written > 0) stages.firstWritten = at()
      if (p.sealed !== lastSealed) {
        lastSealed = p.sealed
        stages.lastSealed = at()
      }
      if (trace) console.log(`  t=${fmt(at()).padStart(6)} ms  cursor ${p.cursor}/${outbox.last}  staged ${p.pending}  sealed ${p.sealed}  written ${p.written}`)
      if (p.written >= totalRecords && p.pending === 0) {
        complete = true
        break
      }
      if (at() > budgetMs) break
      await sleep(trace ? 250 : 50)
    }
    const wallMs = at()
    const bunCpuMs = cpuMs() - cpu0
    const pgCpuMs = (await postgresCpuMs(pgDir)) - pg0
    const stageSeconds = (await writeStages()).map((seconds, i) => seconds - stages0[i]!)
    await runtime.dispose()
    if (pgStats) await printStatements(name)

    const batches = (await db.query(
      `select resource, count(*)::int as n, sum(records)::float8 as records, sum(data_bytes)::float8 as bytes,
              min(records)::int as min, max(records)::int as max
       from etl_batches where status = 'written' group by resource order by resource`
    )).rows as Array<{ resource: string; n: number; records: number; bytes: number; min: number; max: number }>
    const written = batches.reduce((n, b) => n + b.records, 0)
    const recordedBytes = batches.reduce((n, b) => n + b.bytes, 0)
    // Data files on disk (not manifests or schemas); for a bucket, what the sink recorded uploading.
    const bytes = target === "directory" ? (await dataFiles(outDir)).reduce((n, f) => n + f.size, 0) : recordedBytes
    const check = complete ? await sanity(format, target, target === "directory" ? outDir : prefix) : "check skipped (incomplete)"
    if (target === "directory") await fs.rm(outDir, { recursive: true, force: true })
    return {
      name, format, target, records: written, wallMs, bytes, batches: batches.reduce((n, b) => n + b.n, 0), partial: !complete, bunCpuMs, pgCpuMs,
      split: `sink built ${seconds(stages.built)}, all staged ${seconds(stages.staged)}, first batch written ${seconds(stages.firstWritten)}, ` +
        `last sealed ${seconds(stages.lastSealed)}, all written ${seconds(wallMs)}; ` +
        `writers' stages (summed over pages; reads overlap the page before): ${STAGES.map((stage, i) => `${stage} ${stageSeconds[i]!.toFixed(2)} s`).join(", ")}; ` +
        `batches ${batches.map((b) => `${b.resource} ${b.n} × ${b.min === b.max ? fmt(b.min) : `${fmt(b.min)}–${fmt(b.max)}`}`).join(", ")}` +
        `${target === "directory" && bytes !== recordedBytes ? `; on disk ${bytes} bytes ≠ recorded ${recordedBytes}` : ""}`,
      check
    }
  }

  /** The statements that took the most time in Postgres during a run, with their share. */
  const printStatements = async (name: string) => {
    const top = (await db.query(
      `select calls::float8 as calls, total_exec_time::float8 as ms, rows::float8 as rows,
              sum(total_exec_time) over ()::float8 as all_ms, regexp_replace(query, '\\s+', ' ', 'g') as query
       from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time desc limit 8`
    )).rows as Array<{ calls: number; ms: number; rows: number; all_ms: number; query: string }>
    console.log(`  Postgres, ${name}: ${seconds(top[0]?.all_ms ?? 0)} executing statements`)
    for (const s of top) {
      console.log(`    ${fmt((100 * s.ms) / s.all_ms).padStart(3)}% ${seconds(s.ms).padStart(8)} ${fmt(s.calls).padStart(6)} calls ${fmt(s.rows).padStart(8)} rows  ${s.query.slice(0, 150)}`)
    }
  }

  /** Data files under `root`, recursively, leaving out manifests, schemas and the write probe (`_*`). */
  const dataFiles = async (root: string) => {
    const out: Array<{ key: string; size: number }> = []
    const walk = async (relative: string) => {
      for (const entry of await fs.readdir(path.join(root, relative), { withFileTypes: true })) {
        if (relative === "" && entry.name.startsWith("_")) continue
        const key = relative === "" ? entry.name : `${relative}/${entry.name}`
        if (entry.isDirectory()) await walk(key)
        else out.push({ key, size: (await fs.stat(path.join(root, key))).size })
      }
    }
    await walk("")
    return out
  }

  /**
   * Reads the output back: every manifest's record count against the total; the largest data
   * file against its manifest (lines or Parquet rows, bytes, SHA-256); and, in a directory,
   * every data file through DuckDB (rows, distinct event ids).
   */
  const sanity = async (format: Format, target: Destination, where: string): Promise<string> => {
    try {
      const client = target === "s3rver"
        ? new S3Client({ region: "us-east-1", endpoint: s3Url, forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } })
        : undefined
      const read = async (key: string) =>
        client === undefined
          ? new Uint8Array(await fs.readFile(path.join(where, key)))
          : (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray()
      // The manifests' keys: from disk, or rebuilt from the batches for a bucket.
      const manifestKeys = client === undefined
        ? (await fs.readdir(path.join(where, "_manifests"), { recursive: true })).filter((k) => k.endsWith(".json")).map((k) => `_manifests/${k}`)
        : ((await db.query(`select id::text as id, resource, format, events, records, sealed_at from etl_batches`)).rows as Array<Parameters<typeof keysOf>[0]>)
          .map((b) => `${where}/${keysOf(b).manifest}`)
      const manifests = await Promise.all(manifestKeys.map(async (k) => JSON.parse(new TextDecoder().decode(await read(k))) as BatchManifest))
      client?.destroy()
      const manifestRecords = manifests.reduce((n, m) => n + m.record_count, 0)
      const largest = manifests.reduce((a, b) => (b.files[0]!.bytes > a.files[0]!.bytes ? b : a))
      const file = largest.files[0]!
      const body = await read(file.key)
      const sha = createHash("sha256").update(body).digest("hex")

      const duck = await DuckDBInstance.create(":memory:", { threads: "2" })
      const connection = await duck.connect()
      const query = async (sql: string) => (await connection.runAndReadAll(sql)).getRows()[0]!.map(Number)
      let rows: number
      let all: ReadonlyArray<number> | undefined
      try {
        if (format === "ndjson") {
          const text = gunzipSync(body).toString("utf8")
          rows = text.length === 0 ? 0 : text.split("\n").length - 1
        } else {
          const scratch = path.join(dir, "check.parquet")
          await fs.writeFile(scratch, body)
          ;[rows = NaN] = await query(`select count(*) from read_parquet('${scratch}')`)
        }
        if (client === undefined) {
          const glob = path.join(where, "resource=*", "date=*", format === "ndjson" ? "*.ndjson.gz" : "*.parquet")
          all = await query(format === "ndjson"
            ? `select count(*), count(distinct event_id) from read_json('${glob}', format = 'newline_delimited', columns = {'event_id': 'VARCHAR'})`
            : `select count(*), count(distinct event_id) from read_parquet('${glob}')`)
        }
      } finally {
        connection.closeSync()
        duck.closeSync()
      }
      const ok = manifestRecords === totalRecords && rows === file.records && rows === largest.record_count && body.length === file.bytes &&
        sha === file.sha256 && (all === undefined || (all[0] === totalRecords && all[1] === totalEvents))
      return `check ${ok ? "ok" : "MISMATCH"}: ${manifests.length} manifests, ${fmt(manifestRecords)} records; ` +
        `${path.basename(file.key)}: ${fmt(rows)} ${format === "ndjson" ? "lines" : "rows"}, manifest ${fmt(largest.record_count)}` +
        `${body.length === file.bytes ? "" : `, ${body.length} bytes ≠ ${file.bytes}`}${sha === file.sha256 ? "" : ", sha256 differs"}` +
        `${all === undefined ? "" : `; all files: ${fmt(all[0]!)} rows, ${fmt(all[1]!)} event ids`}`
    } catch (error) {
      return `check failed: ${error instanceof Error ? error.message : String(error)}`
    }
  }

  // Rounds go through the scenarios in turn, so a drift in the machine spreads over all of them.
  for (let round = 1; round <= rounds; round++) {
    for (const format of formats) for (const target of targets) report(await pipeline(format, target), round)
  }

  // ---- the table --------------------------------------------------------------------------------
  const rate = (r: Run) => r.records / (r.wallMs / 1000)
  const median = (runs: ReadonlyArray<Run>) => runs.slice().sort((a, b) => rate(a) - rate(b))[Math.floor((runs.length - 1) / 2)]!
  const scenarios = formats.flatMap((format) => (["baseline", ...targets] as const).map((target) => results.filter((r) => r.format === format && r.target === target)))
  const medians = new Map(scenarios.map((runs) => [runs, median(runs)]))
  const baselineOf = (format: Format) => [...medians.values()].find((r) => r.format === format && r.target === "baseline")!
  const rows = scenarios.map((runs) => {
    const r = medians.get(runs)!
    const rates = runs.map(rate)
    return [
      r.name,
      `${fmt(r.records)}${r.partial ? "*" : ""}`,
      fmt(r.wallMs / 1000, 2),
      fmt(rate(r)),
      `${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))}`,
      fmt(totalEvents / (r.wallMs / 1000)),
      `${(rate(r) / rate(baselineOf(r.format))).toFixed(2)}×`,
      fmt(r.bytes / 1e6, 2),
      fmt(r.bytes / Math.max(1, r.records), 1),
      fmt(r.batches),
      `${fmt(r.bunCpuMs / 1000, 1)} / ${fmt(r.pgCpuMs / 1000, 1)}`
    ]
  })
  const header = ["Run (median)", "Records", "Wall s", "Records/s", "Range of rounds", "Events/s", "vs baseline", "Data MB", "Bytes/record", "Batches", "CPU s Bun / PG"]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => (i >= 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`
  console.log("")
  console.log("Where the time went (median rounds; times from building the sink):")
  for (const r of medians.values()) console.log(`  ${r.name}: ${r.split}`)
  console.log("")
  console.log(line(header))
  console.log(`|${widths.map((w, i) => (i >= 1 ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|")}|`)
  for (const row of rows) console.log(line(row))
  if (results.some((r) => r.partial)) console.log(`* cut short at the ${seconds(budgetMs)} budget (ETL_BENCH_BUDGET_SECONDS): records written by then.`)
  const failed = results.filter((r) => r.target !== "baseline" && !r.check.startsWith("check ok"))
  console.log("")
  console.log(`Read-back checks: ${failed.length === 0 ? `ok in all ${results.filter((r) => r.target !== "baseline").length} runs` : failed.map((r) => `${r.name}: ${r.check}`).join("; ")}`)
  console.log(`Total run time ${seconds(performance.now() - startedAt)}`)

  // One row per scenario for bench/all.ts: the sink's median against the in-memory anchor's, same format.
  const mix = summaryShare === 1 ? "summaries" : `${fmt(summaryShare * 100)}% summaries, rest ${samplesPerEvent}-sample heartrate`
  BenchReport.report([...medians.values()].filter((r) => r.target !== "baseline").map((r): BenchReport.BenchRow => ({
    path: `ETL ${mix} → ${r.format === "ndjson" ? "NDJSON.gz" : "Parquet"} in a ${r.target === "directory" ? "directory" : "bucket (s3rver)"}` +
      `${r.partial ? " (cut short)" : ""}${r.check.startsWith("check ok") ? "" : " (read-back check failed)"}`,
    wearflow: BenchReport.rate(rate(r), "records/s"),
    anchor: `in-memory rows + encoder: ${BenchReport.rate(rate(baselineOf(r.format)), "records/s")}`,
    ratio: rate(r) / rate(baselineOf(r.format)),
    target: "≥ 50,000 records/s",
    met: rate(r) >= 50_000 && !r.partial && r.check.startsWith("check ok")
  })))
}

try {
  await runBench()
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => console.error("clean-up failed:", error))
}
