/**
 * Provider connections over their lifetime: connect flows started from link URLs, OAuth 2.0
 * tokens refreshed before they expire, disconnects, and rewrites of a connection's credentials
 * a provider runs itself (e.g. moving connections from one connect flow to another), one
 * connection at a time under its row lock.
 *
 * Refresh tokens rotate on every refresh, and presenting a rotated-out one revokes the
 * connection. So a refresh runs inside a transaction holding the connection's row lock, and
 * re-checks the expiry once it holds it: across processes, one refresh per expiry, and the new
 * pair is committed together.
 */
import { SqlClient, type Statement } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Duration, Effect, Either, Layer, Metric, Option, Redacted, Schedule } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { Accounts } from "../tenancy/accounts.ts"
import { Links, aliasDigestsOf, encryptState, matchesUserRef, replaceAliases } from "./links.ts"
import { type DecryptionError, TokenCipher } from "../crypto.ts"
import { ERASE_LEGACY_COLUMNS, moveLegacyCredentials } from "./legacy-credentials.ts"
import {
  type AuthError,
  type ConnectionTokens,
  type Credentials,
  type PendingAuth,
  type Provider,
  type ProviderAuth,
  Providers,
  type UserRef
} from "../provider.ts"

/** How long a link URL stays usable. */
const LINK_TTL = Duration.hours(1)

/** Token refresh rounds this process finished: a stalled refresher shows as a counter that stops. */
export const refreshRounds = Metric.counter("wearflow_token_refresh_rounds_total")

/** The provider does not exist here, or has no connect flow. */
export class ProviderUnsupported extends Data.TaggedError("ProviderUnsupported")<{ readonly message: string }> {}
/** The link URL is unknown, expired or already used. */
export class LinkInvalid extends Data.TaggedError("LinkInvalid")<{ readonly message: string }> {}
/** The user has no active connection to that provider. */
export class NotConnected extends Data.TaggedError("NotConnected")<{ readonly provider: string }> {}
/** The provider says new tokens belong to another account than the connection's. */
export class AccountMismatch extends Data.TaggedError("AccountMismatch")<{ readonly message: string }> {}

/** Why a connect flow ended without a connection, as the redirect's `error_type` says it. */
export type LinkErrorType = "access_denied" | "provider_unavailable" | "account_linked_elsewhere" | "misconfigured"

export type LinkOutcome =
  | { readonly _tag: "Connected"; readonly userId: string; readonly providerUserId: string; readonly backfillId: string | undefined }
  | { readonly _tag: "Failed"; readonly userId: string; readonly errorType: LinkErrorType; readonly message: string }

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

type RefreshResult = "refreshed" | "fresh" | "busy" | "failed" | "retry"

const linkId = (token: string) => createHash("sha256").update(token).digest("hex")

interface ConnectionRow {
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
const connectionColumns = `c.id, c.user_id, c.provider, c.auth_version, c.access_token, c.refresh_token, c.provider_state,
  c.access_token_expires_at`

export class Connections extends Effect.Service<Connections>()("wearflow/Connections", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cipher = yield* TokenCipher
    const accounts = yield* Accounts
    const links = yield* Links
    const providers = yield* Providers

    // Old secret columns move into their providers' state before anything reads credentials.
    yield* moveLegacyCredentials(cipher, providers)

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

    // -------------------------------------------------------------------------------------
    // Connect flows
    // -------------------------------------------------------------------------------------

    /** A single-use link for the user to connect `providerId` with one of its flows; only its hash is stored. */
    const createLink = Effect.fn("Connections.createLink")(function* (
      teamId: string,
      userId: string,
      providerId: string,
      options: {
        readonly redirectUrl?: string | undefined
        readonly flow?: string | undefined
      }
    ) {
      yield* accounts.getUser(teamId, userId)
      const { auth } = yield* authOf(providerId)
      const version = options.flow ?? auth.flows[0]!
      if (!auth.flows.includes(version)) return yield* new ProviderUnsupported({ message: `${providerId} does not connect with ${version}` })
      const token = randomBytes(32).toString("base64url")
      const expiresAt = new Date(Date.now() + Duration.toMillis(LINK_TTL))
      yield* sql`
        insert into link_sessions (id, team_id, user_id, provider, redirect_url, auth_version, expires_at)
        values (${linkId(token)}, ${teamId}, ${userId}, ${providerId}, ${options.redirectUrl ?? null}, ${version}, ${expiresAt})`
      return { token, expiresAt }
    })

    const openSession = (where: Statement.Statement<unknown>) =>
      sql<{ id: string; team_id: string; user_id: string; provider: string; redirect_url: string | null; auth_version: string; code_verifier: Uint8Array | null; session_key: string | null; pending_secret: Uint8Array | null }>`
        select id, team_id, user_id, provider, redirect_url, auth_version, code_verifier, session_key, pending_secret
        from link_sessions where ${where} and completed_at is null and expires_at > now()`.pipe(Effect.map((rows) => Option.fromNullable(rows[0])))

    /** The provider's consent page for a link; opening the link again starts over. */
    const beginLink = Effect.fn("Connections.beginLink")(function* (providerId: string, token: string, callbackUrl: string) {
      const { auth } = yield* authOf(providerId)
      const session = yield* openSession(sql`id = ${linkId(token)} and provider = ${providerId}`)
      if (Option.isNone(session)) return yield* new LinkInvalid({ message: "this link is unknown, expired or already used; ask for a new one" })
      const { authorizeUrl, pending } = yield* auth.begin(session.value.auth_version, { callbackUrl, state: token })
      yield* sql`
        update link_sessions set code_verifier = ${encrypt(pending.codeVerifier)}, session_key = ${pending.sessionKey ?? null},
          pending_secret = ${encrypt(pending.secret)}
        where id = ${session.value.id}`
      return authorizeUrl
    })

    /**
     * Finishes a flow from the provider's callback: the session is found by `state` (or, for
     * flows whose callback has none, by the session key the provider reads from the callback)
     * and used up, the provider's tokens are fetched and the connection linked. Says where the
     * user goes next.
     */
    const finishLink = Effect.fn("Connections.finishLink")(function* (providerId: string, query: Readonly<Record<string, string>>, callbackUrl: string) {
      const { provider, auth } = yield* authOf(providerId)
      const sessionKey = query["state"] === undefined ? auth.sessionKeyOf?.(query) : undefined
      const where = query["state"] !== undefined
        ? sql`id = ${linkId(query["state"])}`
        : sessionKey !== undefined
        ? sql`session_key = ${sessionKey}`
        : undefined
      const found = where === undefined ? Option.none() : yield* openSession(sql`${where} and provider = ${providerId}`)
      if (Option.isNone(found)) return yield* new LinkInvalid({ message: "this sign-in is unknown, expired or already finished; start again from your link" })
      const session = found.value
      // Used up before the provider is called: a replayed callback cannot finish it twice.
      const claimed = yield* sql`update link_sessions set completed_at = now() where id = ${session.id} and completed_at is null returning id`
      if (claimed.length === 0) return yield* new LinkInvalid({ message: "this sign-in was already finished" })
      const pending: PendingAuth = {
        codeVerifier: yield* decrypt(session.code_verifier),
        sessionKey: session.session_key ?? undefined,
        secret: yield* decrypt(session.pending_secret)
      }
      const failed = (errorType: LinkErrorType, message: string): LinkOutcome => ({ _tag: "Failed", userId: session.user_id, errorType, message })
      const connected = yield* Effect.either(auth.complete(session.auth_version, { callbackUrl, pending, query }))
      const outcome: LinkOutcome = yield* Either.match(connected, {
        onLeft: (e) =>
          Effect.succeed(failed(e.reason === "denied" ? "access_denied" : e.reason === "misconfigured" ? "misconfigured" : "provider_unavailable", e.message)),
        onRight: ({ providerUserId, tokens }) =>
          links.link(session.team_id, session.user_id, provider, providerUserId, tokens, session.auth_version).pipe(
            Effect.map((linked): LinkOutcome => ({ _tag: "Connected", userId: session.user_id, providerUserId, backfillId: linked.backfillId })),
            Effect.catchTag("ProviderUserTaken", () => Effect.succeed(failed("account_linked_elsewhere", `this ${provider.name} account is connected in another workspace`)))
          )
      })
      if (outcome._tag === "Failed") {
        yield* Effect.logWarning("connect flow failed").pipe(Effect.annotateLogs({ provider: providerId, user_id: session.user_id, error_type: outcome.errorType, reason: outcome.message }))
      } else {
        yield* Effect.logInfo("provider connected").pipe(Effect.annotateLogs({ provider: providerId, user_id: session.user_id, auth_version: session.auth_version }))
      }
      return { outcome, redirectUrl: session.redirect_url ?? undefined }
    })

    // -------------------------------------------------------------------------------------
    // Token refresh
    // -------------------------------------------------------------------------------------

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

    // -------------------------------------------------------------------------------------
    // Disconnect
    // -------------------------------------------------------------------------------------

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

    // -------------------------------------------------------------------------------------
    // Rewrites a provider runs over its connections
    // -------------------------------------------------------------------------------------

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

    return { createLink, beginLink, finishLink, refreshDue, credentialsFor, disconnect, activeConnections, replaceCredentials } as const
  })
}) {  /**
   * Keeps OAuth 2.0 tokens fresh: every `interval`, refreshes those expiring within `ahead`.
   * Any number of processes may run it; the row locks let one refresh each token.
   */
  static readonly layerRefresher = (options: { readonly interval: Duration.DurationInput; readonly ahead: Duration.DurationInput }) =>
    Layer.scopedDiscard(
      Effect.gen(function* () {
        const connections = yield* Connections
        const ahead = Duration.decode(options.ahead)
        const round = connections.refreshDue(ahead).pipe(
          Effect.tap((counts) =>
            counts.refreshed + counts.failed > 0 ? Effect.logInfo("refreshed provider tokens").pipe(Effect.annotateLogs(counts)) : Effect.void),
          Effect.catchAllCause((cause) => Effect.logError("token refresh round failed", cause)),
          Effect.zipRight(Metric.increment(refreshRounds))
        )
        yield* Effect.forkScoped(Effect.repeat(round, Schedule.spaced(options.interval)))
      })
    )
}
