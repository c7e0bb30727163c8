/**
 * The embedded Postgres after a `kill -9` of the server (README: "an embedded Postgres left by
 * a killed server is adopted on the next start"): Postgres keeps running, the next server adopts
 * it — the same postmaster, the data from before — also when the killed server has not been
 * reaped yet (a zombie still answers signal 0), as a supervisor's immediate restart sees it.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as EmbeddedPostgres from "../core/storage/embedded-postgres.ts"
import { eventually, startServer } from "./support/server.ts"

const root = fileURLToPath(new URL("../", import.meta.url))
const bun = fileURLToPath(new URL("../node_modules/.bin/bun", import.meta.url))
const apiKey = "wf_embedded_restart_key"

let dataDir: string
const parents: Array<ChildProcess> = []

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-restart-"))
  await fs.chmod(dataDir, 0o755)
})

afterAll(async () => {
  for (const parent of parents) parent.kill("SIGKILL")
  // A test that failed half-way may leave its cluster running: stop it before removing its files.
  const postmaster = await postmasterPid(path.join(dataDir, "pg"))
  if (postmaster !== undefined) {
    try {
      process.kill(postmaster, "SIGQUIT")
    } catch {
      // already gone
    }
  }
  await fs.rm(dataDir, { recursive: true, force: true })
})

const postmasterPid = async (pgDir: string) => {
  const text = await fs.readFile(path.join(pgDir, "postmaster.pid"), "utf8").catch(() => undefined)
  return text === undefined ? undefined : Number(text.split("\n")[0])
}

const running = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The process state letter from /proc (Linux): "Z" for a zombie. */
const state = async (pid: number) => {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined)
  return stat === undefined ? undefined : stat.slice(stat.lastIndexOf(")") + 1).trim()[0]
}

/**
 * A process whose parent never reaps its children: `sh` starts `command` in the background,
 * prints its pid, then becomes `sleep`, which never waits for it. Killed, the child stays a zombie.
 */
const spawnUnreaped = (command: string, env: Record<string, string | undefined>) => {
  const parent = spawn("sh", ["-c", `${command} & echo "child-pid:$!"; exec sleep 600`], {
    cwd: root,
    env: env as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"]
  })
  parents.push(parent)
  let output = ""
  parent.stdout!.on("data", (chunk) => (output += chunk))
  parent.stderr!.on("data", (chunk) => (output += chunk))
  const pid = eventually(async () => {
    const match = /child-pid:(\d+)/.exec(output)
    return match ? Number(match[1]) : undefined
  })
  return { parent, pid, logs: () => output }
}

/** Kills `pid` with SIGKILL and waits until it is a zombie: dead, and not reaped by its parent. */
const killToZombie = async (pid: number) => {
  process.kill(pid, "SIGKILL")
  await eventually(async () => ((await state(pid)) === "Z" ? true : undefined))
}

const api = (baseUrl: string, route: string, init?: RequestInit) =>
  fetch(`${baseUrl}${route}`, { ...init, headers: { "x-api-key": apiKey, "content-type": "application/json", ...init?.headers } })

const createUser = async (baseUrl: string, clientUserId: string) => {
  const response = await api(baseUrl, "/v2/user", { method: "POST", body: JSON.stringify({ client_user_id: clientUserId }) })
  expect(response.status).toBe(200)
  return ((await response.json()) as { user_id: string }).user_id
}

describe.skipIf(process.platform !== "linux")("restart after kill -9 on the embedded Postgres", () => {
  it("adopts the Postgres a killed server left running, also while the killed server is an unreaped zombie", async () => {
    const pgDir = path.join(dataDir, "pg")
    const env = { WEARFLOW_DATA_DIR: dataDir, GARMIN_CLIENT_ID: "c", WEARFLOW_API_KEY: apiKey }

    // kill -9, reaped: Postgres runs on without the server.
    const first = await startServer(env)
    const postmaster = (await postmasterPid(pgDir))!
    const before = await createUser(first.baseUrl, "before-kill")
    expect(await first.stop("SIGKILL")).toBe(null)
    expect(running(postmaster)).toBe(true)

    const second = await startServer(env)
    expect(await postmasterPid(pgDir)).toBe(postmaster) // adopted, not started anew
    expect((await api(second.baseUrl, `/v2/user/${before}`)).status).toBe(200)
    expect(await second.stop("SIGKILL")).toBe(null)

    // kill -9, not reaped: the claim names a zombie, which holds nothing.
    const { DATABASE_URL: _ignored, ...inherited } = process.env
    const port = await EmbeddedPostgres.freePort()
    const third = spawnUnreaped(`"${bun}" apps/server/main.ts`, { ...inherited, ...env, PORT: String(port), HOST: "127.0.0.1" })
    const thirdPid = await third.pid
    const thirdUrl = `http://127.0.0.1:${port}`
    await eventually(() => fetch(`${thirdUrl}/api/v1/webhooks/garmin/health`).then((r) => (r.ok ? true : undefined), () => undefined), 60_000)
    const during = await createUser(thirdUrl, "before-zombie")
    expect((await fs.readFile(path.join(dataDir, "embedded-postgres.pid"), "utf8")).trim()).toBe(String(thirdPid))
    await killToZombie(thirdPid)
    expect(running(thirdPid)).toBe(true) // what a plain signal-0 check sees

    const fourth = await startServer(env)
    expect(await postmasterPid(pgDir)).toBe(postmaster)
    for (const userId of [before, during]) expect((await api(fourth.baseUrl, `/v2/user/${userId}`)).status).toBe(200)
    expect(fourth.logs()).not.toContain("in use by process")

    // The adopting server owns the cluster now: a clean stop stops Postgres too.
    expect(await fourth.stop("SIGTERM")).toBe(0)
    expect(await postmasterPid(pgDir)).toBe(undefined)
  })

  it("still refuses a data directory whose holder runs", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-claimed-"))
    await fs.chmod(dir, 0o755)
    const holder = spawn("sleep", ["600"], { stdio: "ignore" })
    try {
      await fs.writeFile(path.join(dir, "embedded-postgres.pid"), String(holder.pid))
      const result = await Effect.runPromise(Effect.either(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "wearflow" })))
      expect(result._tag).toBe("Left")
      if (result._tag === "Left") expect(result.left.message).toContain(`in use by process ${holder.pid}`)
    } finally {
      holder.kill("SIGKILL")
      await fs.rm(dir, { recursive: true, force: true })
    }
  })

  it("takes over a claim whose holder is a zombie", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-zombie-"))
    await fs.chmod(dir, 0o755)
    const holder = spawnUnreaped("sleep 600", { PATH: process.env.PATH })
    const pid = await holder.pid
    try {
      await fs.writeFile(path.join(dir, "embedded-postgres.pid"), String(pid))
      await killToZombie(pid)
      const db = await Effect.runPromise(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "wearflow" }))
      expect((await fs.readFile(path.join(dir, "embedded-postgres.pid"), "utf8")).trim()).toBe(String(process.pid))
      await Effect.runPromise(db.stop)
    } finally {
      holder.parent.kill("SIGKILL")
      await fs.rm(dir, { recursive: true, force: true })
    }
  })
})
