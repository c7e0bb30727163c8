/**
 * A fresh database for a conformance run: inside the Postgres server the test run already has
 * (vitest's `adminDatabaseUrl`, as this repository's global setup provides, or DATABASE_URL
 * with CREATEDB), else an embedded Postgres started in a temporary directory for the run.
 */
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { inject } from "vitest"
import * as EmbeddedPostgres from "../storage/embedded-postgres.ts"

let embedded: Promise<EmbeddedPostgres.EmbeddedPostgres> | undefined

const adminUrl = async (): Promise<string> => {
  const provided = (() => {
    try {
      return (inject as (key: string) => unknown)("adminDatabaseUrl")
    } catch {
      return undefined
    }
  })()
  if (typeof provided === "string") return provided
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL
  embedded ??= (async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-conformance-"))
    await fs.chmod(dir, 0o755)
    return Effect.runPromise(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "conformance_admin" }))
  })()
  return Redacted.value((await embedded).url)
}

/** Stops the embedded Postgres this file started, if any (the kits call it after their suites). */
export const stopEmbedded = async () => {
  if (embedded === undefined) return
  const db = await embedded
  embedded = undefined
  await Effect.runPromise(Effect.ignore(db.stop))
}

export const freshDatabase = async (): Promise<Redacted.Redacted<string>> => {
  const admin = await adminUrl()
  const name = `wf_conformance_${randomBytes(6).toString("hex")}`
  const client = new pg.Client({ connectionString: admin })
  await client.connect()
  try {
    await client.query(`create database ${name}`)
  } finally {
    await client.end()
  }
  const url = new URL(admin)
  url.pathname = `/${name}`
  return Redacted.make(url.toString())
}
