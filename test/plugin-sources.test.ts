/**
 * Every plugin in this repository keeps to its sandbox in its own source: no process.env, no
 * Bun.*, no global fetch, no other plugin, no child processes (the conformance kit's scan, run
 * over each folder under providers/ and sinks/, sinks included whether or not they run the kit).
 */
import { readdirSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { scanPluginSource } from "../core/testing/source-scan.ts"

const ROOT = path.resolve(import.meta.dirname, "..")
const plugins = ["providers", "sinks"].flatMap((kind) =>
  readdirSync(path.join(ROOT, kind), { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => `${kind}/${entry.name}`)
)

describe("plugin sources", () => {
  it("finds every plugin folder", () => {
    expect(plugins).toEqual(expect.arrayContaining(["providers/garmin", "providers/oura", "sinks/postgres", "sinks/s3", "sinks/webhooks"]))
  })

  it.each(plugins)("%s reaches nothing its manifest does not declare", (folder) => {
    expect(scanPluginSource(path.join(ROOT, folder)).map((v) => `${v.file}:${v.line} ${v.rule}`)).toEqual([])
  })
})
