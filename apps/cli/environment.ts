/**
 * What a command needs from the server's world: its configuration (same variables, same
 * defaults), its plugins, its token encryption keys, its database, the configured providers,
 * and the running server's URL and API key. Anything unusable becomes an EnvironmentError with a one-line
 * message (exit code 3).
 */
import type { SqlError } from "@effect/sql/SqlError"
import type { MigrationError } from "@effect/sql/Migrator"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { ApiKeys } from "@wearflow/core/tenancy/api-keys"
import { Links } from "@wearflow/core/connections/links"
import { BackfillStatus } from "@wearflow/core/backfill/status"
import { SyncStatus } from "@wearflow/core/sync/status"
import { Connections } from "@wearflow/core/connections/connections"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as OutboundHttp from "@wearflow/core/http-client"
import { IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import * as Parked from "@wearflow/core/pipeline/parked"
import type { Plugin } from "@wearflow/core/plugin"
import * as Registry from "@wearflow/core/registry"
import * as Database from "@wearflow/core/storage/database"
import * as EmbeddedPostgres from "@wearflow/core/storage/embedded-postgres"
import { Config as EffectConfig, type ConfigError, Data, Effect, Layer, Option, type Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import WearflowConfig from "../../wearflow.config.ts"
import { resolveApiKey, resolveEncryptionKey, ServerConfig } from "../server/config.ts"

/** The database or the configuration cannot be used; nothing was changed. */
export class EnvironmentError extends Data.TaggedError("EnvironmentError")<{ readonly message: string }> {}

const exists = (file: string) => fs.access(file).then(() => true, () => false)

const causeMessage = (cause: unknown) => (cause instanceof Error && cause.message ? `: ${cause.message}` : "")

const configError = (e: ConfigError.ConfigError) => new EnvironmentError({ message: `configuration: ${String(e).replace(/\s+/g, " ")}` })

const databaseError = (e: EmbeddedPostgres.EmbeddedPostgresError | MigrationError | SqlError) =>
  new EnvironmentError({
    message: e._tag === "EmbeddedPostgresError"
      ? e.message
      : e._tag === "MigrationError"
      ? `the database could not be migrated: ${e.message}`
      : `the database is unusable: ${e.message}${causeMessage(e.cause)}`
  })

export const loadConfig = Effect.mapError(ServerConfig, configError)
export type Config = Effect.Effect.Success<typeof loadConfig>

/**
 * The server's keys. Unlike the server, a command never generates one: a new key could not
 * decrypt a single stored token.
 */
export const encryptionKeys = (config: Config) =>
  Effect.gen(function* () {
    if (Option.isNone(config.encryptionKey)) {
      const file = path.join(config.dataDir, "encryption-key")
      if (!(yield* Effect.promise(() => exists(file)))) {
        return yield* new EnvironmentError({
          message: `no token encryption key: WEARFLOW_ENCRYPTION_KEY is unset and ${path.resolve(file)} does not exist (set them as the server has them)`
        })
      }
    }
    return yield* resolveEncryptionKey(config).pipe(Effect.mapError((e) => new EnvironmentError({ message: e.message })))
  })

/** The configured plugins (wearflow.config.ts, or WEARFLOW_PLUGINS), imported. */
export const loadPluginList = Effect.gen(function* () {
  const { plugins } = yield* Effect.mapError(WearflowConfig, configError)
  return yield* Registry.loadPlugins(plugins, fileURLToPath(new URL("../../", import.meta.url))).pipe(
    Effect.mapError((e) => new EnvironmentError({ message: e.message }))
  )
})

/**
 * DATABASE_URL; else the embedded Postgres in the data dir — connected to while the server
 * runs it, otherwise started for the command and stopped after. A data dir without a cluster
 * is an error, not a reason to create an empty database.
 */
const databaseLayer = (config: Config, maxConnections: number) =>
  Effect.gen(function* () {
    if (Option.isSome(config.databaseUrl)) return Database.layer({ url: config.databaseUrl, dataDir: config.dataDir, maxConnections })
    const running = yield* EmbeddedPostgres.attach({ pgDir: path.join(config.dataDir, "pg"), database: "wearflow" }).pipe(
      Effect.mapError((e) => new EnvironmentError({ message: e.message }))
    )
    if (running !== undefined) return Database.layer({ url: Option.some(running), dataDir: config.dataDir, maxConnections })
    if (!(yield* Effect.promise(() => exists(path.join(config.dataDir, "pg", "PG_VERSION"))))) {
      return yield* new EnvironmentError({
        message: `no database: DATABASE_URL is unset and ${path.resolve(config.dataDir, "pg")} holds no embedded Postgres (set DATABASE_URL or WEARFLOW_DATA_DIR as the server has them)`
      })
    }
    return Database.layer({ url: Option.none(), dataDir: config.dataDir, maxConnections })
  }).pipe(Layer.unwrapEffect, Layer.mapError((e) => (e._tag === "EnvironmentError" ? e : databaseError(e))))

/** The configured providers, each in its sandbox (their Provider alone: no routes, no workers). */
const providersLayer = (plugins: ReadonlyArray<Plugin>) =>
  Registry.providersLayer(plugins).pipe(Layer.provide(OutboundHttp.layer()))

/**
 * Connections over the server's database with the configured providers. Enough database
 * connections for a command's most concurrent provider exchanges (each holds its row lock
 * while the provider answers), plus a spare; the pool opens them only when used.
 */
export const layer = (config: Config, keys: Effect.Effect.Success<ReturnType<typeof encryptionKeys>>, plugins: ReadonlyArray<Plugin>) => {
  const concurrency = 32
  const Storage = Layer.mergeAll(IngestQueue.layer.pipe(Layer.provide(layerQueueStore({}))), layerTokenCipher(keys)).pipe(
    Layer.provideMerge(databaseLayer(config, concurrency + 2))
  )
  return Connections.Default.pipe(
    Layer.provideMerge(providersLayer(plugins)),
    Layer.provide(Links.Default.pipe(Layer.provide(Parked.layer), Layer.provideMerge(Accounts.Default), Layer.provideMerge(Storage))),
    Layer.mapError((e) => (e._tag === "EnvironmentError" ? e : e._tag === "SqlError" ? databaseError(e) : configError(e)))
  )
}

/**
 * What `backfill status` reads with: the server's database and the providers (for their
 * names). No token keys: it reads no tokens. Two database connections: it reads one query at
 * a time.
 */
export const statusLayer = (config: Config, plugins: ReadonlyArray<Plugin>) =>
  BackfillStatus.Default.pipe(
    Layer.provide(providersLayer(plugins)),
    Layer.provide(databaseLayer(config, 2)),
    Layer.mapError((e) => (e._tag === "EnvironmentError" ? e : configError(e)))
  )

/** What `sync status` reads with: the server's database, two connections, no keys. */
export const syncStatusLayer = (config: Config) =>
  SyncStatus.Default.pipe(Layer.provide(databaseLayer(config, 2)))

/** What `teams` and `keys` work with: the server's database, two connections, no token keys. */
export const keysLayer = (config: Config) =>
  ApiKeys.Default.pipe(Layer.provide(databaseLayer(config, 2)))

/** The running server as `backfill start` and `cancel` reach it. */
export interface ServerEndpoint {
  /** Without a trailing slash; routes are appended. */
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
}

const ServerUrl = EffectConfig.option(
  EffectConfig.string("WEARFLOW_SERVER_URL").pipe(
    EffectConfig.validate({ message: "WEARFLOW_SERVER_URL must be an http(s) URL", validation: (s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) })
  )
)

/**
 * WEARFLOW_SERVER_URL, else WEARFLOW_PUBLIC_URL, else the server's own port on loopback; and
 * the server's API key: WEARFLOW_API_KEY, else the key file in the data dir. Unlike the
 * server, a command never generates a key: the server would not know it.
 */
export const serverEndpoint = (config: Config) =>
  Effect.gen(function* () {
    const explicit = yield* Effect.mapError(ServerUrl, configError)
    const baseUrl = Option.getOrElse(Option.orElse(explicit, () => config.publicUrl), () => `http://127.0.0.1:${config.port}`).replace(/\/+$/, "")
    if (Option.isNone(config.apiKey)) {
      const file = path.join(config.dataDir, "api-key")
      if (!(yield* Effect.promise(() => exists(file)))) {
        return yield* new EnvironmentError({
          message: `no API key: WEARFLOW_API_KEY is unset and ${path.resolve(file)} does not exist (set them as the server has them)`
        })
      }
    }
    const apiKey = yield* Effect.suspend(() => resolveApiKey(config)).pipe(Effect.mapError((e) => new EnvironmentError({ message: e.message })))
    return { baseUrl, apiKey } satisfies ServerEndpoint
  })
