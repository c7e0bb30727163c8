/**
 * OAuth 2.0 tokens kept fresh. Refresh tokens rotate on every refresh, and presenting a
 * rotated-out one revokes the connection. So a refresh runs inside a transaction holding the
 * connection's row lock, and re-checks the expiry once it holds it: across processes, one
 * refresh per expiry, and the new pair is committed together.
 */
import { Duration, Effect, Either, Metric } from "effect"
import type { AuthError, UserRef } from "../provider.ts"
import { type ConnectionRow, connectionColumns, type Parts } from "./parts.ts"
import { aliasDigestsOf, encryptState, matchesUserRef, replaceAliases } from "./links.ts"

/** Token refresh rounds this process finished: a stalled refresher shows as a counter that stops. */
export const refreshRounds = Metric.counter("wearflow_token_refresh_rounds_total")

type RefreshResult = "refreshed" | "fresh" | "busy" | "failed" | "retry"

export const makeTokens = ({ authOf, cipher, credentialsOf, decrypt, encrypt, links, sql }: Parts) => {
  /**
   * Refreshes one connection's OAuth 2.0 tokens if they expire within `ahead`, holding its
   * row lock: `wait` queues behind another refresher, otherwise a locked row is left to it.
   */
  const refreshOne = (connectionId: string, options: { readonly ahead: Duration.Duration; readonly wait: boolean }) =>
    Effect.gen(function* () {
      const [row] = yield* sql<ConnectionRow & { team_id: string; client_user_id: string }>`
        select ${sql.literal(connectionColumns)}, u.team_id, u.client_user_id
        from provider_connections c join users u on u.id = c.user_id
        where c.id = ${connectionId} and c.status = 'active' and c.refresh_token is not null
        for update of c ${options.wait ? sql`` : sql`skip locked`}`
      if (!row) return "busy" satisfies RefreshResult
      const dueBy = Date.now() + Duration.toMillis(options.ahead)
      if (row.access_token_expires_at !== null && row.access_token_expires_at.getTime() > dueBy) return "fresh" satisfies RefreshResult
      const { provider, auth } = yield* authOf(row.provider)
      const refreshToken = yield* decrypt(row.refresh_token)
      const result = yield* Effect.either(auth.refresh(refreshToken!))
      if (Either.isRight(result)) {
        const tokens = result.right
        yield* sql`
          update provider_connections set
            access_token = ${encrypt(tokens.accessToken)},
            refresh_token = ${tokens.refreshToken ? encrypt(tokens.refreshToken) : row.refresh_token},
            access_token_expires_at = ${tokens.accessTokenExpiresAt ?? null},
            refresh_token_expires_at = coalesce(${tokens.refreshTokenExpiresAt ?? null}, refresh_token_expires_at),
            provider_state = ${tokens.state === undefined ? row.provider_state : encryptState(cipher, tokens.state)},
            last_error = null, updated_at = now()
          where id = ${row.id}`
        // A provider whose refresh gives new state may route the connection by new aliases.
        if (tokens.state !== undefined) yield* replaceAliases(sql, row.id, aliasDigestsOf(provider, { bearer: tokens.accessToken, state: tokens.state }))
        return "refreshed" satisfies RefreshResult
      }
      const error: AuthError = result.left
      if (error.reason !== "denied") {
        yield* Effect.logWarning("token refresh failed; retrying later").pipe(Effect.annotateLogs({ provider: row.provider, user_id: row.user_id, reason: error.message }))
        return "retry" satisfies RefreshResult
      }
      // The grant is gone (revoked, expired refresh token): the user must connect again.
      yield* sql`update provider_connections set last_error = 'token_refresh_failed', updated_at = now() where id = ${row.id}`
      yield* links.connectionError(provider, { userId: row.user_id, teamId: row.team_id, clientUserId: row.client_user_id }, "token_refresh_failed", `${provider.name} refused the token refresh; the user must connect again`, { status: error.status ?? null })
      yield* Effect.logWarning("token refresh refused; connection needs the user to connect again").pipe(Effect.annotateLogs({ provider: row.provider, user_id: row.user_id }))
      return "failed" satisfies RefreshResult
    }).pipe(sql.withTransaction)

  /** Refreshes every connection whose access token expires within `ahead`. */
  const refreshDue = Effect.fn("Connections.refreshDue")(function* (ahead: Duration.Duration) {
    const due = yield* sql<{ id: string }>`
      select id from provider_connections
      where status = 'active' and refresh_token is not null and last_error is null
        and access_token_expires_at < ${new Date(Date.now() + Duration.toMillis(ahead))}
      order by access_token_expires_at`
    const counts: Record<RefreshResult, number> = { refreshed: 0, fresh: 0, busy: 0, failed: 0, retry: 0 }
    for (const { id } of due) {
      const result = yield* refreshOne(id, { ahead, wait: false }).pipe(
        Effect.catchTag("DecryptionError", (e) => Effect.logError(e.message).pipe(Effect.as("retry" as const)))
      )
      counts[result]++
    }
    return counts
  })

  /**
   * Tokens for pulling a provider user's data: the first active connection's, refreshed
   * first when they expire within a minute (waiting for a refresh already under way).
   */
  const credentialsFor = Effect.fn("Connections.credentialsFor")(function* (providerId: string, ref: UserRef) {
    const select = sql<ConnectionRow & { refreshable: boolean }>`
      select ${sql.literal(connectionColumns)}, (c.refresh_token is not null and c.last_error is null) as refreshable
      from provider_connections c
      where c.provider = ${providerId} and c.status = 'active'
        and ${matchesUserRef(sql, ref)}
      order by c.created_at limit 1`
    let [row] = yield* select
    if (!row) return undefined
    const soon = Date.now() + 60_000
    if (row.refreshable && row.access_token_expires_at !== null && row.access_token_expires_at.getTime() < soon) {
      yield* refreshOne(row.id, { ahead: Duration.minutes(1), wait: true }).pipe(Effect.catchTag("ProviderUnsupported", () => Effect.void))
      ;[row] = yield* select
      if (!row) return undefined
    }
    return yield* credentialsOf(row)
  })

  return { refreshDue, credentialsFor } as const
}
