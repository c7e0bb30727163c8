/**
 * Teams, API keys, users and provider connections. Every read and write is scoped to a team:
 * tenants never see each other's users. Linking a provider user replays the notifications
 * that arrived for them before anyone had linked them.
 */
import { SqlClient } from "@effect/sql"
import { Data, Effect, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { hashApiKey, TokenCipher } from "./crypto.ts"
import { IngestQueue } from "./pipeline/inbox.ts"
import type { Recipient } from "./pipeline/store.ts"

export interface User {
  readonly user_id: string
  readonly client_user_id: string
  readonly team_id: string
  readonly created_at: string
}

export interface Connection {
  readonly provider: string
  readonly provider_user_id: string
  readonly status: string
  readonly scopes: ReadonlyArray<string>
  readonly created_at: string
}

/** Tokens for an existing provider connection; stored encrypted. */
export interface ConnectionTokens {
  readonly accessToken?: Redacted.Redacted<string> | undefined
  readonly refreshToken?: Redacted.Redacted<string> | undefined
  /** OAuth 1.0a token secret. */
  readonly tokenSecret?: Redacted.Redacted<string> | undefined
  readonly accessTokenExpiresAt?: Date | undefined
  readonly scopes?: ReadonlyArray<string> | undefined
}

export class UserNotFound extends Data.TaggedError("UserNotFound")<{ readonly userId: string }> {}
export class UserExists extends Data.TaggedError("UserExists")<{ readonly userId: string }> {}
/** The provider account is linked in another team: its data must never reach two tenants. */
export class ProviderUserTaken extends Data.TaggedError("ProviderUserTaken")<{ readonly provider: string }> {}

const isUuid = (s: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)

/** Serializes "is this provider user linked?" against linking them, per provider user. */
const lockProviderUser = (sql: SqlClient.SqlClient, provider: string, providerUserId: string) =>
  sql`select pg_advisory_xact_lock(hashtextextended(${provider + ":" + providerUserId}, 0))`

export class Accounts extends Effect.Service<Accounts>()("wearflow/Accounts", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cipher = yield* TokenCipher
    const queue = yield* IngestQueue

    /** Makes sure `key` opens team `name` (the bootstrap key from WEARFLOW_API_KEY). */
    const ensureTeamKey = Effect.fn("Accounts.ensureTeamKey")(function* (name: string, key: Redacted.Redacted<string>) {
      const hash = hashApiKey(key)
      const existing = yield* sql<{ team_id: string }>`select team_id from api_keys where key_hash = ${hash}`
      if (existing[0]) return existing[0].team_id
      const teamId = randomUUID()
      yield* sql`insert into teams (id, name) values (${teamId}, ${name})`
      yield* sql`insert into api_keys (key_hash, team_id, label) values (${hash}, ${teamId}, 'bootstrap')`
      return teamId
    }, sql.withTransaction)

    const teamForApiKey = (key: Redacted.Redacted<string>) =>
      sql<{ team_id: string }>`select team_id from api_keys where key_hash = ${hashApiKey(key)}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.team_id))
      )

    const toUser = (row: { id: string; client_user_id: string; team_id: string; created_at: Date }): User => ({
      user_id: row.id,
      client_user_id: row.client_user_id,
      team_id: row.team_id,
      created_at: row.created_at.toISOString()
    })

    const createUser = Effect.fn("Accounts.createUser")(function* (teamId: string, clientUserId: string) {
      const rows = yield* sql<{ id: string; client_user_id: string; team_id: string; created_at: Date }>`
        insert into users (id, team_id, client_user_id) values (${randomUUID()}, ${teamId}, ${clientUserId})
        on conflict (team_id, client_user_id) do nothing
        returning id, client_user_id, team_id, created_at`
      if (rows[0]) return toUser(rows[0])
      const [existing] = yield* sql<{ id: string }>`select id from users where team_id = ${teamId} and client_user_id = ${clientUserId}`
      return yield* new UserExists({ userId: existing!.id })
    })

    const getUser = Effect.fn("Accounts.getUser")(function* (teamId: string, userId: string) {
      if (!isUuid(userId)) return yield* new UserNotFound({ userId })
      const rows = yield* sql<{ id: string; client_user_id: string; team_id: string; created_at: Date }>`
        select id, client_user_id, team_id, created_at from users where id = ${userId} and team_id = ${teamId}`
      if (!rows[0]) return yield* new UserNotFound({ userId })
      return toUser(rows[0])
    })

    const connectionsOf = (userId: string) =>
      sql<{ provider: string; provider_user_id: string; status: string; scopes: Array<string>; created_at: Date }>`
        select provider, provider_user_id, status, scopes, created_at from provider_connections where user_id = ${userId} order by provider`.pipe(
        Effect.map((rows) => rows.map((r): Connection => ({ ...r, created_at: r.created_at.toISOString() })))
      )

    /**
     * Links `providerUserId` to the user (replacing an earlier link for that provider) and
     * queues every notification that arrived for that provider user while nobody had linked it.
     */
    const link = Effect.fn("Accounts.link")(function* (
      teamId: string,
      userId: string,
      provider: string,
      providerUserId: string,
      tokens: ConnectionTokens
    ) {
      yield* getUser(teamId, userId)
      const encrypt = (value: Redacted.Redacted<string> | undefined) => (value ? cipher.encrypt(value) : null)
      yield* lockProviderUser(sql, provider, providerUserId)
      const elsewhere = yield* sql<{ n: number }>`
        select count(*)::int as n from provider_connections c join users u on u.id = c.user_id
        where c.provider = ${provider} and c.provider_user_id = ${providerUserId} and c.status = 'active' and u.team_id <> ${teamId}`
      if (elsewhere[0]!.n > 0) return yield* new ProviderUserTaken({ provider })
      const [row] = yield* sql<{ provider: string; provider_user_id: string; status: string; scopes: Array<string>; created_at: Date }>`
        insert into provider_connections
          (id, user_id, provider, provider_user_id, status, scopes, access_token, refresh_token, token_secret, access_token_expires_at)
        values (${randomUUID()}, ${userId}, ${provider}, ${providerUserId}, 'active', ${tokens.scopes ?? []},
                ${encrypt(tokens.accessToken)}, ${encrypt(tokens.refreshToken)}, ${encrypt(tokens.tokenSecret)}, ${tokens.accessTokenExpiresAt ?? null})
        on conflict (user_id, provider) do update set
          provider_user_id = excluded.provider_user_id, status = 'active', scopes = excluded.scopes,
          access_token = excluded.access_token, refresh_token = excluded.refresh_token, token_secret = excluded.token_secret,
          access_token_expires_at = excluded.access_token_expires_at, updated_at = now()
        returning provider, provider_user_id, status, scopes, created_at`
      const waiting = yield* sql<{ inbox_id: string }>`
        delete from unlinked_notifications where provider = ${provider} and provider_user_id = ${providerUserId}
        returning inbox_id`
      for (const { inbox_id } of waiting) {
        const inboxId = Number(inbox_id)
        // A fresh id each time: the same body may be parked and replayed more than once.
        yield* queue.offer({ inboxId, providerUserId }, { id: randomUUID() })
      }
      return { connection: { ...row!, created_at: row!.created_at.toISOString() } satisfies Connection, replayed: waiting.length }
    }, sql.withTransaction)

    /**
     * The users a provider user's data goes to. When there are none, records that `inboxId`
     * holds `itemCount` items for them, so linking them later replays it.
     */
    const recipientsOrPark = Effect.fn("Accounts.recipientsOrPark")(function* (
      provider: string,
      providerUserId: string,
      inboxId: number,
      itemCount: number
    ) {
      yield* lockProviderUser(sql, provider, providerUserId)
      const rows = yield* sql<{ user_id: string; team_id: string; client_user_id: string }>`
        select u.id as user_id, u.team_id, u.client_user_id
        from provider_connections c join users u on u.id = c.user_id
        where c.provider = ${provider} and c.provider_user_id = ${providerUserId} and c.status = 'active'`
      if (rows.length === 0) {
        yield* sql`
          insert into unlinked_notifications (provider, provider_user_id, inbox_id, item_count)
          values (${provider}, ${providerUserId}, ${inboxId}, ${itemCount})
          on conflict do nothing`
      }
      return rows.map((r): Recipient => ({ userId: r.user_id, teamId: r.team_id, clientUserId: r.client_user_id }))
    }, sql.withTransaction)

    return { ensureTeamKey, teamForApiKey, createUser, getUser, connectionsOf, link, recipientsOrPark } as const
  })
}) {}
