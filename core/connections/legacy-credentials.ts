/**
 * Secrets core kept in columns of its own before providers owned their connection state
 * (migration 0009): a token-and-secret pair that signs requests (`access_token` with
 * `token_secret`, for connections of a flow that signs with a pair), and such a pair kept
 * after the connection moved to another flow (`oauth1_token`, `oauth1_token_secret`, valid
 * until `oauth1_valid_until`). This file is the only one that names those columns.
 *
 * They are moved once, at start, into the provider's encrypted state: the provider builds its
 * state from them (Provider.legacyState), core encrypts it into `provider_state` and empties
 * the old columns. A move rather than a compatibility read path, so that everything else
 * reads one place and a later migration can drop the columns. It runs in batches, each a
 * transaction holding an advisory lock and the rows' locks, so processes starting together
 * move each row once; it is idempotent (moved rows no longer match). A row whose provider is
 * not loaded, or whose secrets cannot be decrypted (a key missing), stays as it is and is moved
 * on a later start.
 *
 * The old link route still hands tokens over in the pair shape (`tokenSecret`);
 * `adoptHandedOver` turns them into the provider's state the same way.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Redacted } from "effect"
import type { TokenCipher } from "../crypto.ts"
import type { Provider } from "../provider.ts"

/** Secrets of a connection as core kept them before providers owned their state, decrypted. */
export interface LegacyCredentials {
  /** The flow the connection was made with, when known. */
  readonly flow: string | undefined
  /** A token and its secret that sign the connection's requests. */
  readonly pair: { readonly token: Redacted.Redacted<string>; readonly secret: Redacted.Redacted<string> } | undefined
  /** A pair kept after the connection moved to another flow, usable until `validUntil`. */
  readonly previous:
    | { readonly token: Redacted.Redacted<string>; readonly secret: Redacted.Redacted<string>; readonly validUntil: Date | undefined }
    | undefined
}

/** The old secret columns, for key rotation while rows are left to move. */
export const LEGACY_SECRET_COLUMNS = ["token_secret", "oauth1_token", "oauth1_token_secret"] as const

/** SQL `set` items emptying the old columns (every write of a connection's credentials). */
export const ERASE_LEGACY_COLUMNS = "token_secret = null, oauth1_token = null, oauth1_token_secret = null, oauth1_valid_until = null"

interface LegacyRow {
  readonly id: string
  readonly provider: string
  readonly auth_version: string | null
  readonly access_token: Uint8Array | null
  readonly token_secret: Uint8Array | null
  readonly oauth1_token: Uint8Array | null
  readonly oauth1_token_secret: Uint8Array | null
  readonly oauth1_valid_until: Date | null
}

const BATCH = 100

/** Moves every movable row's old secrets into its provider's state; returns how many rows moved. */
export const moveLegacyCredentials = (cipher: TokenCipher["Type"], providers: ReadonlyMap<string, Provider>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const hooked = [...providers.values()].filter((p) => p.legacyState !== undefined)
    if (hooked.length === 0) return 0
    const ids = hooked.map((p) => p.id)
    const decrypt = (value: Uint8Array | null) => (value === null ? Effect.succeed(undefined) : cipher.decrypt(value))

    const moveRow = (row: LegacyRow) =>
      Effect.gen(function* () {
        const signsWithPair = row.token_secret !== null
        const token = signsWithPair ? yield* decrypt(row.access_token) : undefined
        const secret = yield* decrypt(row.token_secret)
        const previousToken = yield* decrypt(row.oauth1_token)
        const previousSecret = yield* decrypt(row.oauth1_token_secret)
        const legacy: LegacyCredentials = {
          flow: row.auth_version ?? undefined,
          pair: token && secret ? { token, secret } : undefined,
          previous: previousToken && previousSecret ? { token: previousToken, secret: previousSecret, validUntil: row.oauth1_valid_until ?? undefined } : undefined
        }
        const { state, flow } = providers.get(row.provider)!.legacyState!(legacy)
        yield* sql`
          update provider_connections set
            provider_state = ${state === undefined ? null : cipher.encrypt(Redacted.make(JSON.stringify(state)))},
            auth_version = ${flow ?? row.auth_version},
            access_token = ${signsWithPair ? null : row.access_token},
            ${sql.literal(ERASE_LEGACY_COLUMNS)}, updated_at = now()
          where id = ${row.id}`
        return true
      }).pipe(
        // Left as it is: a later start with the key configured moves it.
        Effect.catchTag("DecryptionError", (e) =>
          Effect.logError("could not move a connection's stored secrets into its provider's state").pipe(
            Effect.annotateLogs({ connection_id: row.id, provider: row.provider, reason: e.message }),
            Effect.as(false)
          ))
      )

    let moved = 0
    let after = "00000000-0000-0000-0000-000000000000"
    for (;;) {
      const batch = yield* Effect.gen(function* () {
        yield* sql`select pg_advisory_xact_lock(hashtextextended('wearflow:legacy-credentials', 0))`
        const rows = yield* sql<LegacyRow>`
          select id, provider, auth_version, access_token, token_secret, oauth1_token, oauth1_token_secret, oauth1_valid_until
          from provider_connections
          where id > ${after} and provider in ${sql.in(ids)}
            and (token_secret is not null or oauth1_token is not null or oauth1_token_secret is not null)
          order by id limit ${BATCH}
          for update`
        for (const row of rows) if (yield* moveRow(row)) moved++
        return rows
      }).pipe(sql.withTransaction)
      if (batch.length < BATCH) break
      after = batch.at(-1)!.id
    }
    if (moved > 0) yield* Effect.logInfo("moved connections' stored secrets into their providers' state").pipe(Effect.annotateLogs({ connections: moved }))
    return moved
  })
