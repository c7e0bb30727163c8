/**
 * What a plugin's own source may not do, found by reading it: reach the process environment,
 * Bun's APIs or the global `fetch` (the host's sandbox could not see those), or import
 * another plugin or the apps. Its tests and its testing folder (fakes) are exempt.
 */
import * as fs from "node:fs"
import * as path from "node:path"

export interface Violation {
  readonly file: string
  readonly line: number
  readonly rule: string
}

const RULES: ReadonlyArray<{ readonly rule: string; readonly pattern: RegExp }> = [
  { rule: "reads process.env (declare env names in the manifest and read them through its config)", pattern: /\bprocess\s*\.\s*env\b/ },
  { rule: "uses Bun's APIs (plugins run on Node too, inside the host's sandbox)", pattern: /\bBun\s*\./ },
  { rule: "calls the global fetch (use the HttpClient the host gives the plugin)", pattern: /(?<![.\w])fetch\s*\(|\bglobalThis\s*\.\s*fetch\b/ },
  { rule: "uses Deno's APIs", pattern: /\bDeno\s*\./ },
  { rule: "imports another plugin or the apps", pattern: /from\s+["'](?:@wearflow\/(?!core\b)[^"']+|(?:\.\.\/)+(?:providers|sinks|apps)\/[^"']*)["']/ },
  { rule: "spawns processes", pattern: /from\s+["'](?:node:)?child_process["']/ }
]

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === "testing" || entry.name === "node_modules" ? [] : sourceFiles(full)
    return /\.(ts|js|mts|mjs)$/.test(entry.name) && !/\.test\.[mc]?[jt]s$/.test(entry.name) ? [full] : []
  })

/** Comments may mention what code may not do. */
const withoutComments = (text: string) =>
  text.replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, " ")).replace(/(^|[^:"'`])\/\/.*$/gm, "$1")

/** Every rule the plugin folder's source breaks, by file and line. */
export const scanPluginSource = (folder: string): ReadonlyArray<Violation> =>
  sourceFiles(folder).flatMap((file) =>
    withoutComments(fs.readFileSync(file, "utf8"))
      .split("\n")
      .flatMap((text, index) =>
        RULES.filter(({ pattern }) => pattern.test(text)).map(({ rule }) => ({ file: path.relative(folder, file), line: index + 1, rule }))
      )
  )
