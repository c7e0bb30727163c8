/** Spawns the real Bun server (apps/server/main.ts) and waits until it serves. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { freePort } from "../../core/storage/embedded-postgres.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url))

export interface RunningServer {
  readonly baseUrl: string
  readonly process: ChildProcess
  /** Everything the server wrote to stdout and stderr so far. */
  readonly logs: () => string
  /**
   * Sends `signal` and resolves with the exit code. SIGKILL kills the worker processes the
   * server started as well, as a crash of the machine would (`alone`: the server only).
   */
  readonly stop: (signal?: NodeJS.Signals, options?: { readonly alone?: boolean }) => Promise<number | null>
}

/** The processes `pid` started (Linux /proc, else pgrep): a server's worker processes. */
export const childrenOf = (pid: number): Array<number> => {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number)
  } catch {
    try {
      return execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number)
    } catch {
      return []
    }
  }
}

/** `env` may depend on the server's own base URL (e.g. a public URL a provider calls back). */
export const startServer = async (
  env: Record<string, string | undefined> | ((baseUrl: string) => Record<string, string | undefined>),
  timeoutMs = 60_000
): Promise<RunningServer> => {
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const { DATABASE_URL: _ignored, ...inherited } = process.env
  // As `npm start` runs it (a smaller heap, collected more often).
  const child = spawn(bun, ["--smol", "apps/server/main.ts"], {
    cwd: root,
    env: { ...inherited, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "Info", ...(typeof env === "function" ? env(baseUrl) : env) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout!.on("data", (chunk) => (output += chunk))
  child.stderr!.on("data", (chunk) => (output += chunk))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output}`)
    const ok = await fetch(`${baseUrl}/openapi.json`).then((r) => r.ok, () => false)
    if (ok) break
    if (Date.now() > deadline) {
      child.kill("SIGKILL")
      throw new Error(`server did not become healthy:\n${output}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    baseUrl,
    process: child,
    logs: () => output,
    stop: async (signal = "SIGTERM", options) => {
      const workers = signal === "SIGKILL" && !options?.alone ? childrenOf(child.pid!) : []
      if (child.exitCode === null) child.kill(signal)
      for (const pid of workers) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone already
        }
      }
      return exited
    }
  }
}

/** Polls `probe` until it returns a value other than undefined. */
export const eventually = async <A>(probe: () => Promise<A | undefined>, timeoutMs = 15_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error("condition not met in time")
    await new Promise((r) => setTimeout(r, 100))
  }
}
