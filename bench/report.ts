/**
 * What every benchmark reports: rows of path, Wearflow's figure, its anchor measured in the
 * same run, the ratio, the target and whether it is met. Each benchmark prints its rows; with
 * BENCH_REPORT set (bench/all.ts sets it) they are also appended to that file as JSON lines, so
 * `npm run bench:all` prints one table of them all. Also the server's resident memory, sampled.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"

export interface BenchRow {
  /** The hot path, e.g. "PUSH ack, saturation". */
  readonly path: string
  /** Wearflow's figure with its unit, e.g. "1,234 req/s". */
  readonly wearflow: string
  /** The anchor's figure in the same run, e.g. "bare Bun + INSERT: 1,500 req/s". */
  readonly anchor: string
  /** Wearflow / anchor, in the sense the target reads (higher is better unless the target says ≤). */
  readonly ratio?: number | undefined
  /** e.g. "≥ 0.7×", "p50 ≤ 3×", "≤ 256 MB". */
  readonly target: string
  readonly met?: boolean | undefined
}

const figure = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** A count with thousands separators and a unit: `rate(1234.5, "req/s")` → "1,235 req/s". */
export const rate = (n: number, unit: string) => `${figure(n)} ${unit}`
/** Milliseconds with two significant decimals below 10 ms. */
export const ms = (n: number) => `${n < 10 ? n.toFixed(2) : figure(n, n < 100 ? 1 : 0)} ms`

const cells = (row: BenchRow) => [
  row.path,
  row.wearflow,
  row.anchor,
  row.ratio === undefined || row.ratio === null || !Number.isFinite(row.ratio) ? "—" : `${row.ratio.toFixed(2)}×`,
  row.target,
  row.met === undefined ? "—" : row.met ? "yes" : "no"
]

/** The rows as a Markdown table. */
export const table = (rows: ReadonlyArray<BenchRow>) => {
  const header = ["path", "Wearflow", "anchor (same run)", "ratio", "target", "met"]
  const all = [header, ...rows.map(cells)]
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)))
  const line = (r: ReadonlyArray<string>) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map((r) => line(cells(r)))].join("\n")
}

/** Prints `rows` and, under bench/all.ts, hands them on. */
export const report = (rows: ReadonlyArray<BenchRow>) => {
  console.log("")
  console.log(table(rows))
  const file = process.env.BENCH_REPORT
  if (file) fs.appendFileSync(file, rows.map((row) => JSON.stringify(row)).join("\n") + "\n")
}

/** Resident set size of a process in MB (Linux /proc, else `ps`); undefined once it is gone. */
export const rssOf = (pid: number): number | undefined => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = /VmRSS:\s+(\d+)/.exec(status)?.[1]
    if (kb) return Number(kb) / 1024
  } catch {
    // not Linux, or the process is gone
  }
  try {
    return Number(execFileSync("ps", ["-o", "rss=", "-p", String(pid)], { encoding: "utf8" }).trim()) / 1024 || undefined
  } catch {
    return undefined
  }
}

/** `pid` and its descendants (a server and the worker processes it started). */
const treeOf = (pid: number): Array<number> => {
  let children: Array<number>
  try {
    children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number)
  } catch {
    try {
      children = execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number)
    } catch {
      children = []
    }
  }
  return [pid, ...children.flatMap(treeOf)]
}

/** RSS of `pid` and its descendants together, MB, and how many processes that is. */
export const rssOfTree = (pid: number) => {
  const pids = treeOf(pid)
  return { mb: pids.reduce((sum, p) => sum + (rssOf(p) ?? 0), 0), processes: pids.length }
}

/**
 * Samples the RSS of a process and its descendants together every `everyMs` until stopped;
 * `stop()` answers the peak in MB, `processes` the most processes seen at once.
 */
export const sampleRss = (pid: number, everyMs = 100) => {
  let peak = 0
  let processes = 1
  const sample = () => {
    const now = rssOfTree(pid)
    peak = Math.max(peak, now.mb)
    processes = Math.max(processes, now.processes)
  }
  sample()
  const timer = setInterval(sample, everyMs)
  return {
    get peak() {
      return peak
    },
    get processes() {
      return processes
    },
    stop: () => {
      clearInterval(timer)
      sample()
      return peak
    }
  }
}

/** The memory row every benchmark that runs the server adds: the server and its worker processes together. */
export const memoryRow = (benchmark: string, peakMb: number, processes = 1): BenchRow => ({
  path: `server RSS, peak, ${benchmark}`,
  wearflow: `${figure(peakMb)} MB${processes > 1 ? ` (${processes} processes together)` : ""}`,
  anchor: "—",
  target: "≤ 256 MB",
  met: peakMb <= 256
})

/** CPU time of process `pid` so far (user + system), ms, from /proc; NaN where there is none. */
export function processCpuMs(pid: number) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}
