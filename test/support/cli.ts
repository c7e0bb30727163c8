/** Runs the `wearflow` command as an operator would after `npm install`: the bin, with node_modules/.bin on PATH (for bun). */
import { spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../", import.meta.url))
const bin = path.join(root, "node_modules", ".bin")

export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** A run in progress: its outcome, and what it printed so far (for a test waiting on its output). */
export type Running = Promise<Run> & { readonly sofar: { stdout: string; stderr: string } }

/**
 * A runner for `wearflow` in the environment `env()` gives (read on every run); everything a
 * run prints is appended to `printed`, so a test can check no secret was ever shown.
 */
export const wearflowCommand = (env: () => Readonly<Record<string, string>>, printed: Array<string>) =>
  (args: ReadonlyArray<string>, overrides: Record<string, string | undefined> = {}): Running => {
    const sofar = { stdout: "", stderr: "" }
    const run = new Promise<Run>((resolve, reject) => {
      const { DATABASE_URL: _ignored, ...inherited } = process.env
      const merged: Record<string, string | undefined> = { ...inherited, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`, ...env(), ...overrides }
      const child = spawn(path.join(bin, "wearflow"), args, {
        cwd: root,
        env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)),
        stdio: ["ignore", "pipe", "pipe"]
      })
      child.stdout.on("data", (chunk) => (sofar.stdout += chunk))
      child.stderr.on("data", (chunk) => (sofar.stderr += chunk))
      child.once("error", reject)
      child.once("close", (code) => {
        printed.push(sofar.stdout, sofar.stderr)
        resolve({ code, stdout: sofar.stdout, stderr: sofar.stderr })
      })
    })
    return Object.assign(run, { sofar })
  }
