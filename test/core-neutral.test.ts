/**
 * Core and the apps name no provider: a provider is a plugin, and what core knows of one
 * comes through the Provider contract. Every file under core/ and apps/ is read, comments
 * included; migrations 0001–0008 are history and stay as they were written.
 */
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const ROOT = path.resolve(import.meta.dirname, "..")

/** Every provider plugin in the repository, by its folder's name. */
const PROVIDERS = readdirSync(path.join(ROOT, "providers"), { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name)

const capitalized = (name: string) => name[0]!.toUpperCase() + name.slice(1)

/**
 * A provider's name as a word or a word part: `garmin`, `Garmin` in `GarminProvider` or
 * `wearflowGarmin`, `GARMIN_CLIENT_ID`, `apis.garmin.com`; not `courage`.
 */
const PROVIDER_NAME = new RegExp(
  `(?:(?<![A-Za-z])(?:${PROVIDERS.join("|")})|(?<![A-Z])(?:${PROVIDERS.flatMap((name) => [capitalized(name), name.toUpperCase()]).join("|")}))(?![a-z])`
)

const HISTORY = /^core\/storage\/migrations\/000[1-8]_/

/** Files that still name a provider. Keep it empty: a file here is a plugin leaking into core. */
const KNOWN: ReadonlyArray<string> = []

const filesUnder = (dir: string): Array<string> =>
  readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = `${dir}/${entry.name}`
    if (entry.name === "node_modules") return []
    return entry.isDirectory() ? filesUnder(relative) : [relative]
  })

const naming = (file: string) =>
  readFileSync(path.join(ROOT, file), "utf8")
    .split("\n")
    .flatMap((line, i) => (PROVIDER_NAME.test(line) ? [`${file}:${i + 1}`] : []))

describe("provider-neutral core", () => {
  const files = ["core", "apps"].flatMap(filesUnder).filter((file) => !HISTORY.test(file))
  const offending = files.filter((file) => naming(file).length > 0)

  it("no file in core/ or apps/ names a provider, beyond the known ones", () => {
    expect(files.length).toBeGreaterThan(40)
    expect(offending.filter((file) => !KNOWN.includes(file)).flatMap(naming)).toEqual([])
  })

  it("the known list holds only files that still name one", () => {
    expect(KNOWN.filter((file) => !offending.includes(file))).toEqual([])
  })

  it("recognizes a provider's name as a word or a word part, and not inside other words", () => {
    expect(PROVIDERS).toEqual(expect.arrayContaining(["garmin", "oura", "withings"]))
    for (const named of ["garmin", "GarminProvider", "wearflowGarmin", "GARMIN_CLIENT_ID", "apis.garmin.com", "Oura", "ouraUser", "OURA_TOKEN", "@wearflow/oura", "WithingsProvider", "wbsapi.withings.net", "WITHINGS_SCOPES"]) {
      expect(PROVIDER_NAME.test(named), named).toBe(true)
    }
    for (const plain of ["courage", "Courage", "journal", "tourAmaline"]) expect(PROVIDER_NAME.test(plain), plain).toBe(false)
  })
})
