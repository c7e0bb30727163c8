/**
 * A benchmark's own Postgres: an embedded server in a fresh temporary directory (which also
 * holds the Wearflow server's data dir), and how to stop it and remove the directory.
 */
import { Effect, Redacted } from "effect"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import * as EmbeddedPostgres from "../core/storage/embedded-postgres.ts"

/** CPU time of this process so far, ms. */
export const cpuMs = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/**
 * CPU time of the Postgres server in `pgDir` (the postmaster, its live children, and its reaped
 * ones), from /proc, ms; NaN where there is no /proc. Clock ticks are 1/100 s on Linux.
 */
export const postgresCpuMs = async (pgDir: string): Promise<number> => {
  try {
    const postmaster = Number((await fs.readFile(path.join(pgDir, "postmaster.pid"), "utf8")).split("\n")[0])
    let ticks = 0
    for (const pid of await fs.readdir("/proc")) {
      if (!/^\d+$/.test(pid)) continue
      const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")
      // Fields after the command name, which may itself hold spaces or parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]))
      if (Number(pid) === postmaster) ticks += utime! + stime! + cutime! + cstime!
      else if (Number(fields[1]) === postmaster) ticks += utime! + stime!
    }
    return ticks * 10
  } catch {
    return NaN
  }
}

/**
 * An embedded Postgres for a bench, in a directory of its own (`dir`, the server's data in
 * `dir/pg`). `settings` (e.g. `shared_preload_libraries`, `track_commit_timestamp`) are set
 * with `alter system`, then the server restarts once so that they apply.
 */
export const startBenchPostgres = async (prefix: string, settings: Readonly<Record<string, string>> = {}) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  // Postgres runs as an unprivileged user when started as root: it must reach the directory.
  await fs.chmod(dir, 0o755)
  const database = await Effect.runPromise(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "bench" }))
  const entries = Object.entries(settings)
  if (entries.length > 0) {
    const admin = new pg.Client({ connectionString: Redacted.value(database.url) })
    await admin.connect()
    for (const [name, value] of entries) await admin.query(`alter system set ${name} = '${value}'`)
    await admin.end()
    await Effect.runPromise(Effect.zipRight(database.stop, database.start))
  }
  // A bench that fails leaves no Postgres behind: an immediate shutdown (SIGQUIT) of the postmaster at exit.
  const pidFile = path.join(dir, "pg", "postmaster.pid")
  process.once("exit", () => {
    try {
      process.kill(Number(readFileSync(pidFile, "utf8").split("\n")[0]), "SIGQUIT")
    } catch {
      // stopped already: no pid file
    }
  })
  return {
    dir,
    url: Redacted.value(database.url),
    /** The URL as the database layer takes it. */
    redactedUrl: database.url,
    /** CPU time of the server so far, ms (see postgresCpuMs). */
    cpuMs: () => postgresCpuMs(path.join(dir, "pg")),
    /** Stops and starts the server on the same port (for settings that take a restart). */
    restart: () => Effect.runPromise(Effect.zipRight(database.stop, database.start)),
    stop: async () => {
      await Effect.runPromise(database.stop)
      await fs.rm(dir, { recursive: true, force: true })
    }
  }
}
