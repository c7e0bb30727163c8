/**
 * Rewrites a provider runs over its own connections (e.g. moving them from one connect flow
 * to another): list the active ones, and replace one's credentials under its row lock.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect } from "effect"
import type { DecryptionError } from "../crypto.ts"
import type { ConnectionTokens, Credentials } from "../provider.ts"
import { type ConnectionRow, connectionColumns, type Parts } from "./parts.ts"
import { ERASE_LEGACY_COLUMNS } from "./legacy-credentials.ts"
import { aliasDigestsOf, encryptState, replaceAliases } from "./links.ts"

/** The provider says new tokens belong to another account than the connection's. */
export class AccountMismatch extends Data.TaggedError("AccountMismatch")<{ readonly message: string }> {}

/** How far a provider's run over its connections got (e.g. a move to another connect flow). */
export interface MigrationProgress {
  readonly total: number
  readonly done: number
  readonly migrated: number
  readonly failed: number
}

export interface MigrationReport {
  readonly total: number
  readonly migrated: number
  /** Connections another run was migrating at the same time. */
  readonly skipped: number
  readonly failures: ReadonlyArray<{ readonly user_id: string; readonly client_user_id: string; readonly provider_user_id: string; readonly reason: string }>
}

/** An active connection held under its row lock, with its credentials, for a rewrite. */
export interface HeldConnection {
  readonly id: string
  readonly userId: string
  readonly providerUserId: string
  /** The connect flow it was made with (the provider's name), when known. */
  readonly flow: string | undefined
  readonly credentials: Credentials
}

/** What a rewrite puts in place of a connection's credentials. */
export interface Replacement {
  readonly tokens: ConnectionTokens
  /** The connect flow the connection now counts as made with; unchanged when undefined. */
  readonly flow?: string | undefined
}

/**
 * What a provider's own run over its connections works with (Connections gives it): list the
 * active ones, and replace one's credentials under its row lock.
 */
export interface ConnectionRewrites {
  readonly activeConnections: (providerId: string, options?: { readonly flow?: string | undefined }) => Effect.Effect<ReadonlyArray<ConnectionEntry>, SqlError>
  readonly replaceCredentials: <E, R>(
    connectionId: string,
    replace: (held: HeldConnection) => Effect.Effect<Replacement, E, R>,
    options?: { readonly flow?: string | undefined }
  ) => Effect.Effect<"replaced" | "skipped", E | SqlError | DecryptionError, R>
}

/** An active connection of a provider, as a run over them lists it. */
export interface ConnectionEntry {
  readonly id: string
  readonly user_id: string
  readonly client_user_id: string
  readonly provider_user_id: string
}

export const makeRewrites = ({ cipher, credentialsOf, encrypt, providers, sql }: Parts) => {
  /** The active connections of a provider (only those made with `flow`, when given), oldest first. */
  const activeConnections: ConnectionRewrites["activeConnections"] = (providerId, options = {}) =>
    sql<ConnectionEntry>`
      select c.id, u.id as user_id, u.client_user_id, c.provider_user_id
      from provider_connections c join users u on u.id = c.user_id
      where c.provider = ${providerId} and c.status = 'active'
        ${options.flow === undefined ? sql`` : sql`and c.auth_version = ${options.flow}`}
      order by c.created_at`

  /**
   * Puts what `replace` returns in place of one active connection's credentials (tokens,
   * state, flow; its aliases as the provider reads them), holding the connection's row lock
   * in one transaction: serialized per connection across processes. A connection another
   * run holds, or no longer active (or no longer made with `flow`), is left alone:
   * "skipped". Nothing is written when `replace` fails.
   */
  const replaceCredentials = <E, R>(
    connectionId: string,
    replace: (held: HeldConnection) => Effect.Effect<Replacement, E, R>,
    options: { readonly flow?: string | undefined } = {}
  ): Effect.Effect<"replaced" | "skipped", E | SqlError | DecryptionError, R> =>
    Effect.gen(function* () {
      const [row] = yield* sql<ConnectionRow & { provider_user_id: string }>`
        select ${sql.literal(connectionColumns)}, c.provider_user_id
        from provider_connections c where c.id = ${connectionId} and c.status = 'active'
          ${options.flow === undefined ? sql`` : sql`and c.auth_version = ${options.flow}`}
        for update skip locked`
      if (!row) return "skipped" as const
      const { tokens, flow } = yield* replace({
        id: row.id,
        userId: row.user_id,
        providerUserId: row.provider_user_id,
        flow: row.auth_version ?? undefined,
        credentials: yield* credentialsOf(row)
      })
      yield* sql`
        update provider_connections set access_token = ${encrypt(tokens.accessToken)}, refresh_token = ${encrypt(tokens.refreshToken)},
          provider_state = ${encryptState(cipher, tokens.state)},
          access_token_expires_at = ${tokens.accessTokenExpiresAt ?? null}, refresh_token_expires_at = ${tokens.refreshTokenExpiresAt ?? null},
          scopes = ${tokens.scopes ?? []}, auth_version = ${flow ?? row.auth_version}, last_error = null,
          ${sql.literal(ERASE_LEGACY_COLUMNS)}, updated_at = now()
        where id = ${row.id}`
      const provider = providers.get(row.provider)
      yield* replaceAliases(sql, row.id, provider ? aliasDigestsOf(provider, { bearer: tokens.accessToken, state: tokens.state }) : [])
      return "replaced" as const
    }).pipe(sql.withTransaction)

  return { activeConnections, replaceCredentials } as const
}
