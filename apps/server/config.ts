/**
 * The server's configuration, from the environment. Secrets left unset are generated once
 * into the data dir (mode 0600) so `npm start` works with no set-up and keeps working
 * across restarts.
 */
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { parseKeys } from "@wearflow/core/crypto"
import { InboxSettings } from "@wearflow/core/pipeline/inbox"
import { SyncSettings } from "@wearflow/core/sync/settings"
import { s3LocationConfig } from "@wearflow/core/storage/s3"
import { Config, Data, Duration, Effect, LogLevel, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

export const ServerConfig = Config.all({
  port: Config.port("PORT").pipe(Config.withDefault(8080)),
  host: Config.string("HOST").pipe(Config.withDefault("0.0.0.0")),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")),
  dataDir: Config.string("WEARFLOW_DATA_DIR").pipe(Config.withDefault("./.wearflow")),
  apiKey: Config.option(Config.redacted("WEARFLOW_API_KEY")),
  encryptionKey: Config.option(Config.redacted("WEARFLOW_ENCRYPTION_KEY")),
  logLevel: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info)),
  // Ingest jobs in flight, taken in batches of up to 32 (core/pipeline/ingest.ts layerTakers):
  // a batch costs about the same statements whatever its size, so larger ones cost less per job.
  ingestConcurrency: Config.integer("WEARFLOW_INGEST_CONCURRENCY").pipe(
    Config.withDefault(64),
    Config.validate({ message: "WEARFLOW_INGEST_CONCURRENCY must be 0..64 (0: this process only receives)", validation: (n) => n >= 0 && n <= 64 })
  ),
  /** Database connections per process: the ingest takers, the sinks and the requests share them. */
  databasePool: Config.integer("WEARFLOW_DATABASE_POOL").pipe(
    Config.withDefault(32),
    Config.validate({ message: "WEARFLOW_DATABASE_POOL must be 4..500", validation: (n) => n >= 4 && n <= 500 })
  ),
  /** How long a crashed process's in-flight queue items stay locked before another takes them. */
  queueLockExpiration: Config.duration("WEARFLOW_QUEUE_LOCK_EXPIRATION").pipe(Config.withDefault(Duration.seconds(30))),
  /** Large bodies are stored and processed as parts of at most this many characters / items. */
  partBytes: Config.integer("WEARFLOW_INGEST_PART_BYTES").pipe(
    Config.withDefault(InboxSettings.defaults.partBytes),
    Config.validate({ message: "WEARFLOW_INGEST_PART_BYTES must be at least 1024", validation: (n) => n >= 1024 })
  ),
  partItems: Config.integer("WEARFLOW_INGEST_PART_ITEMS").pipe(
    Config.withDefault(InboxSettings.defaults.partItems),
    Config.validate({ message: "WEARFLOW_INGEST_PART_ITEMS must be positive", validation: (n) => n >= 1 })
  ),
  /** Parts of one body processed at the same time (the other workers serve other notifications). */
  partsInFlight: Config.integer("WEARFLOW_INGEST_PARTS_IN_FLIGHT").pipe(
    Config.withDefault(InboxSettings.defaults.partsInFlight),
    Config.validate({ message: "WEARFLOW_INGEST_PARTS_IN_FLIGHT must be 1..64", validation: (n) => n >= 1 && n <= 64 })
  ),
  /** /health reports ingestion stalled when the oldest waiting job is this old and none completed meanwhile. */
  ingestStallAfter: Config.duration("WEARFLOW_INGEST_STALL_AFTER").pipe(Config.withDefault(Duration.minutes(5))),
  /** How long processed raw bodies are kept in the inbox, and how often older ones are deleted. */
  inboxRetention: Config.duration("WEARFLOW_INBOX_RETENTION").pipe(Config.withDefault(Duration.days(7))),
  inboxRetentionInterval: Config.duration("WEARFLOW_INBOX_RETENTION_INTERVAL").pipe(
    Config.withDefault(Duration.minutes(10)),
    Config.validate({ message: "WEARFLOW_INBOX_RETENTION_INTERVAL must be a positive duration", validation: (d) => Duration.toMillis(d) > 0 })
  ),
  /** First wait before retrying a fetch the provider answered with 429/5xx (doubling, at most 2 min). */
  pullBackoff: Config.duration("WEARFLOW_PULL_BACKOFF").pipe(Config.withDefault(Duration.seconds(1))),
  maxBodyBytes: Config.integer("WEARFLOW_MAX_BODY_BYTES").pipe(Config.withDefault(128 * 1024 * 1024)),
  /** How long a request waits for the database before it is answered 503 with Retry-After. */
  databaseWait: Config.duration("WEARFLOW_DATABASE_WAIT").pipe(
    Config.withDefault(Duration.seconds(10)),
    Config.validate({ message: "WEARFLOW_DATABASE_WAIT must be a positive duration", validation: (d) => Duration.toMillis(d) > 0 })
  ),
  /** The URL users' browsers and providers reach this server at (link URLs, OAuth callbacks). */
  publicUrl: Config.option(
    Config.string("WEARFLOW_PUBLIC_URL").pipe(
      Config.validate({ message: "WEARFLOW_PUBLIC_URL must be an http(s) URL", validation: (s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) }),
      Config.map((s) => s.replace(/\/+$/, ""))
    )
  ),
  /** Activity files go to this S3-compatible bucket when set, else to `<data dir>/files`. */
  filesBucket: s3LocationConfig("WEARFLOW_FILES_S3", "activity-files"),
  /** How often OAuth 2.0 tokens are checked, and how long before expiry they are refreshed. */
  tokenRefresh: Config.all({
    interval: Config.duration("WEARFLOW_TOKEN_REFRESH_INTERVAL").pipe(Config.withDefault(Duration.minutes(1))),
    ahead: Config.duration("WEARFLOW_TOKEN_REFRESH_AHEAD").pipe(Config.withDefault(Duration.hours(1)))
  }).pipe(
    Config.validate({
      // Providers may ask for a refresh 10 minutes before expiry; a check may come one interval late.
      message: "WEARFLOW_TOKEN_REFRESH_AHEAD must exceed 10 minutes plus WEARFLOW_TOKEN_REFRESH_INTERVAL",
      validation: ({ ahead, interval }) => Duration.toMillis(ahead) > 600_000 + Duration.toMillis(interval)
    })
  )
})
export type ServerConfig = Config.Config.Success<typeof ServerConfig>

const positive = (name: string, fallback: Duration.Duration) =>
  Config.duration(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive duration`, validation: (d) => Duration.toMillis(d) > 0 })
  )

/** Backfills (history requests): what to ask for, when a window counts as complete, the provider's budget. */
export const BackfillConfig = Config.all({
  onConnect: Config.boolean("WEARFLOW_BACKFILL_ON_CONNECT").pipe(Config.withDefault(BackfillSettings.defaults.onConnect)),
  days: Config.integer("WEARFLOW_BACKFILL_DAYS").pipe(
    Config.withDefault(BackfillSettings.defaults.days),
    Config.validate({ message: "WEARFLOW_BACKFILL_DAYS must be 1..1825", validation: (n) => n >= 1 && n <= 1825 })
  ),
  types: Config.option(Config.array(Config.string(), "WEARFLOW_BACKFILL_TYPES")).pipe(
    Config.map(Option.map((types) => types.map((t) => t.trim()).filter((t) => t.length > 0))),
    Config.map(Option.getOrUndefined)
  ),
  quietPeriod: positive("WEARFLOW_BACKFILL_QUIET_PERIOD", BackfillSettings.defaults.quietPeriod),
  settle: Config.duration("WEARFLOW_BACKFILL_SETTLE").pipe(Config.withDefault(BackfillSettings.defaults.settle)),
  budgetDays: Config.integer("WEARFLOW_BACKFILL_BUDGET_DAYS").pipe(
    Config.withDefault(BackfillSettings.defaults.budgetDays),
    Config.validate({ message: "WEARFLOW_BACKFILL_BUDGET_DAYS must be positive (the provider's limit, e.g. 100 days a minute for a test key)", validation: (n) => n > 0 })
  ),
  budgetWindow: positive("WEARFLOW_BACKFILL_BUDGET_WINDOW", BackfillSettings.defaults.budgetWindow),
  retryBackoff: positive("WEARFLOW_BACKFILL_RETRY_BACKOFF", BackfillSettings.defaults.retryBackoff)
})

/** Polled connections: jitter, back-off, the provider's app-wide budget of rounds, an interval overriding the providers'. */
export const SyncConfig = Config.all({
  jitter: Config.duration("WEARFLOW_SYNC_JITTER").pipe(Config.withDefault(SyncSettings.defaults.jitter)),
  budgetRounds: Config.integer("WEARFLOW_SYNC_BUDGET_ROUNDS").pipe(
    Config.withDefault(SyncSettings.defaults.budgetRounds),
    Config.validate({ message: "WEARFLOW_SYNC_BUDGET_ROUNDS must be positive", validation: (n) => n > 0 })
  ),
  budgetWindow: positive("WEARFLOW_SYNC_BUDGET_WINDOW", SyncSettings.defaults.budgetWindow),
  retryBackoff: positive("WEARFLOW_SYNC_RETRY_BACKOFF", SyncSettings.defaults.retryBackoff),
  maxBackoff: positive("WEARFLOW_SYNC_MAX_BACKOFF", SyncSettings.defaults.maxBackoff),
  concurrency: Config.integer("WEARFLOW_SYNC_CONCURRENCY").pipe(
    Config.withDefault(SyncSettings.defaults.concurrency),
    Config.validate({ message: "WEARFLOW_SYNC_CONCURRENCY must be positive (and well below the database pool, WEARFLOW_DATABASE_POOL)", validation: (n) => n > 0 })
  ),
  startInterval: positive("WEARFLOW_SYNC_START_INTERVAL", SyncSettings.defaults.startInterval),
  roundsPerExecution: Config.integer("WEARFLOW_SYNC_ROUNDS_PER_EXECUTION").pipe(
    Config.withDefault(SyncSettings.defaults.roundsPerExecution),
    Config.validate({ message: "WEARFLOW_SYNC_ROUNDS_PER_EXECUTION must be positive", validation: (n) => n > 0 })
  ),
  // Unset: each provider's own interval.
  interval: Config.option(Config.duration("WEARFLOW_SYNC_INTERVAL").pipe(
    Config.validate({ message: "WEARFLOW_SYNC_INTERVAL must be a positive duration", validation: (d) => Duration.toMillis(d) > 0 })
  )).pipe(Config.map(Option.getOrUndefined))
})

/**
 * This process as a workflow runner: an address unique among the processes sharing the
 * database and stable across restarts (default: host name and PORT).
 */
export const RunnerConfig = Config.all({
  address: Config.option(Config.string("WEARFLOW_RUNNER_ADDRESS").pipe(
    Config.validate({ message: "WEARFLOW_RUNNER_ADDRESS must be host:port", validation: (s) => /^[^:\s]+:\d{1,5}$/.test(s) })
  )),
  lockExpiration: positive("WEARFLOW_RUNNER_LOCK_EXPIRATION", Duration.seconds(35))
})

/** The runner address: WEARFLOW_RUNNER_ADDRESS, or this host's name and the HTTP port. */
export const runnerAddress = (runner: Config.Config.Success<typeof RunnerConfig>, port: number) =>
  Option.match(runner.address, {
    onNone: () => ({ host: os.hostname(), port }),
    onSome: (address) => {
      const at = address.lastIndexOf(":")
      return { host: address.slice(0, at), port: Number(address.slice(at + 1)) }
    }
  })


/** A generated secret could not be read or written in the data dir. */
export class SecretFileError extends Data.TaggedError("SecretFileError")<{ readonly message: string }> {}

/** Reads `<dataDir>/<name>`, creating it with `generate()` when it does not exist. */
const secretFile = (dataDir: string, name: string, generate: () => string) =>
  Effect.tryPromise({
    try: async () => {
      const file = path.join(dataDir, name)
      await fs.mkdir(dataDir, { recursive: true })
      const existing = await fs.readFile(file, "utf8").catch(() => undefined)
      if (existing !== undefined) return { value: existing.trim(), file, created: false }
      const value = generate()
      await fs.writeFile(file, value + "\n", { mode: 0o600, flag: "wx" })
      return { value, file, created: true }
    },
    catch: (cause) => new SecretFileError({ message: `cannot read or create ${name} in ${dataDir}: ${String(cause)}` })
  })

/** WEARFLOW_API_KEY, or a key generated into the data dir (its path is logged, never the key). */
export const resolveApiKey = (config: ServerConfig) =>
  Option.match(config.apiKey, {
    onSome: Effect.succeed,
    onNone: () =>
      secretFile(config.dataDir, "api-key", () => "wf_" + randomBytes(24).toString("base64url")).pipe(
        Effect.tap((s) => Effect.logInfo(`WEARFLOW_API_KEY is not set; using the key in ${s.file}`)),
        Effect.map((s) => Redacted.make(s.value))
      )
  })

/**
 * WEARFLOW_ENCRYPTION_KEY — 32-byte keys, base64 or hex, current first (`new,old` while
 * rotating) — or one generated into the data dir.
 */
export const resolveEncryptionKey = (config: ServerConfig) =>
  Option.match(config.encryptionKey, {
    onSome: (key) => Effect.succeed(Redacted.value(key)),
    onNone: () =>
      secretFile(config.dataDir, "encryption-key", () => randomBytes(32).toString("base64")).pipe(
        Effect.tap((s) => (s.created ? Effect.logWarning(`generated a token encryption key in ${s.file}; back it up`) : Effect.void)),
        Effect.map((s) => s.value)
      )
  }).pipe(
    Effect.flatMap((text) => {
      const keys = parseKeys(text)
      return keys
        ? Effect.succeed(Redacted.make(keys))
        : Effect.fail(new SecretFileError({ message: "token encryption keys must be 32 bytes each, base64 or hex, separated by commas" }))
    })
  )
