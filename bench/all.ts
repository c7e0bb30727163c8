/**
 * Runs every benchmark one after the other and prints one table: path, Wearflow, anchor,
 * ratio, target, met. Each benchmark reports its rows through bench/report.ts; this sets
 * BENCH_REPORT to collect them. Benchmarks are separate processes, so one's memory and
 * connections never weigh on the next.
 *
 *   npm run bench:all               (env: BENCH_ONLY=push,webhooks runs only those;
 *                                    BENCH_ALL_OUT=file also writes the table there)
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type BenchRow, table } from "./report.ts"
import { benchServerFlags } from "./server.ts"

/**
 * Each benchmark with the settings it runs with here (shorter than its own defaults where they
 * are long). `hostsWearflow`: the bench's own process runs Wearflow's sink, so it runs with
 * the flags `npm start` gives the server (bench/server.ts).
 */
const benchmarks: ReadonlyArray<{ readonly name: string; readonly file: string; readonly env?: Record<string, string>; readonly hostsWearflow?: boolean }> = [
  { name: "push", file: "push.ts", env: { BENCH_SECONDS: "5", BENCH_RATES: "1000" } },
  { name: "ingest", file: "ingest.ts" },
  { name: "store", file: "store.ts" },
  { name: "postgres-sink", file: "postgres-sink.ts" },
  { name: "webhooks", file: "webhooks.ts", hostsWearflow: true },
  { name: "etl", file: "etl.ts", env: { ETL_BENCH_SUMMARY_SHARE: "1", ETL_BENCH_FORMATS: "ndjson", ETL_BENCH_S3: "0", ETL_BENCH_RECORDS: "100000" } },
  { name: "latency", file: "latency.ts" },
  { name: "large-body", file: "large-body.ts" },
  { name: "scale-out", file: "scale-out.ts" }
]

const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter(Boolean)
const here = path.dirname(new URL(import.meta.url).pathname)
const reportFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "wearflow-bench-all-")), "rows.jsonl")
fs.writeFileSync(reportFile, "")
const startedAt = Date.now()
const failed: Array<string> = []

for (const bench of benchmarks) {
  if (only && !only.includes(bench.name)) continue
  if (!fs.existsSync(path.join(here, bench.file))) continue
  console.log(`\n=== ${bench.name} (bench/${bench.file}) ===`)
  const result = spawnSync(process.execPath, [...(bench.hostsWearflow ? benchServerFlags : []), path.join(here, bench.file)], {
    cwd: path.join(here, ".."),
    env: { ...process.env, ...bench.env, BENCH_REPORT: reportFile },
    stdio: "inherit"
  })
  if (result.status !== 0) failed.push(`${bench.name} (exit ${result.status ?? result.signal})`)
}

const rows = fs.readFileSync(reportFile, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as BenchRow)
const cpus = os.cpus()
const machine = `${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB, ${os.platform()} ${os.arch()}, Bun ${Bun.version}`
const text = [
  `Machine: ${machine}; ${new Date().toISOString().slice(0, 10)}; ${((Date.now() - startedAt) / 60_000).toFixed(1)} min`,
  "",
  table(rows),
  "",
  `Targets met: ${rows.filter((r) => r.met === true).length} of ${rows.filter((r) => r.met !== undefined).length}` +
    (failed.length > 0 ? `; benchmarks that failed: ${failed.join(", ")}` : "")
].join("\n")
console.log(`\n${text}`)
if (process.env.BENCH_ALL_OUT) fs.writeFileSync(process.env.BENCH_ALL_OUT, text + "\n")
if (failed.length > 0) process.exitCode = 1
