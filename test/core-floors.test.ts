/**
 * Core's floors, each a folder, only point down: tenancy → connections → pipeline → backfill,
 * on a base of contracts and storage, with the app-facing modules (registry, startup, the kit)
 * on top. A lower floor that must react to a higher one offers a hook (a Tag the higher floor
 * provides: ParkedNotifications, ConnectionHistory, HistoryObserver), never an import upward.
 * Type-only imports carry no dependency at run time and are not counted.
 */
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const CORE = path.resolve(import.meta.dirname, "../core")

const FLOORS: ReadonlyArray<readonly [RegExp, number, string]> = [
  [/^(registry|startup)\.ts$|^testing\//, 5, "app-facing"],
  [/^(backfill|sync|erasure)\//, 4, "backfill"],
  [/^pipeline\//, 3, "pipeline"],
  [/^connections\//, 2, "connections"],
  [/^tenancy\//, 1, "tenancy"],
  [/./, 0, "base"]
]

const floorOf = (file: string) => FLOORS.find(([pattern]) => pattern.test(file))!

const files = (dir: string): Array<string> =>
  readdirSync(path.join(CORE, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = dir === "" ? entry.name : `${dir}/${entry.name}`
    if (entry.isDirectory()) return entry.name === "migrations" ? [] : files(relative)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [relative] : []
  })

/** Value imports of core files, as paths relative to core/. */
const importsOf = (file: string) =>
  [...readFileSync(path.join(CORE, file), "utf8").matchAll(/^import (type )?[\s\S]*?from "([^"]+)"/gm)]
    .filter((match) => match[1] === undefined && match[2]!.startsWith("."))
    .map((match) => path.relative(CORE, path.resolve(path.dirname(path.join(CORE, file)), match[2]!)))

describe("core's floors", () => {
  it("every value import points to the same floor or one below", () => {
    const upward = files("").flatMap((file) => {
      const [, rank, floor] = floorOf(file)
      return importsOf(file).flatMap((target) => {
        const [, targetRank, targetFloor] = floorOf(target)
        return targetRank > rank ? [`${file} (${floor}) imports ${target} (${targetFloor})`] : []
      })
    })
    expect(upward).toEqual([])
  })

  it("reads the imports it judges", () => {
    expect(importsOf("pipeline/ingest.ts")).toContain("pipeline/history.ts")
    expect(importsOf("backfill/arrivals.ts")).toContain("pipeline/history.ts")
  })
})
