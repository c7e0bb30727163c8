/**
 * The server's configuration, from the environment. Secrets left unset are generated once
 * into the data dir (mode 0600) so `npm start` works with no set-up and keeps working
 * across restarts.
 */
import { BackfillSettings } from "@wearflow/core/backfill/settings"
import { ErasureSettings } from "@wearflow/core/erasure/deletion"
import { parseKeys } from "@wearflow/core/crypto"
import * as GapMonitor from "@wearflow/core/pipeline/gap-monitor"
import { InboxSettings } from "@wearflow/core/pipeline/inbox"
import { isSecret, newSecret } from "@wearflow/core/webhook-signature"
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
  // 32: at 64 the workers drained ~20% faster but took the CPU the PUSH acks need (saturation
  // 1,791 → 984 req/s, p99 at 1,000/s 44 → 99 ms; bench/push.ts, bench/ingest.ts).
  ingestConcurrency: Config.integer("WEARFLOW_INGEST_CONCURRENCY").pipe(
    Config.withDefault(32),
    Config.validate({ message: "WEARFLOW_INGEST_CONCURRENCY must be 0..64 (0: this process only receives)", validation: (n) => n >= 0 && n <= 64 })
  ),
  /**
   * What this process does: `all` (the HTTP API and the background work), `receiver` (the HTTP
   * API only: requests and provider webhooks), `worker` (the background work only: ingest,
   * sinks, polls, token refresh, retention, alerts). Processes of every role share the database.
   */
  role: Config.literal("all", "receiver", "worker")("WEARFLOW_ROLE").pipe(Config.withDefault("all" as const)),
  /**
   * Worker processes an `all` server starts and watches beside itself; it then only receives,
   * so requests and background work each have an event loop of their own. 0 (the default): one
   * process does everything. On 2 cores one worker measured a quicker ack (p50 at 200/s 21 →
   * 6 ms) but fewer notifications ingested (522 → 419/s) and 60% more memory (bench/).
   */
  workerProcesses: Config.integer("WEARFLOW_WORKER_PROCESSES").pipe(
    Config.withDefault(0),
    Config.validate({ message: "WEARFLOW_WORKER_PROCESSES must be 0..16", validation: (n) => n >= 0 && n <= 16 })
  ),
  /** The name a server gives a worker process it starts (`worker-1`, …): in its logs and metrics. */
  processName: Config.option(Config.string("WEARFLOW_PROCESS_NAME")),
  /** Database connections per process: the ingest takers, the sinks and the requests share them. */
  databasePool: Config.integer("WEARFLOW_DATABASE_POOL").pipe(
    Config.withDefault(32),
    Config.validate({ message: "WEARFLOW_DATABASE_POOL must be 4..500", validation: (n) => n >= 4 && n <= 500 })
  ),
  /**
   * Statements run again and again are prepared on each connection (core/storage/prepared-statements.ts).
   * Off for a pooler that cannot keep them: PgBouncer in transaction mode before 1.21.
   */
  databasePreparedStatements: Config.boolean("WEARFLOW_DATABASE_PREPARED_STATEMENTS").pipe(Config.withDefault(true)),
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
  /** How long rows of each growing table are kept, and how often older ones are deleted (RetentionConfig). */
  retention: Config.suspend(() => RetentionConfig),
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

/** `name`, else the older `legacy` name, else `fallback`. */
const age = (name: string, fallback: Duration.Duration, legacy?: string) =>
  (legacy ? Config.duration(name).pipe(Config.orElse(() => Config.duration(legacy))) : Config.duration(name)).pipe(Config.withDefault(fallback))

/**
 * Retention (core/pipeline/retention.ts): the age past which each growing table's rows go.
 * Sinks' own tables read WEARFLOW_RETENTION_<TABLE> the same way (WEARFLOW_RETENTION_WEBHOOK_MESSAGES,
 * 30 days; WEARFLOW_RETENTION_WEBHOOK_NOTICES, 30 days; WEARFLOW_RETENTION_ETL_BATCHES, 30 days).
 */
export const RetentionConfig = Config.all({
  /** How often the job sweeps (also at start). */
  interval: age("WEARFLOW_RETENTION_INTERVAL", Duration.minutes(10), "WEARFLOW_INBOX_RETENTION_INTERVAL").pipe(
    Config.validate({ message: "WEARFLOW_RETENTION_INTERVAL must be a positive duration", validation: (d) => Duration.toMillis(d) > 0 })
  ),
  /** Rows per delete statement: short statements, few locks. */
  batchSize: Config.integer("WEARFLOW_RETENTION_BATCH").pipe(
    Config.withDefault(500),
    Config.validate({ message: "WEARFLOW_RETENTION_BATCH must be 1..10000", validation: (n) => n >= 1 && n <= 10_000 })
  ),
  ages: Config.all({
    /** Processed raw bodies (WEARFLOW_INBOX_RETENTION, its older name, still read). */
    inbox: age("WEARFLOW_RETENTION_INBOX", Duration.days(7), "WEARFLOW_INBOX_RETENTION"),
    /** Completed ingest jobs. */
    queue: age("WEARFLOW_RETENTION_QUEUE", Duration.days(1)),
    /** Outbox events every sink has passed. */
    outbox: age("WEARFLOW_RETENTION_OUTBOX", Duration.days(7)),
    /** Notifications for provider users nobody linked. */
    parked: age("WEARFLOW_RETENTION_PARKED", Duration.days(30)),
    /** Journals of finished workflows (backfill chains, polls, webhook retries). */
    workflows: age("WEARFLOW_RETENTION_WORKFLOWS", Duration.days(7)),
    /** Events a sink rejected for good. */
    deadLetters: age("WEARFLOW_RETENTION_DEAD_LETTERS", Duration.days(30)),
    /** Pages polled connections committed (they dedupe a round tried again). */
    syncPages: age("WEARFLOW_RETENTION_SYNC_PAGES", Duration.days(7)),
    /** Connect-flow sessions, after they expire. */
    linkSessions: age("WEARFLOW_RETENTION_LINK_SESSIONS", Duration.days(1)),
    /** Health data (records and samples) by the time it describes; unset: kept until the user is deleted. */
    records: Config.option(Config.duration("WEARFLOW_RETENTION_HEALTH_DATA"))
  })
})

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

/** Deleted users: how long they can be restored before their data is erased, and how often erasure runs. */
export const ErasureConfig = Config.all({
  grace: Config.duration("WEARFLOW_USER_DELETION_GRACE").pipe(Config.withDefault(ErasureSettings.defaults.grace)),
  interval: positive("WEARFLOW_USER_ERASURE_INTERVAL", ErasureSettings.defaults.interval)
})

/**
 * Silent-gap monitoring (core/pipeline/gap-monitor.ts) and the operator webhook its alerts and
 * webhook-endpoint notices go to. Defaults: a round every 5 min; a connection+resource that
 * arrived on 5 of the 7 days up to its last data is "daily" and alerts after 48 h of silence;
 * a team's steady resource after 24 h; a provider with active connections after 24 h of
 * nothing at all. The webhook is off unless WEARFLOW_OPERATOR_WEBHOOK_URL is set; its secret
 * (`whsec_...`) is WEARFLOW_OPERATOR_WEBHOOK_SECRET or one generated into the data dir.
 */
export const AlertConfig = Config.all({
  interval: positive("WEARFLOW_GAP_MONITOR_INTERVAL", GapMonitor.defaults.interval),
  connectionSilence: positive("WEARFLOW_GAP_CONNECTION_SILENCE", GapMonitor.defaults.connectionSilence),
  volumeSilence: positive("WEARFLOW_GAP_VOLUME_SILENCE", GapMonitor.defaults.volumeSilence),
  providerSilence: positive("WEARFLOW_GAP_PROVIDER_SILENCE", GapMonitor.defaults.providerSilence),
  windowDays: Config.integer("WEARFLOW_GAP_WINDOW_DAYS").pipe(
    Config.withDefault(GapMonitor.defaults.windowDays),
    Config.validate({ message: "WEARFLOW_GAP_WINDOW_DAYS must be 1..60", validation: (n) => n >= 1 && n <= 60 })
  ),
  minDays: Config.integer("WEARFLOW_GAP_MIN_DAYS").pipe(Config.withDefault(GapMonitor.defaults.minDays)),
  operatorWebhookUrl: Config.option(
    Config.string("WEARFLOW_OPERATOR_WEBHOOK_URL").pipe(
      Config.validate({ message: "WEARFLOW_OPERATOR_WEBHOOK_URL must be an http(s) URL", validation: (s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) }),
      Config.map((s) => new URL(s))
    )
  ),
  operatorWebhookSecret: Config.option(
    Config.redacted("WEARFLOW_OPERATOR_WEBHOOK_SECRET").pipe(
      Config.validate({ message: "WEARFLOW_OPERATOR_WEBHOOK_SECRET must be whsec_ and 24-64 bytes of base64", validation: (s) => isSecret(Redacted.value(s)) })
    )
  ),
  operatorWebhookBackoff: positive("WEARFLOW_OPERATOR_WEBHOOK_BACKOFF", Duration.seconds(5)),
  operatorWebhookTimeout: positive("WEARFLOW_OPERATOR_WEBHOOK_TIMEOUT", Duration.seconds(15))
}).pipe(
  Config.validate({ message: "WEARFLOW_GAP_MIN_DAYS must be 1..WEARFLOW_GAP_WINDOW_DAYS", validation: ({ minDays, windowDays }) => minDays >= 1 && minDays <= windowDays })
)

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

/** Whether this process leaves all background work to others: a receiver, or a server with worker processes. */
export const receivesOnly = (config: ServerConfig) => config.role === "receiver" || (config.role === "all" && config.workerProcesses > 0)

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

/**
 * The operator webhook's signing secret: WEARFLOW_OPERATOR_WEBHOOK_SECRET, or one generated
 * into the data dir (its path is logged, never the secret). None when no URL is set.
 */
export const resolveOperatorWebhookSecret = (config: ServerConfig, alerts: Config.Config.Success<typeof AlertConfig>) =>
  Option.isNone(alerts.operatorWebhookUrl)
    ? Effect.succeed(Option.none<Redacted.Redacted<string>>())
    : Option.match(alerts.operatorWebhookSecret, {
        onSome: (secret) => Effect.succeed(Option.some(secret)),
        onNone: () =>
          secretFile(config.dataDir, "operator-webhook-secret", newSecret).pipe(
            Effect.tap((s) => Effect.logInfo(`WEARFLOW_OPERATOR_WEBHOOK_SECRET is not set; signing with the secret in ${s.file}`)),
            Effect.map((s) => Option.some(Redacted.make(s.value)))
          )
      })
