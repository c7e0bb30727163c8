/**
 * `wearflow plugin new provider|sink <id>`: a plugin folder from apps/cli/templates that
 * passes the conformance kit as generated, for a team to grow into the real thing.
 */
import { Data, Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { write } from "./io.ts"

/** The folder could not be written; nothing or only part was (the message says). */
export class ScaffoldError extends Data.TaggedError("ScaffoldError")<{ readonly message: string }> {}

export type PluginKind = "provider" | "sink"

const TEMPLATES = fileURLToPath(new URL("./templates/", import.meta.url))
const ROOT = fileURLToPath(new URL("../../", import.meta.url))

/** `acme-fit` → `AcmeFit` (type names), `ACME_FIT` (environment prefix), `acme_fit` (SQL names). */
export const namesOf = (id: string) => ({
  __ID__: id,
  __SNAKE__: id.replace(/-/g, "_"),
  __NAME__: id.split(/[-_]/).map((part) => part.charAt(0).toUpperCase() + part.slice(1)).join(""),
  __ENV__: id.replace(/-/g, "_").toUpperCase()
})

const fill = (text: string, names: Record<string, string>) => Object.entries(names).reduce((out, [key, value]) => out.replaceAll(key, value), text)

const filesUnder = async (dir: string): Promise<Array<string>> =>
  (await fs.readdir(dir, { withFileTypes: true, recursive: true })).filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name))

/** Writes the folder; refuses to touch one that exists. Answers the files written, relative to the root. */
export const scaffold = (kind: PluginKind, id: string, into: string | undefined) =>
  Effect.gen(function* () {
    const folder = path.resolve(into ?? path.join(ROOT, kind === "provider" ? "providers" : "sinks"), id)
    const exists = yield* Effect.promise(() => fs.access(folder).then(() => true, () => false))
    if (exists) return yield* new ScaffoldError({ message: `${folder} exists; choose another id or remove it` })
    const names = namesOf(id)
    const source = path.join(TEMPLATES, kind)
    const templates = yield* Effect.promise(() => filesUnder(source))
    const written: Array<string> = []
    for (const template of templates.sort()) {
      const target = path.join(folder, fill(path.relative(source, template), names).replace(/\.tmpl$/, ""))
      yield* Effect.tryPromise({
        try: async () => {
          await fs.mkdir(path.dirname(target), { recursive: true })
          await fs.writeFile(target, fill(await fs.readFile(template, "utf8"), names), { flag: "wx" })
        },
        catch: (cause) => new ScaffoldError({ message: `could not write ${target}: ${cause instanceof Error ? cause.message : "unknown error"}` })
      })
      written.push(path.relative(process.cwd(), target))
    }
    return { folder, written }
  })

export const run = (kind: PluginKind, id: string, into: string | undefined) =>
  scaffold(kind, id, into).pipe(
    Effect.flatMap(({ folder, written }) =>
      write(
        process.stdout,
        `Created the ${kind} plugin ${id}:\n${written.map((file) => `  ${file}\n`).join("")}\nCheck it: npx vitest run ${path.relative(process.cwd(), folder) || "."}\nRun it: add ${id} to WEARFLOW_PLUGINS (or wearflow.config.ts). Guide: docs/plugins.md\n`
      )
    ),
    Effect.as(0)
  )
