/** The conformance kit's source scan: what it flags, and what it leaves alone. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { hostileVariants, MARKER } from "./hostile.ts"
import { scanPluginSource } from "./source-scan.ts"

const pluginFolder = (files: Record<string, string>) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wearflow-scan-"))
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    fs.writeFileSync(path.join(dir, name), text)
  }
  return dir
}

describe("scanPluginSource", () => {
  it("flags process.env, Bun.*, the global fetch, other plugins and child processes, by file and line", () => {
    const dir = pluginFolder({
      "mod.ts": [
        `import { x } from "@wearflow/acme"`,
        `const key = process.env.SECRET`,
        `const file = Bun.file("x")`,
        `await fetch("https://example.com")`,
        `import { spawn } from "node:child_process"`,
        `import { y } from "../../sinks/postgres/mod.ts"`
      ].join("\n")
    })
    expect(scanPluginSource(dir).map((v) => v.line)).toEqual([1, 2, 3, 4, 5, 6])
  })

  it("leaves comments, method calls named fetch, core imports, tests and the testing folder alone", () => {
    const dir = pluginFolder({
      "mod.ts": [
        `// never read process.env or call fetch( here`,
        `/* Bun.serve is not for plugins */`,
        `import { Inbox } from "@wearflow/core/pipeline/inbox"`,
        `const page = client.fetch(request)`,
        `const pull = provider.fetch(item)`
      ].join("\n"),
      "mod.test.ts": `const url = process.env.DATABASE_URL`,
      "testing/fake.ts": `await fetch("http://127.0.0.1")`
    })
    expect(scanPluginSource(dir)).toEqual([])
  })
})

describe("hostileVariants", () => {
  it("drops and replaces every field, nested ones and the first array item included, with the marker among the values", () => {
    const variants = hostileVariants({ a: 1, b: { c: "x" }, d: [{ e: 2 }] })
    expect(variants).toContainEqual({ b: { c: "x" }, d: [{ e: 2 }] })
    expect(variants).toContainEqual({ a: 1, b: { c: MARKER }, d: [{ e: 2 }] })
    expect(variants).toContainEqual({ a: 1, b: { c: "x" }, d: [{ e: null }] })
    expect(variants).toContainEqual({ a: 1, b: { c: "x" }, d: [] })
  })
})
