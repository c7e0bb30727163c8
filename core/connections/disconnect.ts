/**
 * Disconnecting: the provider is told (so it stops sending data) unless another user shares
 * that provider account, and the connection's secrets are erased either way.
 */
import { Data, Effect, Either } from "effect"
import { type ConnectionRow, connectionColumns, type Parts } from "./parts.ts"
import { ERASE_LEGACY_COLUMNS } from "./legacy-credentials.ts"
import { replaceAliases } from "./links.ts"

/** The user has no active connection to that provider. */
export class NotConnected extends Data.TaggedError("NotConnected")<{ readonly provider: string }> {}

export const makeDisconnect = ({ accounts, credentialsOf, providers, sql }: Parts) => {
  /**
   * Ends the user's connection. The provider is told (so it stops sending data) unless
   * another user shares that provider account; tokens are erased either way. When the
   * provider cannot be reached nothing changes and the error says to retry.
   */
  const disconnect = Effect.fn("Connections.disconnect")(function* (teamId: string, userId: string, providerId: string) {
    yield* accounts.getUser(teamId, userId)
    const [row] = yield* sql<ConnectionRow & { provider_user_id: string; shared: number }>`
      select ${sql.literal(connectionColumns)}, c.provider_user_id,
        (select count(*)::int from provider_connections o
          where o.provider = c.provider and o.provider_user_id = c.provider_user_id and o.status = 'active' and o.id <> c.id) as shared
      from provider_connections c
      where c.user_id = ${userId} and c.provider = ${providerId} and c.status <> 'disconnected'
      for update of c`
    if (!row) return yield* new NotConnected({ provider: providerId })
    const provider = providers.get(providerId)
    const credentials = yield* credentialsOf(row)
    let providerDeregistered = false
    if (provider?.auth && (credentials.bearer !== undefined || credentials.state !== undefined) && row.shared === 0) {
      const told = yield* Effect.either(provider.auth.deregister(credentials))
      if (Either.isLeft(told) && told.left.reason !== "denied") return yield* told.left
      providerDeregistered = Either.isRight(told)
      if (Either.isLeft(told)) {
        yield* Effect.logWarning("the provider refused the deregistration; disconnecting anyway").pipe(Effect.annotateLogs({ provider: providerId, user_id: userId, reason: told.left.message }))
      }
    }
    yield* sql`
      update provider_connections set status = 'disconnected', access_token = null, refresh_token = null, provider_state = null,
        access_token_expires_at = null, refresh_token_expires_at = null, last_error = null,
        ${sql.literal(ERASE_LEGACY_COLUMNS)}, updated_at = now()
      where id = ${row.id}`
    yield* replaceAliases(sql, row.id, [])
    return { providerDeregistered, sharedAccount: row.shared > 0 }
  }, sql.withTransaction)

  return { disconnect } as const
}
