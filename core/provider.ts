/**
 * The Provider contract: how a provider's notification bodies split into items addressed to
 * provider users, each item a record, a pointer at data to fetch, or a deletion; the normalizer for
 * each item key; how a pointer is fetched; what a lifecycle item means; its connect flows and
 * the state it keeps per connection. Its HTTP routes are an HttpApiGroup exported from its
 * `mod.ts`.
 */
import { Context, Data, type Duration, Effect, Layer, type Redacted, type Schema } from "effect"
import type { LegacyCredentials } from "./connections/legacy-credentials.ts"
import type { Normalizer } from "./normalizer.ts"

/**
 * How a notification names its user: the provider's user id, or one of the connection's
 * aliases — a routing key derived from a secret, named by its digest (crypto.ts aliasDigest),
 * so that neither stored bodies nor connections keep the secret for routing.
 */
export type UserRef =
  | { readonly _tag: "UserId"; readonly id: string }
  | { readonly _tag: "Alias"; readonly digest: string }

interface ItemFields {
  /** The body's top-level key (the provider's data type, e.g. `dailies`). */
  readonly key: string
  readonly index: number
  /** Undefined when the item names no user it can be routed by. */
  readonly user: UserRef | undefined
  readonly raw: unknown
}

/**
 * One item of a notification body, addressed to one provider user.
 * - `record`: the item is the data itself, normalized as it is;
 * - `pointer`: it names data the worker fetches (Provider.fetch) and commits to the inbox
 *   before it is processed;
 * - `deletion`: the user deleted the provider's record `deleted` (its source id): every record
 *   stored from it, of any resource, is removed for the provider user's linked users. Its
 *   `raw` is not normalized.
 */
export type NotificationItem =
  | (ItemFields & { readonly carries: "record" | "pointer" })
  | (ItemFields & { readonly carries: "deletion"; readonly deleted: string })

/** A connection's secrets, decrypted, for calls made on the user's behalf. */
export interface Credentials {
  /** OAuth 2.0 access token. */
  readonly bearer: Redacted.Redacted<string> | undefined
  /**
   * The provider's own state for this connection (as it encoded it in ConnectionTokens.state),
   * kept encrypted; undefined when it keeps none. The provider decodes it with its own schema.
   */
  readonly state: unknown
}

/** What fetching a pointer item gave: records (a body the provider reads as `kind`), or a file. */
export type Fetched =
  | { readonly _tag: "Records"; readonly kind: string; readonly key: string; readonly records: ReadonlyArray<unknown> }
  | {
    readonly _tag: "File"
    /** The provider's id of the record the file belongs to. */
    readonly sourceId: string
    readonly activityId: string | undefined
    readonly fileType: string
    readonly contentType: string
    readonly bytes: Uint8Array
  }

/** A fetch failed; `retryable` failures (429, 5xx, network) are retried with back-off. */
export class FetchError extends Data.TaggedError("FetchError")<{
  readonly message: string
  readonly retryable: boolean
  readonly status?: number | undefined
  /** How long the provider asked to wait before trying again (a 429's Retry-After), when it said. */
  readonly retryAfter?: Duration.Duration | undefined
}> {}

/** Tokens of a provider connection (stored encrypted). */
export interface ConnectionTokens {
  /** OAuth 2.0 access token (Credentials.bearer). */
  readonly accessToken?: Redacted.Redacted<string> | undefined
  readonly refreshToken?: Redacted.Redacted<string> | undefined
  readonly accessTokenExpiresAt?: Date | undefined
  readonly refreshTokenExpiresAt?: Date | undefined
  /** The permissions the user granted, when the provider said. */
  readonly scopes?: ReadonlyArray<string> | undefined
  /**
   * The provider's own state for the connection, encoded as JSON-compatible data (secrets
   * included: it is stored encrypted). Undefined on a refresh keeps the stored state.
   */
  readonly state?: unknown
}

/** What must be kept between sending the user to the provider and its callback. */
export interface PendingAuth {
  /** OAuth 2.0 PKCE code verifier. */
  readonly codeVerifier?: Redacted.Redacted<string> | undefined
  /**
   * For a flow whose callback carries no `state`: the value the callback carries instead
   * (ProviderAuth.sessionKeyOf reads it), which finds the flow's session.
   */
  readonly sessionKey?: string | undefined
  /** A secret of the flow in progress, needed to finish it. */
  readonly secret?: Redacted.Redacted<string> | undefined
}

/** A provider account the user connected, with its tokens. */
export interface Connected {
  readonly providerUserId: string
  readonly tokens: ConnectionTokens
}

/** An account linked through the API with tokens the caller holds, and the connect flow they came from. */
export interface LinkInput extends Connected {
  readonly flow?: string | undefined
}

/**
 * An OAuth exchange with the provider failed. `denied`: the user or the provider refused
 * (bad or revoked grant, declined consent) — retrying will not help; `unavailable`: the
 * provider could not be reached or answered 429/5xx — retry later.
 */
export class AuthError extends Data.TaggedError("AuthError")<{
  readonly message: string
  readonly reason: "denied" | "unavailable" | "misconfigured"
  readonly status?: number | undefined
}> {}

/** A provider's connect flows, token refresh and deregistration. */
export interface ProviderAuth {
  /** The names of the connect flows users can choose (the provider's own); the first is the default. */
  readonly flows: ReadonlyArray<string>
  /** Where to send the user to approve access; `state` comes back with the callback. */
  readonly begin: (
    flow: string,
    input: { readonly callbackUrl: string; readonly state: string }
  ) => Effect.Effect<{ readonly authorizeUrl: string; readonly pending: PendingAuth }, AuthError>
  /** Finishes a flow from the callback's query parameters. */
  readonly complete: (
    flow: string,
    input: { readonly callbackUrl: string; readonly pending: PendingAuth; readonly query: Readonly<Record<string, string>> }
  ) => Effect.Effect<Connected, AuthError>
  /** For callbacks without `state`: the PendingAuth.sessionKey the callback's query carries. */
  readonly sessionKeyOf?: ((query: Readonly<Record<string, string>>) => string | undefined) | undefined
  /** Trades a refresh token for a new pair (providers may rotate the refresh token). */
  readonly refresh: (refreshToken: Redacted.Redacted<string>) => Effect.Effect<ConnectionTokens, AuthError>
  /** Tells the provider the user disconnected, so it stops sending their data. */
  readonly deregister: (credentials: Credentials) => Effect.Effect<void, AuthError>
}

/** One kind of history a provider can be asked to resend. */
export interface BackfillType {
  /** The provider's name for it (e.g. `dailies`). */
  readonly type: string
  /** The resource whose `historical.data.<resource>.created` it contributes to. */
  readonly resource: string
  /** Notification keys its data arrives under (they may differ from the type's name). */
  readonly keys: ReadonlyArray<string>
  /** The longest range one request may cover. */
  readonly maxDays: number
}

/** A time range, start inclusive, end exclusive. */
export interface TimeRange {
  readonly start: Date
  readonly end: Date
}

/** How the provider answered a request for history. */
export type BackfillAnswer =
  /** Accepted; the data arrives later through the normal notifications (push-style history). */
  | { readonly _tag: "Accepted" }
  /**
   * The provider fetched the range itself and committed every page through `HistoryPages.commit`
   * (pull-style history): the window is done once those pages are processed.
   */
  | { readonly _tag: "Fetched"; readonly pages: number }
  /** That range was requested before; the provider will not send it again. */
  | { readonly _tag: "AlreadyRequested" }
  /** Asked further back than allowed; `earliest` when the provider said how far back is allowed. */
  | { readonly _tag: "TooFarBack"; readonly earliest: Date | undefined; readonly message: string }
  /** No permission (or revoked): the chain for this connection stops. */
  | { readonly _tag: "Forbidden"; readonly status: number; readonly message: string }
  /** Over the provider's rate limit. */
  | { readonly _tag: "RateLimited"; readonly retryAfter: Duration.Duration | undefined }
  /** 5xx, a network failure or a timeout: try again later. */
  | { readonly _tag: "Unavailable"; readonly message: string }
  /** Refused for this type only (not enabled for the app, bad range): its windows fail, the chain goes on. */
  | { readonly _tag: "Rejected"; readonly status: number; readonly message: string }

/** A page of history could not be stored; the request should answer `Unavailable` (it is tried again). */
export class PageCommitError extends Data.TaggedError("PageCommitError")<{ readonly message: string }> {
  readonly retryable = true
}

/** One page of fetched history, stored like a notification body the provider's `itemsOf` reads. */
export interface HistoryPage {
  /** The provider's name for the body's kind, as `itemsOf` reads it. */
  readonly kind: string
  readonly body: string
  readonly itemCount: number
}

/**
 * Where a provider that pulls history itself puts what it fetched for one window. Each page
 * is committed to the inbox durably and once: committing the same page number of the same
 * window again (a request tried again after a failure or a crash) stores nothing.
 */
export interface HistoryPages {
  /** The provider user the history is fetched for (bodies must name them for `itemsOf`). */
  readonly providerUserId: string
  /** Stores page `page` (0, 1, … in the order fetched); true when it was not stored before. */
  readonly commit: (page: number, content: HistoryPage) => Effect.Effect<boolean, PageCommitError>
}

/**
 * A provider's history: what can be asked for, how, and when an item's data is from. A
 * push-style provider answers `Accepted` and the data comes as notifications; a pull-style
 * one fetches the range, commits it through `pages`, and answers `Fetched`.
 */
export interface ProviderBackfill {
  readonly types: ReadonlyArray<BackfillType>
  readonly request: (credentials: Credentials, type: string, range: TimeRange, pages: HistoryPages) => Effect.Effect<BackfillAnswer>
  /** When an item's data is from (its start or its day), to tell which requested range it answers. */
  readonly itemTime: (item: NotificationItem) => Date | undefined
  /** What to tell the team when the provider refuses history (`Forbidden`): e.g. the permission it takes. */
  readonly forbiddenHint?: string | undefined
}

/** How a provider answered a poll for what changed since a cursor. */
export type PollAnswer =
  /**
   * Every page of what changed since the cursor is committed (`SyncPages.commit`); `cursor` is
   * where the next poll starts (undefined: from the start again). `more`: the provider stopped
   * early (a page limit) and asks for another round at once.
   */
  | { readonly _tag: "Polled"; readonly cursor: string | undefined; readonly more: boolean }
  /** Over the provider's rate limit: the round is tried again after `retryAfter` (or the configured window). */
  | { readonly _tag: "RateLimited"; readonly retryAfter: Duration.Duration | undefined }
  /** No permission, or revoked: the connection's polling stops and its user hears of it. */
  | { readonly _tag: "Forbidden"; readonly message: string }
  /** 5xx, a network failure or a timeout: the round is tried again with back-off. */
  | { readonly _tag: "Unavailable"; readonly message: string }

/**
 * Where a poll puts what it fetched: each page is committed to the inbox durably and once for
 * its round — a round tried again (after a failure or a crash, from the same cursor) stores a
 * page only when its content differs from what that page held before, so nothing is skipped.
 */
export interface SyncPages {
  /** The provider user polled for (bodies must name them for `itemsOf`). */
  readonly providerUserId: string
  /** Stores page `page` (0, 1, … in the order fetched); true when it was not stored before. */
  readonly commit: (page: number, content: HistoryPage) => Effect.Effect<boolean, PageCommitError>
}

/**
 * Polling: core runs one durable poll per active connection, asking the provider for what
 * changed since the connection's stored cursor, every `interval` (plus configured jitter), or
 * at once when woken (a provider's change notification). The cursor advances only once the
 * round's pages are committed.
 */
export interface ProviderSync {
  /** How long between two rounds of one connection. */
  readonly interval: Duration.Duration
  /** Fetches what changed since `cursor` (undefined: the first round), committing each page through `pages`. */
  readonly poll: (credentials: Credentials, cursor: string | undefined, pages: SyncPages) => Effect.Effect<PollAnswer>
}

export type { LegacyCredentials } from "./connections/legacy-credentials.ts"

/** Builds a provider's state (and flow) from secrets core kept before providers owned their state. */
export type LegacyCredentialsHook = (legacy: LegacyCredentials) => { readonly state: unknown; readonly flow: string | undefined }

/** What a lifecycle item says about a provider user's connection. */
export type LifecycleChange =
  | { readonly _tag: "Deregistered" }
  | { readonly _tag: "PermissionsChanged"; readonly permissions: ReadonlyArray<string> }
  /** The user's data changed at the provider (a hint, e.g. a change notification): their polls run now. */
  | { readonly _tag: "DataChanged" }

export interface Provider {
  readonly id: string
  /** Display name, as events show it (`provider.name`). */
  readonly name: string
  /**
   * Splits a stored notification body into items, in body order, leaving out malformed ones.
   * `kind` is the provider's own name for the body's kind, as it was committed to the inbox.
   */
  readonly itemsOf: (kind: string, body: unknown) => ReadonlyArray<NotificationItem>
  /**
   * Why the malformed items `itemsOf` leaves out cannot be processed (by key and index, never
   * quoting values): recorded on the inbox row's outcome. Checked here, off the request path.
   */
  readonly problemsOf?: ((kind: string, body: unknown) => ReadonlyArray<{ readonly key: string; readonly index: number; readonly message: string }>) | undefined
  /** One normalizer per item key; keys without one are stored but produce no records. */
  readonly normalizers: Readonly<Record<string, Normalizer>>
  /** Fetches the data a pointer item names. */
  readonly fetch: (item: NotificationItem, credentials: Credentials | undefined) => Effect.Effect<Fetched, FetchError>
  /** Reads a lifecycle item (deregistration, permission change); undefined for data items. */
  readonly lifecycle: (item: NotificationItem) => LifecycleChange | undefined
  /** Permissions without which the connection cannot deliver its data. */
  readonly requiredPermissions: ReadonlyArray<string>
  /** The permission each resource needs; resources not listed need none. */
  readonly resourceScopes: Readonly<Record<string, string>>
  /** Connect flows and token upkeep; undefined for providers without OAuth. */
  readonly auth: ProviderAuth | undefined
  /** History requests; undefined for providers that cannot resend history. */
  readonly backfill: ProviderBackfill | undefined
  /** Polling for changes (pull-first providers); undefined: the provider pushes or notifies. */
  readonly sync?: ProviderSync | undefined
  /**
   * Linking an account the caller already holds tokens for
   * (`POST /v2/user/{id}/connections/{provider}`): the provider's own JSON payload, decoded to
   * the account and its tokens. Undefined: only the connect flow links.
   */
  readonly linkPayload?: Schema.Schema<LinkInput, any> | undefined
  /**
   * The secrets a connection can be routed by besides its provider user id (its aliases),
   * read from its credentials whenever they are written; only their digests are stored.
   */
  readonly aliasesOf?: ((credentials: Credentials) => ReadonlyArray<Redacted.Redacted<string>>) | undefined
  /**
   * The provider's state (and connect flow) for secrets core stored in its own columns before
   * providers owned their state: moved once at start (legacy-credentials.ts), and for tokens
   * handed over in that older shape (Accounts.link).
   */
  readonly legacyState?: LegacyCredentialsHook | undefined
}

/** The providers this process runs, by id. */
export class Providers extends Context.Tag("wearflow/Providers")<Providers, ReadonlyMap<string, Provider>>() {
  /** The registry from providers that plugin layers build (they need their sandboxed clients). */
  static readonly fromTags = <I>(...tags: ReadonlyArray<Context.Tag<I, Provider>>): Layer.Layer<Providers, never, I> =>
    Layer.effect(
      Providers,
      Effect.map(
        Effect.forEach(tags, (tag) => tag),
        (providers): ReadonlyMap<string, Provider> => new Map(providers.map((provider) => [provider.id, provider]))
      )
    )
}
