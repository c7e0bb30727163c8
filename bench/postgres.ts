/**
 * A benchmark's own Postgres: an embedded server in a fresh temporary directory (which also
 * holds the Wearflow server's data dir), and how to stop it and remove the directory.
 */
import { Effect, Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as EmbeddedPostgres from "../core/storage/embedded-postgres.ts"

export const startBenchPostgres = async (prefix: string) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  // Postgres runs as an unprivileged user when started as root: it must reach the directory.
  await fs.chmod(dir, 0o755)
  const database = await Effect.runPromise(EmbeddedPostgres.start({ pgDir: path.join(dir, "pg"), database: "bench" }))
  return {
    dir,
    url: Redacted.value(database.url),
    stop: async () => {
      await Effect.runPromise(database.stop)
      await fs.rm(dir, { recursive: true, force: true })
    }
  }
}
