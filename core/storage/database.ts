/**
 * The system of record: Postgres through @effect/sql-pg, either at DATABASE_URL or an
 * embedded server under the data dir. Numbered migrations run at start-up.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as path from "node:path"
import pg from "pg"
import * as EmbeddedPostgres from "./embedded-postgres.ts"
import * as PreparedStatements from "./prepared-statements.ts"
import foundation from "./migrations/0001_foundation.ts"
import pullsIdentityConnect from "./migrations/0002_pulls_identity_connect.ts"
import connectFlowsRevisions from "./migrations/0003_connect_flows_revisions.ts"
import rateLimits from "./migrations/0004_rate_limits.ts"
import backfills from "./migrations/0005_backfills.ts"
import outboxHistorical from "./migrations/0006_outbox_historical.ts"
import inboxPartsRetention from "./migrations/0007_inbox_parts_retention.ts"
import samplesPerRecord from "./migrations/0008_samples_per_record.ts"
import providerStateAliases from "./migrations/0009_provider_state_aliases.ts"
import inboxDedupe from "./migrations/0010_inbox_dedupe.ts"
import recordDeletions from "./migrations/0011_record_deletions.ts"
import connectionSync from "./migrations/0012_connection_sync.ts"
import samplesUserCascade from "./migrations/0013_samples_user_cascade.ts"
import apiKeys from "./migrations/0014_api_keys.ts"
import userDeletion from "./migrations/0015_user_deletion.ts"
import retention from "./migrations/0016_retention.ts"
import gapAlerts from "./migrations/0017_gap_alerts.ts"
import inboxTraceContext from "./migrations/0018_inbox_trace_context.ts"

export const migrations = Migrator.fromRecord({
  "0001_foundation": foundation,
  "0002_pulls_identity_connect": pullsIdentityConnect,
  "0003_connect_flows_revisions": connectFlowsRevisions,
  "0004_rate_limits": rateLimits,
  "0005_backfills": backfills,
  "0006_outbox_historical": outboxHistorical,
  "0007_inbox_parts_retention": inboxPartsRetention,
  "0008_samples_per_record": samplesPerRecord,
  "0009_provider_state_aliases": providerStateAliases,
  "0010_inbox_dedupe": inboxDedupe,
  "0011_record_deletions": recordDeletions,
  "0012_connection_sync": connectionSync,
  "0013_samples_user_cascade": samplesUserCascade,
  "0014_api_keys": apiKeys,
  "0015_user_deletion": userDeletion,
  "0016_retention": retention,
  "0017_gap_alerts": gapAlerts,
  "0018_inbox_trace_context": inboxTraceContext
})

export interface DatabaseOptions {
  /** An external database; when absent an embedded server runs in `<dataDir>/pg`. */
  readonly url: Option.Option<Redacted.Redacted<string>>
  readonly dataDir: string
  readonly maxConnections?: number
  /** Statements run again and again prepared on each connection (default true; prepared-statements.ts). */
  readonly preparedStatements?: boolean
  /** How long a request may wait for the database before it is answered 503 (see DatabaseWait). */
  readonly wait?: Duration.DurationInput
}

/**
 * How long a request waits for the database. A frozen or unreachable database must turn into
 * a prompt 503 the caller retries, not a request that hangs: Postgres cannot time out a
 * statement it never gets to run, so the wait is bounded on our side.
 */
export class DatabaseWait extends Context.Reference<DatabaseWait>()("wearflow/DatabaseWait", {
  defaultValue: () => Duration.seconds(10)
}) {}

/**
 * Runs `effect` holding the migrations lock. Replicas starting together would race to create
 * tables, so schema changes hold a session advisory lock on a connection of their own: the
 * second process waits, then finds nothing to do.
 */
export const withMigrationLock = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.gen(function* () {
      const lock = yield* sql.reserve
      yield* Effect.acquireRelease(
        lock.executeRaw("select pg_advisory_lock(hashtextextended('wearflow:migrations', 0))", []),
        () => Effect.ignore(lock.executeRaw("select pg_advisory_unlock(hashtextextended('wearflow:migrations', 0))", []))
      )
      return yield* effect
    }).pipe(Effect.scoped))

export const migrate = withMigrationLock(Migrator.make({})({ loader: migrations }))

/**
 * How long a new connection may take, the first one included. Also bounds the wait for a pooled
 * connection: a full pool in front of a frozen database would otherwise queue for ever.
 */
const connectTimeout = Duration.seconds(5)

const clientLayer = (url: Redacted.Redacted<string>, maxConnections: number, preparedStatements: boolean) =>
  PgClient.layerFromPool({
    acquire: Effect.acquireRelease(
      Effect.gen(function* () {
        const pool = new pg.Pool({
          connectionString: Redacted.value(url),
          max: maxConnections,
          connectionTimeoutMillis: Duration.toMillis(connectTimeout),
          application_name: "wearflow",
          ...(preparedStatements ? { Client: PreparedStatements.clientClass(PreparedStatements.namer()) } : {})
        })
        pool.on("error", () => undefined) // an idle connection's error: the pool drops it
        // The first connection, before the pool is handed out (PgClient.layer did this; layerFromPool does not).
        yield* Effect.tryPromise({
          try: () => pool.query("select 1"),
          catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
        }).pipe(
          Effect.timeoutFail({ duration: connectTimeout, onTimeout: () => new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" }) }),
          Effect.tapError(() => Effect.promise(() => pool.end()))
        )
        return pool
      }),
      (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
    ),
    applicationName: "wearflow"
  })

/** Where the database is: DATABASE_URL, or the embedded server's (for processes this one starts). */
export class DatabaseUrl extends Context.Tag("wearflow/DatabaseUrl")<DatabaseUrl, Redacted.Redacted<string>>() {}

/** SqlClient on a migrated database. An embedded server is stopped after the pool closes. */
export const layer = (options: DatabaseOptions): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient | DatabaseWait | DatabaseUrl, EmbeddedPostgres.EmbeddedPostgresError | Migrator.MigrationError | import("@effect/sql").SqlError.SqlError> =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const url = Option.isSome(options.url)
        ? options.url.value
        : (yield* Effect.acquireRelease(
            EmbeddedPostgres.start({ pgDir: path.join(options.dataDir, "pg"), database: "wearflow" }),
            (db) => db.stop.pipe(Effect.tapError((e) => Effect.logError(e.message)), Effect.ignore)
          )).url
      const wait = Duration.decode(options.wait ?? DatabaseWait.defaultValue())
      const client = clientLayer(url, options.maxConnections ?? 20, options.preparedStatements ?? true)
      return Layer.effectDiscard(migrate).pipe(Layer.provideMerge(client), Layer.merge(Layer.succeed(DatabaseWait, wait)), Layer.merge(Layer.succeed(DatabaseUrl, url)))
    })
  )
