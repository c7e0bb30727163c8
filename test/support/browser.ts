/**
 * A headless Chromium for browser tests, found without downloading anything:
 *   1. CHROME_PATH, when set;
 *   2. on Linux x64, the Chromium `@sparticuz/chromium` ships inside its npm package (brotli,
 *      inflated once to the temp dir), with the NSS/expat libraries it also ships, so a
 *      machine without a browser or those libraries runs it;
 *   3. a system Chrome or Chromium at its usual path (macOS, Linux arm64, Debian's `chromium`).
 * When none is found the browser tests skip, saying why (`browserUnavailable`).
 */
import { existsSync } from "node:fs"
import * as path from "node:path"
import { createRequire } from "node:module"
import puppeteer, { type Browser } from "puppeteer-core"

const SYSTEM_BROWSERS = [
  "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
  "/Applications/Chromium.app/Contents/MacOS/Chromium",
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
  "/usr/bin/google-chrome-stable",
  "/snap/bin/chromium"
]

interface Found {
  readonly executablePath: string
  readonly env: Record<string, string | undefined>
  readonly source: string
}

/** The packaged Chromium: only Linux x64 (the npm package ships no arm64 build). */
const packaged = async (): Promise<Found | undefined> => {
  if (process.platform !== "linux" || process.arch !== "x64") return undefined
  const { default: chromium } = await import("@sparticuz/chromium")
  // The package's entry inflates the libraries only on Amazon Linux, but they are what any
  // glibc Linux may lack; its own inflate (a `.tar.br` into the temp dir) does it here.
  const require = createRequire(import.meta.url)
  const entry = require.resolve("@sparticuz/chromium")
  const bin = path.join(path.dirname(entry), "..", "..", "bin")
  const { inflate } = require(path.join(path.dirname(entry), "lambdafs.cjs")) as { inflate: (file: string) => Promise<string> }
  const [executablePath, libraries, fonts] = await Promise.all([
    chromium.executablePath(),
    inflate(path.join(bin, "al2023.tar.br")),
    inflate(path.join(bin, "fonts.tar.br"))
  ])
  return {
    executablePath,
    env: {
      LD_LIBRARY_PATH: [path.join(libraries, "lib"), process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":"),
      FONTCONFIG_PATH: fonts
    },
    source: "@sparticuz/chromium"
  }
}

const find = async (): Promise<Found | undefined> => {
  const configured = process.env["CHROME_PATH"]
  if (configured !== undefined && configured.length > 0) return { executablePath: configured, env: {}, source: "CHROME_PATH" }
  const fromPackage = await packaged()
  if (fromPackage !== undefined) return fromPackage
  const system = SYSTEM_BROWSERS.find((candidate) => existsSync(candidate))
  return system === undefined ? undefined : { executablePath: system, env: {}, source: system }
}

/** Why no browser test can run here, or undefined when one can. */
export const browserUnavailable = async (): Promise<string | undefined> => {
  if (process.env["CHROME_PATH"] || (process.platform === "linux" && process.arch === "x64")) return undefined
  return SYSTEM_BROWSERS.some((candidate) => existsSync(candidate))
    ? undefined
    : `no Chromium for ${process.platform}-${process.arch}: @sparticuz/chromium ships Linux x64 only, and no system Chrome was found; set CHROME_PATH to run the browser tests`
}

/** Launches the browser: headless, no sandbox (tests often run as root), its own profile. */
export const launchBrowser = async (): Promise<Browser> => {
  const found = await find()
  if (found === undefined) throw new Error("no Chromium found (see browserUnavailable)")
  return puppeteer.launch({
    executablePath: found.executablePath,
    headless: "shell",
    env: { ...process.env, ...found.env },
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"],
    defaultViewport: { width: 1280, height: 860 }
  })
}
