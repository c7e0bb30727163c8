/**
 * What the server-level tests run against: a fake Garmin, a fresh database, the real server
 * (one or more replicas, each with its own data dir) pointed at both, and a pg client on the
 * database for assertions.
 */
import { Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { freshDatabaseUrl } from "./database.ts"
import { type FakeGarmin, type FakeGarminOptions, startFakeGarmin } from "../../providers/garmin/testing/fake-garmin.ts"
import { type RunningServer, startServer } from "./server.ts"

export interface GarminStack {
  readonly garmin: FakeGarmin
  /** The first replica. */
  readonly server: RunningServer
  readonly servers: ReadonlyArray<RunningServer>
  readonly db: pg.Client
  /** The first replica's environment (also what a command beside it needs). */
  readonly env: Readonly<Record<string, string>>
  readonly dataDir: string
  close(): Promise<void>
}

export const startGarminStack = async (options: {
  /** Names the temporary data dirs. */
  readonly name: string
  readonly consumer: FakeGarminOptions
  readonly apiKey: string
  /** Added to (and overriding) the defaults. */
  readonly env?: Readonly<Record<string, string>>
  readonly replicas?: number
}): Promise<GarminStack> => {
  const garmin = await startFakeGarmin(options.consumer)
  const url = Redacted.value(await freshDatabaseUrl())
  const dataDirs = await Promise.all(
    Array.from({ length: options.replicas ?? 1 }, () => fs.mkdtemp(path.join(os.tmpdir(), `wearflow-${options.name}-`)))
  )
  const envFor = (dataDir: string) => ({
    // Tests that are not about backfills keep their fake Garmin's request log to themselves.
    WEARFLOW_BACKFILL_ON_CONNECT: "false",
    DATABASE_URL: url,
    WEARFLOW_API_KEY: options.apiKey,
    WEARFLOW_DATA_DIR: dataDir,
    ...garmin.env,
    ...options.env
  })
  const servers = await Promise.all(dataDirs.map((dir) => startServer(envFor(dir))))
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  return {
    garmin,
    server: servers[0]!,
    servers,
    db,
    env: envFor(dataDirs[0]!),
    dataDir: dataDirs[0]!,
    close: async () => {
      await db.end()
      await Promise.all(servers.map((server) => server.stop()))
      await garmin.close()
      await Promise.all(dataDirs.map((dir) => fs.rm(dir, { recursive: true, force: true })))
    }
  }
}
