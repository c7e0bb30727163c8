/**
 * What every part of Connections works with: the database, the cipher, the floors below
 * (accounts, links), the providers, and a connection row's decrypted credentials.
 */
import type { SqlClient } from "@effect/sql"
import { Data, Effect, Redacted } from "effect"
import type { TokenCipher } from "../crypto.ts"
import type { Credentials, Provider, ProviderAuth } from "../provider.ts"
import type { Accounts } from "../tenancy/accounts.ts"
import type { Links } from "./links.ts"

/** The provider does not exist here, or has no connect flow. */
export class ProviderUnsupported extends Data.TaggedError("ProviderUnsupported")<{ readonly message: string }> {}

export interface ConnectionRow {
  readonly id: string
  readonly user_id: string
  readonly provider: string
  readonly auth_version: string | null
  readonly access_token: Uint8Array | null
  readonly refresh_token: Uint8Array | null
  readonly provider_state: Uint8Array | null
  readonly access_token_expires_at: Date | null
}

/** The columns a ConnectionRow reads, from `provider_connections c`. */
export const connectionColumns = `c.id, c.user_id, c.provider, c.auth_version, c.access_token, c.refresh_token, c.provider_state,
  c.access_token_expires_at`

export interface ConnectionDeps {
  readonly sql: SqlClient.SqlClient
  readonly cipher: TokenCipher["Type"]
  readonly accounts: Accounts
  readonly links: Links
  readonly providers: ReadonlyMap<string, Provider>
}

export const makeParts = (context: ConnectionDeps) => {
  const { cipher, providers } = context
  const decrypt = (value: Uint8Array | null) =>
    value === null ? Effect.succeed(undefined) : Effect.map(cipher.decrypt(value), (v): Redacted.Redacted<string> | undefined => v)
  const encrypt = (value: Redacted.Redacted<string> | undefined) => (value === undefined ? null : cipher.encrypt(value))

  /** A connection's secrets: its OAuth 2.0 bearer and its provider's state (which the provider reads). */
  const credentialsOf = (row: ConnectionRow) =>
    Effect.gen(function* () {
      const bearer = yield* decrypt(row.access_token)
      const state = yield* decrypt(row.provider_state)
      return { bearer, state: state === undefined ? undefined : JSON.parse(Redacted.value(state)) as unknown } satisfies Credentials
    })

  const authOf = (providerId: string): Effect.Effect<{ provider: Provider; auth: ProviderAuth }, ProviderUnsupported> => {
    const provider = providers.get(providerId)
    return provider?.auth
      ? Effect.succeed({ provider, auth: provider.auth })
      : Effect.fail(new ProviderUnsupported({ message: `no connect flow for provider ${providerId}` }))
  }

  return { ...context, decrypt, encrypt, credentialsOf, authOf }
}

export type Parts = ReturnType<typeof makeParts>
