/**
 * The real Wearflow server for a benchmark: `bun apps/server/main.ts` on a free loopback port
 * with the given environment, started and waited for like an operator would (its /health).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

export interface BenchServer {
  readonly url: string
  readonly pid: number
  readonly process: ChildProcess
  readonly stop: () => Promise<void>
}

const root = new URL("..", import.meta.url).pathname

/**
 * The server as `npm start` runs it: the environment its start script sets (e.g.
 * `BUN_JSC_heapGrowthMaxIncrease=1`), Bun's flags from it (`--smol`), then BENCH_SERVER_FLAGS
 * (e.g. `--cpu-prof-md`).
 */
const startScript: string = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts.start
const start = /^((?:[A-Za-z_]\w*=\S+\s+)*)bun((?:\s+--[\w-]+)*)\s+apps\/server\/main\.ts$/.exec(startScript.trim())
if (start === null) throw new Error(`bench/server.ts does not understand package.json's start script: ${startScript}`)
export const benchServerFlags = [...start[2]!.trim().split(/\s+/).filter(Boolean), ...(process.env.BENCH_SERVER_FLAGS ?? "").split(" ").filter(Boolean)]
/** The start script's environment, unless the bench's own sets a variable (to compare). */
export const benchServerEnv: Record<string, string> = Object.fromEntries(
  start[1]!.trim().split(/\s+/).filter(Boolean).map((assignment) => {
    const [name, ...value] = assignment.split("=")
    return [name!, process.env[name!] ?? value.join("=")]
  })
)
// Benches that spawn the server themselves (push.ts, large-body.ts) pass it the bench's environment.
Object.assign(process.env, benchServerEnv)

/** Servers still running: killed if the bench exits without stopping them (a failed step). */
const running = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

/** Starts the server with `env` over the bench's own. */
export const startBenchServer = async (env: Record<string, string>): Promise<BenchServer> => {
  const port = 20_000 + Math.floor(Math.random() * 20_000)
  const child = spawn(process.execPath, [...benchServerFlags, path.join(root, "apps/server/main.ts")], {
    cwd: root,
    env: { ...process.env, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "Warn", ...env },
    stdio: ["ignore", "inherit", "inherit"]
  })
  running.add(child)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  void exited.then(() => running.delete(child))
  const url = `http://127.0.0.1:${port}`
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode} before it answered /health`)
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false)
    if (ok) break
    await Bun.sleep(100)
  }
  return {
    url,
    pid: child.pid!,
    process: child,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM")
      await exited
    }
  }
}
