/**
 * Vitest global setup: one Postgres server for the whole run — DATABASE_URL when set (it
 * needs CREATEDB), else an embedded one in a temporary directory. Test files create their
 * own databases in it (see database.ts).
 */
import { Effect, Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import type { TestProject } from "vitest/node"
import * as EmbeddedPostgres from "../../core/storage/embedded-postgres.ts"

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string
  }
}

export default async function setup(project: TestProject) {
  if (process.env.DATABASE_URL) {
    project.provide("adminDatabaseUrl", process.env.DATABASE_URL)
    return
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-test-"))
  await fs.chmod(dir, 0o755)
  const db = await Effect.runPromise(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "wearflow_admin" }))
  project.provide("adminDatabaseUrl", Redacted.value(db.url))
  return async () => {
    await Effect.runPromise(db.stop)
    await fs.rm(dir, { recursive: true, force: true })
  }
}
