/**
 * Links between a team's users and provider accounts: linking (with the hooks the floors
 * above provide: replaying parked notifications, scheduling history), which users a provider
 * user's data goes to (or parking it until someone links them), what lifecycle items do to a
 * link, `provider.connection.*` events, and token re-encryption after a key rotation.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Effect, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { batched } from "../storage/batched.ts"
import { Accounts } from "../tenancy/accounts.ts"
import { aliasDigest, reencrypted, TokenCipher } from "../crypto.ts"
import { ERASE_LEGACY_COLUMNS, LEGACY_SECRET_COLUMNS } from "./legacy-credentials.ts"
import { appendEvent, type Recipient } from "../outbox.ts"
import type { ConnectionTokens, Credentials, LifecycleChange, Provider, UserRef } from "../provider.ts"
import * as Tracing from "../tracing.ts"

/**
 * Linking a provider user hands the notifications parked for them (by id or alias key) to
 * the pipeline, inside the linking transaction. A hook the pipeline provides
 * (pipeline/parked.ts), so that linking never imports the floor above it.
 */
export class ParkedNotifications extends Context.Tag("wearflow/ParkedNotifications")<ParkedNotifications, {
  /** Queues what was parked for `keys` of `provider` again; answers how many. */
  readonly replay: (sql: SqlClient.SqlClient, provider: string, keys: ReadonlyArray<string>) => Effect.Effect<number, SqlError>
}>() {}

/**
 * Whether and how a new connection's history is fetched: a hook the backfill floor provides
 * (backfill/on-connect.ts). Absent, linking schedules no backfill.
 */
export class ConnectionHistory extends Context.Tag("wearflow/ConnectionHistory")<ConnectionHistory, {
  /** Records the connection's backfill in the linking transaction; its id, or undefined when none is wanted. */
  readonly schedule: (
    sql: SqlClient.SqlClient,
    link: { readonly teamId: string; readonly userId: string; readonly provider: Pick<Provider, "id"> & Partial<Pick<Provider, "backfill">> }
  ) => Effect.Effect<string | undefined, SqlError>
}>() {}

/**
 * Whether a new connection is polled: a hook the sync floor provides (sync/on-connect.ts),
 * recording the connection's poll (a fresh cursor) in the linking transaction, and waking
 * polls when a lifecycle item says the data changed. Absent, or for a provider without
 * `sync`, nothing is polled.
 */
export class ConnectionSync extends Context.Tag("wearflow/ConnectionSync")<ConnectionSync, {
  readonly schedule: (sql: SqlClient.SqlClient, link: { readonly connectionId: string; readonly provider: Partial<Pick<Provider, "sync">> }) => Effect.Effect<void, SqlError>
  /** Polls these connections now (a provider's hint that their data changed). */
  readonly wake: (connectionIds: ReadonlyArray<string>) => Effect.Effect<void, SqlError>
}>() {}

/** Junction's `provider.connection.error` error types. */
export type ConnectionErrorType =
  | "token_refresh_failed"
  | "webhook_registration_failed"
  | "user_not_found"
  | "deregistered_per_provider"
  | "required_scopes_not_granted"
  | "provider_credential_error"
  | "provider_password_expired"
  | "unknown"

/** The provider as events describe it. */
export const providerInfo = (provider: Pick<Provider, "id" | "name">) => ({ name: provider.name, slug: provider.id, logo: null })

/**
 * Junction's `resource_availability`: each resource the provider serves, available when the
 * user granted the permission it needs. Unknown scopes (tokens given without them) count as
 * granted: the provider will say otherwise through a permission change.
 */
export const resourceAvailability = (provider: Pick<Provider, "resourceScopes">, scopes: ReadonlyArray<string> | undefined) =>
  Object.fromEntries(
    Object.entries(provider.resourceScopes).map(([resource, scope]) => {
      const granted = scopes === undefined || scopes.length === 0 || scopes.includes(scope)
      return [resource, {
        status: granted ? "available" : "unavailable",
        scope_requirements: {
          user_granted: { required: granted ? [scope] : [], optional: [] },
          user_denied: { required: granted ? [] : [scope], optional: [] }
        }
      }]
    })
  )

export interface Connection {
  readonly provider: string
  readonly provider_user_id: string
  readonly status: string
  readonly scopes: ReadonlyArray<string>
  readonly created_at: string
}

/** The provider account is linked in another team: its data must never reach two tenants. */
export class ProviderUserTaken extends Data.TaggedError("ProviderUserTaken")<{ readonly provider: string }> {}

/**
 * Alias keys start with this. The prefix predates aliases (their first use was a token's
 * digest); it stays so that parked notifications and queued replays keep matching.
 */
const ALIAS_KEY_PREFIX = "token:"

/**
 * The key notifications for a provider user are grouped, parked and replayed under: the
 * user id, or for alias-addressed items the alias's digest (never the secret).
 */
export const userKey = (ref: UserRef): string => (ref._tag === "UserId" ? ref.id : `${ALIAS_KEY_PREFIX}${ref.digest}`)

/** SQL matching the connection (`c`) a notification's user reference names. */
export const matchesUserRef = (sql: SqlClient.SqlClient, ref: UserRef) =>
  ref._tag === "UserId"
    ? sql`c.provider_user_id = ${ref.id}`
    : sql`exists (select 1 from connection_aliases a where a.digest = ${Buffer.from(ref.digest, "hex")} and a.connection_id = c.id)`

/** The digests of the aliases the provider reads from a connection's credentials. */
export const aliasDigestsOf = (provider: Partial<Pick<Provider, "aliasesOf">>, credentials: Credentials): ReadonlyArray<string> =>
  [...new Set((provider.aliasesOf?.(credentials) ?? []).map((alias) => aliasDigest(Redacted.value(alias))))]

/** Makes `digests` the connection's aliases (in the caller's transaction). */
export const replaceAliases = (sql: SqlClient.SqlClient, connectionId: string, digests: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    yield* sql`delete from connection_aliases where connection_id = ${connectionId}`
    for (const digest of digests) {
      yield* sql`insert into connection_aliases (digest, connection_id) values (${Buffer.from(digest, "hex")}, ${connectionId}) on conflict do nothing`
    }
  })

/** A provider's state as stored: JSON, encrypted; null when it keeps none. */
export const encryptState = (cipher: TokenCipher["Type"], state: unknown) =>
  state === undefined ? null : cipher.encrypt(Redacted.make(JSON.stringify(state)))

/** Serializes "is this provider user linked?" against linking them, per provider user. */
const lockUserKey = (sql: SqlClient.SqlClient, provider: string, key: string) =>
  sql`select pg_advisory_xact_lock(hashtextextended(${provider + ":" + key}, 0))`

export class Links extends Effect.Service<Links>()("wearflow/Links", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cipher = yield* TokenCipher
    const accounts = yield* Accounts
    const parked = yield* ParkedNotifications
    const history = yield* Effect.serviceOption(ConnectionHistory)
    const polling = yield* Effect.serviceOption(ConnectionSync)

    const connectionsOf = (userId: string) =>
      sql<{ provider: string; provider_user_id: string; status: string; scopes: Array<string>; created_at: Date }>`
        select provider, provider_user_id, status, scopes, created_at from provider_connections where user_id = ${userId} order by provider`.pipe(
        Effect.map((rows) => rows.map((r): Connection => ({ ...r, created_at: r.created_at.toISOString() })))
      )

    /** The connections of several users, in one statement: by user id. */
    const connectionsOfUsers = (userIds: ReadonlyArray<string>) =>
      sql<{ user_id: string; provider: string; provider_user_id: string; status: string; scopes: Array<string>; created_at: Date }>`
        select user_id, provider, provider_user_id, status, scopes, created_at from provider_connections
        where user_id = any(${userIds}::uuid[]) order by provider`.pipe(
        Effect.map((rows) => {
          const byUser = new Map<string, Array<Connection>>()
          for (const { user_id, ...r } of rows) {
            const list = byUser.get(user_id) ?? []
            list.push({ ...r, created_at: r.created_at.toISOString() })
            byUser.set(user_id, list)
          }
          return byUser
        })
      )

    /**
     * Links `providerUserId` to the user (replacing an earlier link for that provider) with
     * the tokens and state of connect flow `flow`, tells the user's team
     * (`provider.connection.created`), and queues every notification that arrived for that
     * provider user — by id, or by an alias of the connection — while nobody had linked it.
     */
    const link = Effect.fn("Links.link")(function* (
      teamId: string,
      userId: string,
      provider: Pick<Provider, "id" | "name" | "resourceScopes"> & Partial<Pick<Provider, "backfill" | "auth" | "aliasesOf" | "legacyState" | "sync">>,
      providerUserId: string,
      tokens: ConnectionTokens,
      flow?: string
    ) {
      const user = yield* accounts.getUser(teamId, userId)
      const encrypt = (value: Redacted.Redacted<string> | undefined) => (value ? cipher.encrypt(value) : null)
      const aliases = aliasDigestsOf(provider, { bearer: tokens.accessToken, state: tokens.state })
      const keys = [providerUserId, ...aliases.map((digest) => userKey({ _tag: "Alias", digest }))]
      for (const key of keys) yield* lockUserKey(sql, provider.id, key)
      const elsewhere = yield* sql<{ n: number }>`
        select count(*)::int as n from provider_connections c join users u on u.id = c.user_id
        where c.provider = ${provider.id} and c.provider_user_id = ${providerUserId} and c.status = 'active' and u.team_id <> ${teamId}`
      if (elsewhere[0]!.n > 0) return yield* new ProviderUserTaken({ provider: provider.id })
      const connectedWith = flow ?? (tokens.accessToken ? provider.auth?.flows[0] : undefined) ?? null
      const [row] = yield* sql<{ id: string; provider: string; provider_user_id: string; status: string; scopes: Array<string>; created_at: Date }>`
        insert into provider_connections
          (id, user_id, provider, provider_user_id, status, scopes, access_token, refresh_token, provider_state,
           access_token_expires_at, refresh_token_expires_at, auth_version)
        values (${randomUUID()}, ${userId}, ${provider.id}, ${providerUserId}, 'active', ${tokens.scopes ?? []},
                ${encrypt(tokens.accessToken)}, ${encrypt(tokens.refreshToken)}, ${encryptState(cipher, tokens.state)},
                ${tokens.accessTokenExpiresAt ?? null}, ${tokens.refreshTokenExpiresAt ?? null}, ${connectedWith})
        on conflict (user_id, provider) do update set
          provider_user_id = excluded.provider_user_id, status = 'active', scopes = excluded.scopes,
          access_token = excluded.access_token, refresh_token = excluded.refresh_token, provider_state = excluded.provider_state,
          access_token_expires_at = excluded.access_token_expires_at, refresh_token_expires_at = excluded.refresh_token_expires_at,
          auth_version = excluded.auth_version, last_error = null,
          ${sql.literal(ERASE_LEGACY_COLUMNS)}, linked_at = now(), updated_at = now()
        returning id, provider, provider_user_id, status, scopes, created_at`
      yield* replaceAliases(sql, row!.id, aliases)
      yield* appendEvent(sql, {
        event_type: "provider.connection.created",
        data: {
          user_id: userId,
          provider: providerInfo(provider),
          external_user_id: providerUserId,
          resource_availability: resourceAvailability(provider, tokens.scopes)
        },
        user_id: userId,
        client_user_id: user.client_user_id,
        team_id: teamId
      }, null)
      const replayed = yield* parked.replay(sql, provider.id, keys)
      // The history is fetched from the same transaction: a connection never exists without its backfill.
      const backfillId = Option.isSome(history) ? yield* history.value.schedule(sql, { teamId, userId, provider }) : undefined
      if (Option.isSome(polling)) yield* polling.value.schedule(sql, { connectionId: row!.id, provider })
      const { id: _id, ...connection } = row!
      return { connection: { ...connection, created_at: connection.created_at.toISOString() } satisfies Connection, replayed, backfillId }
    }, sql.withTransaction)

    /** Active connections for a provider user, by id or by alias. */
    const connectionsFor = (provider: string, ref: UserRef) =>
      sql<{ user_id: string; team_id: string; client_user_id: string }>`
        select u.id as user_id, u.team_id, u.client_user_id
        from provider_connections c join users u on u.id = c.user_id
        where c.provider = ${provider} and c.status = 'active' and u.deleted_at is null
          and ${matchesUserRef(sql, ref)}
        order by c.created_at`

    /** Active connections of provider users by id, for all takers at the same step in one statement. */
    const linkedById = batched((keys: ReadonlyArray<{ readonly provider: string; readonly id: string }>) => {
      // Each provider user once: two of one user's jobs at the same step must not double its rows.
      const distinct = [...new Map(keys.map((k) => [JSON.stringify([k.provider, k.id]), k])).values()]
      return sql<{ provider: string; provider_user_id: string; user_id: string; team_id: string; client_user_id: string }>`
        select c.provider, c.provider_user_id, u.id as user_id, u.team_id, u.client_user_id
        from provider_connections c join users u on u.id = c.user_id
        join unnest(${distinct.map((k) => k.provider)}::text[], ${distinct.map((k) => k.id)}::text[]) as k(provider, id)
          on c.provider = k.provider and c.provider_user_id = k.id
        where c.status = 'active' and u.deleted_at is null
        order by c.created_at`.pipe(
        Effect.map((rows) => keys.map((k) => rows.filter((r) => r.provider === k.provider && r.provider_user_id === k.id)))
      )
    })

    /** Parks `inboxId`'s items for a provider user unless someone linked them meanwhile; answers the recipients found. */
    const parkUnlessLinked = (yield* Tracing.fn("Links.parkUnlessLinked"))(function* (
      provider: string,
      ref: UserRef,
      inboxId: number,
      itemCount: number
    ) {
      const key = userKey(ref)
      yield* lockUserKey(sql, provider, key)
      const rows = yield* connectionsFor(provider, ref)
      if (rows.length === 0) {
        yield* sql`
          insert into unlinked_notifications (provider, provider_user_id, inbox_id, item_count)
          values (${provider}, ${key}, ${inboxId}, ${itemCount})
          on conflict do nothing`
      }
      return rows
    }, sql.withTransaction)

    /**
     * The users a provider user's data goes to. When there are none, records that `inboxId`
     * holds `itemCount` items for them, so linking them later replays it. A linked user's
     * recipients are read without the lock: it only orders parking against linking.
     */
    const recipientsOrPark = (yield* Tracing.fn("Links.recipientsOrPark"))(function* (
      provider: string,
      ref: UserRef,
      inboxId: number,
      itemCount: number
    ) {
      const linked = ref._tag === "UserId" ? yield* linkedById({ provider, id: ref.id }) : yield* connectionsFor(provider, ref)
      const rows = linked.length > 0 ? linked : yield* parkUnlessLinked(provider, ref, inboxId, itemCount)
      return rows.map((r): Recipient => ({ userId: r.user_id, teamId: r.team_id, clientUserId: r.client_user_id }))
    })

    /** SQL: the connection (`c`) was linked before inbox row `inboxId` was received. */
    const madeBefore = (inboxId: number | undefined) =>
      inboxId === undefined ? sql`true` : sql`c.linked_at <= (select i.received_at from inbox i where i.id = ${inboxId})`

    /** Appends `provider.connection.error` for a connection's user. */
    const connectionError = (
      provider: Pick<Provider, "id" | "name">,
      recipient: Recipient,
      errorType: ConnectionErrorType,
      message: string,
      details: Record<string, unknown> = {}
    ) =>
      appendEvent(sql, {
        event_type: "provider.connection.error",
        data: { user_id: recipient.userId, provider: providerInfo(provider), message, error_type: errorType, error_details: details },
        user_id: recipient.userId,
        client_user_id: recipient.clientUserId,
        team_id: recipient.teamId
      }, null)

    /**
     * What a lifecycle item says, applied: a deregistered connection stops (no more data goes
     * to it) and its users hear of it; a permission change updates the scopes and, when a
     * permission the provider needs is gone, the users hear of that.
     *
     * Only to connections made before the item arrived (the receipt time of inbox row
     * `inboxId`): an item parked for an unlinked user and replayed when they link, or one
     * still queued when the user reconnected, speaks of an earlier registration. Lifecycle
     * items may carry no time of their own, so arrival is the one measure every kind shares.
     */
    const applyLifecycle = Effect.fn("Links.applyLifecycle")(function* (provider: Provider, ref: UserRef, change: LifecycleChange, inboxId?: number) {
      const match = sql`${matchesUserRef(sql, ref)} and ${madeBefore(inboxId)}`
      if (change._tag === "DataChanged") {
        if (Option.isNone(polling)) return
        const rows = yield* sql<{ id: string }>`
          select c.id from provider_connections c where c.provider = ${provider.id} and c.status = 'active' and ${matchesUserRef(sql, ref)}`
        return yield* polling.value.wake(rows.map((r) => r.id))
      }
      if (change._tag === "Deregistered") {
        const rows = yield* sql<{ user_id: string; team_id: string; client_user_id: string }>`
          update provider_connections c set status = 'deregistered', updated_at = now()
          from users u
          where u.id = c.user_id and c.provider = ${provider.id} and c.status = 'active' and ${match}
          returning u.id as user_id, u.team_id, u.client_user_id`
        for (const r of rows) {
          yield* connectionError(provider, { userId: r.user_id, teamId: r.team_id, clientUserId: r.client_user_id }, "deregistered_per_provider", `the user deregistered from ${provider.name}`)
        }
        return
      }
      const rows = yield* sql<{ user_id: string; team_id: string; client_user_id: string }>`
        update provider_connections c set scopes = ${change.permissions}, updated_at = now()
        from users u
        where u.id = c.user_id and c.provider = ${provider.id} and c.status = 'active' and ${match}
        returning u.id as user_id, u.team_id, u.client_user_id`
      const missing = provider.requiredPermissions.filter((p) => !change.permissions.includes(p))
      if (missing.length === 0) return
      for (const r of rows) {
        yield* connectionError(provider, { userId: r.user_id, teamId: r.team_id, clientUserId: r.client_user_id }, "required_scopes_not_granted", `permissions withdrawn: ${missing.join(", ")}`, { missing_permissions: missing })
      }
    }, sql.withTransaction)

    /**
     * Moves every stored token to the current encryption key (after a new key was put in
     * front of WEARFLOW_ENCRYPTION_KEY). Row by row, each in its own transaction; safe to
     * run again or concurrently. Returns how many connections were re-encrypted.
     */
    const reencryptTokens = Effect.fn("Links.reencryptTokens")(function* () {
      type Row = Record<(typeof tokenColumns)[number], Uint8Array | null> & { id: string }
      // The old secret columns too, while rows are left to move (legacy-credentials.ts).
      const tokenColumns = ["access_token", "refresh_token", "provider_state", ...LEGACY_SECRET_COLUMNS] as const
      const rows = yield* sql<Row>`
        select id, ${sql.literal(tokenColumns.join(", "))} from provider_connections
        where ${sql.literal(tokenColumns.map((c) => `${c} is not null`).join(" or "))}`
      let moved = 0
      for (const row of rows) {
        const fresh = yield* reencrypted(cipher, tokenColumns.map((c) => row[c]))
        if (!fresh) continue
        // Only if no refresh or other rewrite changed the row meanwhile.
        yield* sql`
          update provider_connections set ${sql.update(Object.fromEntries(tokenColumns.map((c, i) => [c, fresh[i] ?? null])))}
          where id = ${row.id} and access_token is not distinct from ${row.access_token} and refresh_token is not distinct from ${row.refresh_token}
            and provider_state is not distinct from ${row.provider_state}`
        moved++
      }
      return moved
    })

    return { connectionsOf, connectionsOfUsers, link, recipientsOrPark, applyLifecycle, connectionError, reencryptTokens } as const
  })
}) {}
