/**
 * A fake Garmin Health API on loopback, for tests.
 *
 * One server plays every Garmin host (apis.garmin.com, connect.garmin.com,
 * connectapi.garmin.com, diauth.garmin.com): point all four base URLs at `url`.
 * Paths and behaviour follow /work/shared/reference/garmin.md: PING pulls (OAuth2 pull
 * token or OAuth 1.0a signature), activity files (single download, then 410), OAuth2 PKCE
 * with rotating refresh tokens, OAuth 1.0a three-legged flow, OAuth1 → OAuth2 token
 * exchange, user endpoints and backfill (answers, then delivery of the backfilled records as
 * PUSH or PING notifications to `state.backfill.deliverTo`, alone or batched with other
 * items). Everything lives in `state`, which tests may read and change at any time;
 * `inject()` adds failures, delays and held requests in front of it, and `seedHistory()`
 * fills a user's history from the fixture files.
 *
 * Where Garmin's behaviour is known, the fake behaves so rather than as Wearflow expects:
 * a pull serves only what was uploaded in its window; a backfill overlapping any range already
 * requested for the user answers 409; the min-start 400's wording is a setting, since the
 * real one is unverified.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http"

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/** A summary record as Garmin serves it (free-form JSON). */
export type GarminRecord = Record<string, unknown>

export interface OAuth2Grant {
  accessToken: string
  /** Milliseconds since epoch; set it in the past to simulate an expired access token. */
  accessTokenExpiresAt: number
  refreshToken: string
  refreshTokenExpiresAt: number
}

export interface FakeGarminUser {
  readonly userId: string
  /** False after DELETE /user/registration; every credential of the user is then refused. */
  registered: boolean
  /** Served by /user/permissions and used as the OAuth2 `scope`. */
  permissions: Array<string>
  /** The current OAuth2 pair; undefined before consent or after the grant was revoked. */
  oauth2: OAuth2Grant | undefined
  /** Refresh tokens rotated out. Presenting one again revokes the grant, as Garmin does. */
  retiredRefreshTokens: Array<string>
  /** OAuth 1.0a access token (legacy era). */
  oauth1: { token: string; secret: string } | undefined
  /** When set, token-exchange answers this status for the user instead of issuing tokens. */
  tokenExchangeFailure: 401 | 500 | undefined
  /**
   * The user's records by notification (envelope) key: `epochs`, `mct`, `pulseox`,
   * `allDayRespiration`, `moveIQActivities`, ... — the key Garmin puts them under in a PUSH
   * body. Pulls (whose path uses the REST name, e.g. `pulseOx`) and backfill deliveries both
   * translate to this key with `envelopeKeyOf`, so one list serves both. A pull serves only
   * the records uploaded in its window (`uploadTimeOf`): a record's `uploadTimeInSeconds`, or
   * the upload time the fake gave it when a notification announced it (`pingUrl`, a backfill
   * delivered by PING). Backfills pick records by their own time (`recordTimeOf`).
   */
  data: Record<string, Array<GarminRecord>>
  /** Earliest backfill start Garmin accepts for this user (epoch s); overrides
   *  `state.backfill.minStartTimeInSeconds`. Undefined: that setting applies. */
  backfillMinStartTimeInSeconds: number | undefined
}

export interface FakeActivityFile {
  readonly userId: string
  /** The `token` the callbackURL must carry. */
  readonly token: string
  bytes: Uint8Array
  contentType: string
  /** Files download once; later downloads get 410. */
  downloaded: boolean
}

export interface PendingRequestToken {
  readonly secret: string
  readonly callback: string
  /** Set once the user approved at /oauthConfirm. */
  verifier: string | undefined
  userId: string | undefined
}

export interface PendingAuthorizationCode {
  readonly userId: string
  readonly codeChallenge: string
  readonly redirectUri: string
}

export interface BackfillRequest {
  readonly userId: string
  readonly type: string
  readonly start: number
  readonly end: number
}

/** Backfill behaviour; tests may change any field at any time (each is read when used). */
export interface FakeBackfillSettings {
  /** Wearflow's PUSH endpoint, e.g. http://127.0.0.1:PORT/api/v1/webhooks/garmin/push.
   *  Undefined (the default): accepted backfills deliver nothing. */
  deliverTo: string | undefined
  /** Wait between the 202 and the first delivery (default 300 ms): the data comes later. */
  deliveryDelayMs: number
  /** Records per POST (default 40): Garmin spreads a backfill over several notifications. */
  chunkSize: number
  /** Wait between two POSTs of one backfill (default 50 ms). */
  chunkGapMs: number
  /** How backfilled records arrive: inline (PUSH, the default) or as PING items to pull. */
  deliverAs: "push" | "ping"
  /** Where PING deliveries go (Wearflow's PING endpoint); undefined (default): `deliverTo`. */
  pingTo: string | undefined
  /**
   * Other notification items Garmin batches into the same body as backfilled records
   * (another user's data, the user's live data, lifecycle items), by envelope key; called
   * for every POST. Undefined (default): backfill bodies carry only the backfill.
   */
  alongside: ((userId: string) => Record<string, Array<unknown>>) | undefined
  /** While true, accepted backfills wait before delivering (e.g. while the receiver restarts). */
  paused: boolean
  /**
   * The 400 errorMessage for a start before the min start time. Garmin's wording is
   * unverified; the default names the instant as ISO 8601.
   */
  minStartMessage: (minStartTimeInSeconds: number) => string
  /** Earliest start accepted for every user (epoch s); undefined (default): no limit. */
  minStartTimeInSeconds: number | undefined
  /** Days of data (summed over accepted requests of all users) allowed per `rateWindowMs`;
   *  over it → 429. Undefined (default): no limit. Garmin: 100 (evaluation), 10,000 (production). */
  daysPerMinute: number | undefined
  /** The rate-limit window (default 60,000 ms); shorten it to keep tests fast. */
  rateWindowMs: number
}

/** One backfill request as the handler saw it, whatever it answered. */
export interface BackfillLogEntry {
  /** Undefined when the credentials were refused (401). */
  readonly userId: string | undefined
  /** The REST type from the path, e.g. `pulseOx`. */
  readonly type: string
  /** Undefined when the parameter was missing or not whole seconds. */
  readonly start: number | undefined
  readonly end: number | undefined
  readonly status: number
  /** Date.now() when handled. */
  readonly at: number
}

/** One POST of backfilled records to `deliverTo`, after retries. */
export interface BackfillDelivery {
  readonly userId: string
  /** The backfill (REST) type, e.g. `pulseOx`. */
  readonly type: string
  /** The envelope key the records were sent under, e.g. `pulseox`. */
  readonly key: string
  /** Records in this POST. */
  readonly count: number
  /** The last attempt's HTTP status; 0 when it could not connect. */
  readonly status: number
  /** Date.now() after the last attempt. */
  readonly at: number
  /** The accepted request's range (epoch s) this POST answers. */
  readonly start: number
  readonly end: number
}

export interface SeedHistoryOptions {
  /** Epoch seconds; records are added whose time falls in [from, to). */
  readonly from: number
  readonly to: number
  /** Envelope keys (fixture file names). Default: dailies, sleeps, epochs, activities,
   *  bodyComps, hrv, stressDetails. */
  readonly types?: ReadonlyArray<string>
  /** One record per key every N UTC days (default 1); activity keys every second such day. */
  readonly everyDays?: number
}

export interface FakeGarminState {
  /** Registered (and deregistered) users by Garmin userId. */
  users: Map<string, FakeGarminUser>
  /** Who approves the next /oauth2Confirm; undefined → a new random user. */
  nextOAuth2User: string | undefined
  /** Who approves the next /oauthConfirm; undefined → a new random user. */
  nextOAuth1User: string | undefined
  /** Response shape of /user/permissions (Garmin's real shape is unverified). */
  permissionsShape: "array" | "object"
  /** PING pull tokens (the callbackURL's `token`) → userId. */
  pullTokens: Map<string, string>
  /** Activity files by id. */
  activityFiles: Map<string, FakeActivityFile>
  /** OAuth1 request tokens not yet exchanged for access tokens. */
  requestTokens: Map<string, PendingRequestToken>
  /** OAuth2 authorization codes not yet exchanged (single use). */
  authorizationCodes: Map<string, PendingAuthorizationCode>
  /** Every accepted backfill request, in order. */
  backfills: Array<BackfillRequest>
  /** Every backfill request that reached the handler, any status, in order. */
  backfillRequests: Array<BackfillLogEntry>
  /** Accepted backfills whose delivery is over, in the order they ended (per request: tests of one user wait for theirs). */
  backfillsEnded: Array<BackfillRequest>
  /** Every POST of backfilled records, in order of completion. */
  deliveries: Array<BackfillDelivery>
  backfill: FakeBackfillSettings
  counters: {
    /** refresh_token grants received (attempts, so concurrent refreshes show up). */
    refreshCount: number
    /** token-exchange requests with a valid signature (including injected per-user failures). */
    tokenExchangeCount: number
    deregistrations: number
    /** OAuth2 grants revoked because a rotated-out refresh token was reused. */
    revocations: number
    /** Accepted backfills whose delivery is over (all sent, or nothing to send or nowhere to). */
    backfillsDelivered: number
    /** Accepted backfills waiting for `state.backfill.paused` to clear, now. */
    deliveriesPaused: number
  }
}

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly query: Record<string, string>
  readonly headers: Record<string, string | undefined>
  readonly body: string
}

export interface InjectRule {
  readonly method?: string
  /** A string matches the path exactly; a RegExp is tested against the path (no query). */
  readonly path: string | RegExp
  /** Status to answer with (default 500). A rule with delayMs but no status/body only delays. */
  readonly status?: number
  readonly body?: string
  readonly headers?: Record<string, string>
  readonly delayMs?: number
  /** How many matching requests the rule applies to (default 1). */
  readonly times?: number
  /**
   * Holds the request open until this settles, then answers as the rule says (or handles it
   * normally, with no status or body): a request in flight for as long as a test needs.
   */
  readonly hold?: Promise<unknown>
  /**
   * The fake handles the request as usual (a backfill is accepted and delivered) but answers
   * the rule's status instead: Garmin did the work and the answer was lost on the way.
   */
  readonly handled?: boolean
}

export interface FakeGarmin {
  /** e.g. http://127.0.0.1:PORT */
  readonly url: string
  /** The server's Garmin settings for this fake: client id and secret, every base URL at `url`. */
  readonly env: Readonly<Record<string, string>>
  readonly state: FakeGarminState
  readonly requests: Array<RecordedRequest>
  inject(rule: InjectRule): void
  /**
   * Builds a PING callbackURL like Garmin's, pointing at this server, and announces the
   * upload: the user's records of `type` that have no upload time yet (with `{ oauth1 }`,
   * every user's) count as uploaded at `uploadEnd`, so this window's pull serves them and a
   * pull of another window does not. `{ userId }` mints a fresh pull token for that user;
   * `{ token }` puts the given token in the URL verbatim (valid only if `state.pullTokens`
   * binds it); `{ oauth1: true }` leaves the token out, so the pull must be OAuth 1.0a signed.
   */
  pingUrl(
    type: string,
    userKey: { userId: string } | { token: string } | { oauth1: true },
    uploadStart: number,
    uploadEnd: number
  ): string
  /** Adds (or replaces) a user with defaults for anything not given. */
  addUser(userId: string, init?: Partial<Omit<FakeGarminUser, "userId">>): FakeGarminUser
  /** Stores an activity file for `userId` and returns its callbackURL. */
  addActivityFile(userId: string, file: { id?: string; bytes: Uint8Array | string; contentType?: string }): string
  /**
   * Appends realistic history to `userId`'s `data`: per key, the first record of
   * testing/fixtures/<key>.json, moved to each day of the range (every time field
   * and calendarDate shifted together, fresh summaryId, this userId). Returns what it added.
   */
  seedHistory(userId: string, options: SeedHistoryOptions): Record<string, Array<GarminRecord>>
  /** Stops the server and cancels pending backfill deliveries. */
  close(): Promise<void>
}

export interface FakeGarminOptions {
  readonly consumerKey: string
  readonly consumerSecret: string
}

// ---------------------------------------------------------------------------
// Constants and small helpers
// ---------------------------------------------------------------------------

const ACCESS_TOKEN_TTL_S = 86_400
const REFRESH_TOKEN_TTL_S = 7_776_000
const MAX_PULL_WINDOW_S = 86_400
const DAY_S = 86_400
const MAX_BACKFILL_RANGE_S = 90 * DAY_S
/** Activity types allow 30 days per backfill request, health types 90. */
const MAX_ACTIVITY_BACKFILL_RANGE_S = 30 * DAY_S
const ACTIVITY_BACKFILL_TYPES = new Set(["activities", "activityDetails", "moveiq"])
/** A failed delivery is retried this many times, this far apart, as Garmin retries. */
const DELIVERY_RETRIES = 5
const DELIVERY_RETRY_GAP_MS = 200
/** Garmin gives up on an endpoint that has not answered in 30 s. */
const DELIVERY_TIMEOUT_MS = 30_000
const DEFAULT_PERMISSIONS = ["ACTIVITY_EXPORT", "HEALTH_EXPORT", "MCT_EXPORT", "HISTORICAL_DATA_EXPORT"]

const randomToken = (bytes = 16): string => randomBytes(bytes).toString("hex")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Whole, non-negative seconds, or undefined. */
const seconds = (value: string | null): number | undefined =>
  value !== null && /^\d+$/.test(value) ? Number(value) : undefined

const newUser = (userId: string, init: Partial<Omit<FakeGarminUser, "userId">> = {}): FakeGarminUser => ({
  registered: true,
  permissions: [...DEFAULT_PERMISSIONS],
  oauth2: undefined,
  retiredRefreshTokens: [],
  oauth1: undefined,
  tokenExchangeFailure: undefined,
  data: {},
  backfillMinStartTimeInSeconds: undefined,
  ...init,
  userId
})

const emptyState = (): FakeGarminState => ({
  users: new Map(),
  nextOAuth2User: undefined,
  nextOAuth1User: undefined,
  permissionsShape: "array",
  pullTokens: new Map(),
  activityFiles: new Map(),
  requestTokens: new Map(),
  authorizationCodes: new Map(),
  backfills: [],
  backfillRequests: [],
  backfillsEnded: [],
  deliveries: [],
  backfill: {
    deliverTo: undefined,
    deliveryDelayMs: 300,
    chunkSize: 40,
    chunkGapMs: 50,
    deliverAs: "push",
    pingTo: undefined,
    alongside: undefined,
    paused: false,
    minStartMessage: (minStart) => `summaryStartTimeInSeconds is before the min start time of ${isoSeconds(minStart)}`,
    minStartTimeInSeconds: undefined,
    daysPerMinute: undefined,
    rateWindowMs: 60_000
  },
  counters: { refreshCount: 0, tokenExchangeCount: 0, deregistrations: 0, revocations: 0, backfillsDelivered: 0, deliveriesPaused: 0 }
})

/** The user who approves a consent screen: the named one (created if new) or a fresh one. */
const approvingUser = (state: FakeGarminState, userId: string | undefined): FakeGarminUser => {
  const id = userId ?? randomToken()
  const user = state.users.get(id) ?? newUser(id)
  // Consenting again re-registers a deregistered user under the same userId.
  user.registered = true
  state.users.set(id, user)
  return user
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

/** One request as the handlers see it. */
interface Exchange {
  readonly method: string
  readonly url: URL
  /** The URI the client signed, for OAuth1 base strings: scheme://host/path, no query. */
  readonly signedUri: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** What a handler answers; written to the socket by `send`. */
interface Reply {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body?: string | Uint8Array
}

interface App {
  readonly state: FakeGarminState
  readonly client: FakeGarminOptions
  /** Work that outlives a request (backfill deliveries); `close()` cancels it. */
  readonly background: Background
  /** This server, e.g. http://127.0.0.1:PORT (set once listening). */
  url: string
}

/** A PING callbackURL like Garmin's for `type` and the upload window, pointing at this server. */
const mintPingUrl = (
  app: App,
  type: string,
  userKey: { userId: string } | { token: string } | { oauth1: true },
  uploadStart: number,
  uploadEnd: number
): string => {
  const callback = new URL(`/wellness-api/rest/${type}`, app.url)
  callback.searchParams.set("uploadStartTimeInSeconds", String(uploadStart))
  callback.searchParams.set("uploadEndTimeInSeconds", String(uploadEnd))
  if ("userId" in userKey) {
    const token = randomToken()
    app.state.pullTokens.set(token, userKey.userId)
    callback.searchParams.set("token", token)
  } else if ("token" in userKey) {
    callback.searchParams.set("token", userKey.token)
  }
  return callback.toString()
}

const json = (status: number, value: unknown): Reply => ({
  status,
  headers: { "content-type": "application/json;charset=UTF-8" },
  body: JSON.stringify(value)
})
const garminError = (status: number, errorMessage: string) => json(status, { errorMessage })
const oauthError = (status: number, error: string) => json(status, { error })
const form = (values: Record<string, string>): Reply => ({
  status: 200,
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(values).toString()
})
const redirect = (target: string, params: Record<string, string>): Reply => {
  const location = new URL(target)
  for (const [key, value] of Object.entries(params)) location.searchParams.set(key, value)
  return { status: 302, headers: { location: location.toString() } }
}
const empty = (status: number): Reply => ({ status })

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

const toExchange = (req: IncomingMessage, body: string, serverUrl: string): Exchange => {
  const url = new URL(req.url ?? "/", serverUrl)
  const host = (req.headers.host ?? url.host).toLowerCase()
  return { method: req.method ?? "GET", url, signedUri: `http://${host}${url.pathname}`, headers: req.headers, body }
}

const toRecorded = (ex: Exchange): RecordedRequest => ({
  method: ex.method,
  path: ex.url.pathname,
  query: Object.fromEntries(ex.url.searchParams),
  headers: Object.fromEntries(
    Object.entries(ex.headers).map(([key, value]) => [key, Array.isArray(value) ? value.join(", ") : value])
  ),
  body: ex.body
})

const send = (res: ServerResponse, reply: Reply): void => {
  res.writeHead(reply.status, reply.headers)
  res.end(reply.body === undefined ? undefined : Buffer.from(reply.body))
}

/** Form fields of a urlencoded body (empty for any other content type). */
const formFields = (ex: Exchange): URLSearchParams =>
  (ex.headers["content-type"] ?? "").includes("application/x-www-form-urlencoded")
    ? new URLSearchParams(ex.body)
    : new URLSearchParams()

// ---------------------------------------------------------------------------
// OAuth 1.0a signature verification (RFC 5849 §3.4, HMAC-SHA1)
// ---------------------------------------------------------------------------

/** RFC 3986 percent-encoding, as OAuth 1.0a requires (stricter than encodeURIComponent). */
const percentEncode = (value: string): string =>
  encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

/** Parses `OAuth k="v", ...` into decoded pairs; undefined for any other scheme. */
const parseOAuthHeader = (header: string | undefined): Map<string, string> | undefined => {
  if (header === undefined || !/^OAuth\s/i.test(header)) return undefined
  const pairs = new Map<string, string>()
  for (const match of header.slice(6).matchAll(/([\w.~%-]+)="([^"]*)"/g)) {
    pairs.set(decodeURIComponent(match[1] ?? ""), decodeURIComponent(match[2] ?? ""))
  }
  return pairs
}

/** Base string = METHOD & enc(URI) & enc(sorted, encoded params). */
const signatureBaseString = (method: string, uri: string, params: Array<[string, string]>): string => {
  const normalized = params
    .map(([key, value]) => [percentEncode(key), percentEncode(value)] as const)
    .sort(([ka, va], [kb, vb]) => (ka === kb ? (va < vb ? -1 : va > vb ? 1 : 0) : ka < kb ? -1 : 1))
    .map(([key, value]) => `${key}=${value}`)
    .join("&")
  return [method.toUpperCase(), percentEncode(uri), percentEncode(normalized)].join("&")
}

const hmacSha1 = (baseString: string, consumerSecret: string, tokenSecret: string): string =>
  createHmac("sha1", `${percentEncode(consumerSecret)}&${percentEncode(tokenSecret)}`)
    .update(baseString)
    .digest("base64")

const safeEqual = (a: string, b: string): boolean => {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

interface VerifiedOAuth1<C> {
  /** Every signed parameter (header oauth_*, query, form body), decoded. */
  readonly params: Map<string, string>
  /** What `lookup` returned for oauth_token; undefined when the request carried no token. */
  readonly credential: C | undefined
  readonly token: string | undefined
}

/**
 * Verifies an OAuth 1.0a HMAC-SHA1 request signed with our consumer key. `lookup` resolves
 * oauth_token to its secret; a token it does not know fails verification. Timestamps and
 * nonces are not checked: tests may replay requests freely.
 */
const verifyOAuth1 = <C extends { readonly secret: string }>(
  app: App,
  ex: Exchange,
  lookup: (token: string) => C | undefined
): VerifiedOAuth1<C> | undefined => {
  const header = parseOAuthHeader(ex.headers.authorization)
  const signature = header?.get("oauth_signature")
  if (header === undefined || signature === undefined) return undefined
  if (header.get("oauth_consumer_key") !== app.client.consumerKey) return undefined
  if (header.get("oauth_signature_method") !== "HMAC-SHA1") return undefined

  const token = header.get("oauth_token")
  const credential = token === undefined ? undefined : lookup(token)
  if (token !== undefined && credential === undefined) return undefined

  const params: Array<[string, string]> = [
    ...[...header].filter(([key]) => key !== "oauth_signature" && key !== "realm"),
    ...ex.url.searchParams,
    ...formFields(ex)
  ]
  const expected = hmacSha1(
    signatureBaseString(ex.method, ex.signedUri, params),
    app.client.consumerSecret,
    credential?.secret ?? ""
  )
  return safeEqual(expected, signature) ? { params: new Map(params), credential, token } : undefined
}

// ---------------------------------------------------------------------------
// Authentication of users
// ---------------------------------------------------------------------------

const findUser = (state: FakeGarminState, predicate: (user: FakeGarminUser) => boolean) =>
  [...state.users.values()].find(predicate)

const bearerToken = (ex: Exchange): string | undefined =>
  /^Bearer\s+(.+)$/i.exec(ex.headers.authorization ?? "")?.[1]

/** The registered user whose current, unexpired access token this is. */
const userByAccessToken = (state: FakeGarminState, token: string): FakeGarminUser | undefined =>
  findUser(
    state,
    (user) => user.registered && user.oauth2?.accessToken === token && user.oauth2.accessTokenExpiresAt > Date.now()
  )

/** The registered user whose OAuth1 access token signed this request. */
const userByOAuth1 = (app: App, ex: Exchange): FakeGarminUser | undefined =>
  verifyOAuth1(app, ex, (token) => {
    const user = findUser(app.state, (candidate) => candidate.registered && candidate.oauth1?.token === token)
    return user?.oauth1 && { secret: user.oauth1.secret, user }
  })?.credential?.user

/** User-scoped endpoints accept a Bearer token (OAuth2) or an OAuth1 signature. */
const authenticateUser = (app: App, ex: Exchange): FakeGarminUser | undefined => {
  const bearer = bearerToken(ex)
  return bearer !== undefined ? userByAccessToken(app.state, bearer) : userByOAuth1(app, ex)
}

/**
 * PING pulls and activity files. With a `token` in the URL (OAuth2 era) the token names the
 * user, and a Bearer header, if sent, must belong to that same user. Without one (OAuth1 era)
 * the request must be signed with the user's OAuth1 token.
 */
const authorizePull = (app: App, ex: Exchange, tokenOwner: (token: string) => string | undefined) => {
  const token = ex.url.searchParams.get("token")
  if (token === null) return userByOAuth1(app, ex)
  const ownerId = tokenOwner(token)
  const user = ownerId === undefined ? undefined : app.state.users.get(ownerId)
  if (!user?.registered) return undefined
  const bearer = bearerToken(ex)
  return bearer === undefined || userByAccessToken(app.state, bearer) === user ? user : undefined
}

// ---------------------------------------------------------------------------
// OAuth2 tokens
// ---------------------------------------------------------------------------

/** Issues a fresh OAuth2 pair, retiring the previous refresh token (rotation). */
const issueOAuth2 = (user: FakeGarminUser) => {
  if (user.oauth2 !== undefined) user.retiredRefreshTokens.push(user.oauth2.refreshToken)
  const now = Date.now()
  const grant: OAuth2Grant = {
    accessToken: randomToken(24),
    accessTokenExpiresAt: now + ACCESS_TOKEN_TTL_S * 1000,
    refreshToken: randomToken(24),
    refreshTokenExpiresAt: now + REFRESH_TOKEN_TTL_S * 1000
  }
  user.oauth2 = grant
  return json(200, {
    access_token: grant.accessToken,
    token_type: "bearer",
    expires_in: ACCESS_TOKEN_TTL_S,
    refresh_token: grant.refreshToken,
    refresh_token_expires_in: REFRESH_TOKEN_TTL_S,
    scope: user.permissions.join(" "),
    jti: randomUUID()
  })
}

/** Drops the user's OAuth2 grant: every token of it stops working. */
const revokeOAuth2 = (app: App, user: FakeGarminUser): void => {
  if (user.oauth2 !== undefined) user.retiredRefreshTokens.push(user.oauth2.refreshToken)
  user.oauth2 = undefined
  app.state.counters.revocations++
}

const pkceS256 = (verifier: string): string => createHash("sha256").update(verifier).digest("base64url")

const authorizationCodeGrant = (app: App, fields: URLSearchParams): Reply => {
  const code = fields.get("code") ?? ""
  const pending = app.state.authorizationCodes.get(code)
  app.state.authorizationCodes.delete(code) // single use, even when this attempt fails
  const verifier = fields.get("code_verifier")
  if (pending === undefined || verifier === null) return oauthError(400, "invalid_grant")
  if (fields.get("redirect_uri") !== pending.redirectUri) return oauthError(400, "invalid_grant")
  if (pkceS256(verifier) !== pending.codeChallenge) return oauthError(400, "invalid_grant")
  const user = app.state.users.get(pending.userId)
  return user === undefined ? oauthError(400, "invalid_grant") : issueOAuth2(user)
}

const refreshTokenGrant = (app: App, fields: URLSearchParams): Reply => {
  app.state.counters.refreshCount++
  const token = fields.get("refresh_token") ?? ""
  const current = findUser(app.state, (user) => user.oauth2?.refreshToken === token)
  if (current?.oauth2 !== undefined && current.registered && current.oauth2.refreshTokenExpiresAt > Date.now()) {
    return issueOAuth2(current)
  }
  // A rotated-out token means two parties hold the grant: Garmin revokes the connection.
  const stale = findUser(app.state, (user) => user.retiredRefreshTokens.includes(token))
  if (stale !== undefined) revokeOAuth2(app, stale)
  return oauthError(400, "invalid_grant")
}

// ---------------------------------------------------------------------------
// Backfill: keys, record times, background delivery
// ---------------------------------------------------------------------------

/** The three REST/backfill names whose records arrive under another envelope key. */
const ENVELOPE_KEYS: Readonly<Record<string, string>> = {
  pulseOx: "pulseox",
  respiration: "allDayRespiration",
  moveiq: "moveIQActivities"
}

/** The envelope key (and `user.data` key) of a REST or backfill type; most are the same name. */
export const envelopeKeyOf = (restType: string): string => ENVELOPE_KEYS[restType] ?? restType

/**
 * When a record happened, in epoch seconds, as a backfill window sees it: `startTimeInSeconds`,
 * else `measurementTimeInSeconds`, else `summary.startTimeInSeconds` (activityDetails), else
 * `calendarDate` at UTC midnight. Undefined when it has none (e.g. mct): never backfilled.
 */
export const recordTimeOf = (record: GarminRecord): number | undefined => {
  const summary = record["summary"]
  const nested = typeof summary === "object" && summary !== null ? (summary as GarminRecord)["startTimeInSeconds"] : undefined
  for (const candidate of [record["startTimeInSeconds"], record["measurementTimeInSeconds"], nested]) {
    if (typeof candidate === "number" && Number.isFinite(candidate)) return candidate
  }
  const date = record["calendarDate"]
  if (typeof date !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(date)) return undefined
  const midnight = Date.parse(`${date}T00:00:00Z`)
  return Number.isNaN(midnight) ? undefined : midnight / 1000
}

/**
 * Upload times the fake gave records that carry none: set when a notification announces them
 * (`pingUrl`, a backfill delivered by PING), as Garmin announces uploads. Kept beside the
 * record, not in it, so what is served is what was stored.
 */
const announcedUploads = new WeakMap<GarminRecord, number>()

/** When `record` was uploaded, epoch s: announced, else its own field; undefined if never. */
export const uploadTimeOf = (record: GarminRecord): number | undefined => {
  const announced = announcedUploads.get(record)
  if (announced !== undefined) return announced
  const own = record["uploadTimeInSeconds"]
  return typeof own === "number" ? own : undefined
}

/** Records of `key` with no upload time yet count as uploaded at `at` (they are being announced). */
const announce = (users: Iterable<FakeGarminUser>, key: string, at: number) => {
  for (const user of users) {
    for (const record of user.data[key] ?? []) if (uploadTimeOf(record) === undefined) announcedUploads.set(record, at)
  }
}

const daysOf = (start: number, end: number): number => Math.ceil((end - start) / DAY_S)

/** Like `new Date().toISOString()` without the milliseconds: 2026-09-01T00:00:00Z. */
const isoSeconds = (epochSeconds: number): string => new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z")

/**
 * Milliseconds until the rate limit leaves room for `days` more, or undefined when it does
 * now. Only accepted requests count; when even an empty window could not hold `days`, the
 * answer is a whole window (the caller should ask for less).
 */
const rateLimitWaitMs = (state: FakeGarminState, days: number, now: number): number | undefined => {
  const { daysPerMinute: limit, rateWindowMs } = state.backfill
  if (limit === undefined) return undefined
  const recent = state.backfillRequests.flatMap((entry) =>
    entry.status === 202 && entry.start !== undefined && entry.end !== undefined && entry.at > now - rateWindowMs
      ? [{ at: entry.at, days: daysOf(entry.start, entry.end) }]
      : []
  )
  let used = recent.reduce((sum, entry) => sum + entry.days, 0)
  if (used + days <= limit) return undefined
  for (const entry of recent) {
    // Oldest first (the log is in order): when this one leaves the window, is there room?
    used -= entry.days
    if (used + days <= limit) return entry.at + rateWindowMs - now
  }
  return rateWindowMs
}

/** Timers and in-flight POSTs of background work, kept so `close()` can cancel them all. */
interface Background {
  /** Resolves after `ms`; once cancelled it never resolves, so the waiting task just stops. */
  sleep(ms: number): Promise<void>
  /** Aborted by `cancel()`; in-flight POSTs listen to it. */
  readonly signal: AbortSignal
  cancel(): void
}

const makeBackground = (): Background => {
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const controller = new AbortController()
  return {
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        if (controller.signal.aborted) return
        const timer = setTimeout(() => {
          timers.delete(timer)
          resolve()
        }, ms)
        timers.add(timer)
      }),
    signal: controller.signal,
    cancel: () => {
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      controller.abort()
    }
  }
}

/** One POST as Garmin sends a PUSH notification; the status, or 0 if it could not connect. */
const postOnce = async (app: App, target: string, body: string): Promise<number> => {
  try {
    const response = await fetch(target, {
      method: "POST",
      headers: {
        "garmin-client-id": app.client.consumerKey,
        "content-type": "application/json",
        "user-agent": "Garmin Health API"
      },
      body,
      signal: AbortSignal.any([app.background.signal, AbortSignal.timeout(DELIVERY_TIMEOUT_MS)])
    })
    await response.arrayBuffer() // drain it, so the connection can be reused
    return response.status
  } catch {
    return 0
  }
}

/** POSTs until a 2xx answer or the retries run out; the last status. */
const postWithRetries = async (app: App, target: string, body: string): Promise<number> => {
  for (let attempt = 0; ; attempt++) {
    const status = await postOnce(app, target, body)
    if ((status >= 200 && status < 300) || attempt >= DELIVERY_RETRIES || app.background.signal.aborted) return status
    await app.background.sleep(DELIVERY_RETRY_GAP_MS)
  }
}

/**
 * After an accepted backfill: waits, then PUSHes the user's records of the window (by their
 * time, start inclusive, end exclusive) in chunks, each recorded in `state.deliveries`. The
 * records and settings are read when delivery starts, so tests may seed data after the 202.
 */
const deliverBackfill = async (app: App, request: BackfillRequest): Promise<void> => {
  await deliverRecords(app, request)
  if (app.background.signal.aborted) return
  app.state.counters.backfillsDelivered++
  app.state.backfillsEnded.push(request)
}

const deliverRecords = async (app: App, request: BackfillRequest): Promise<void> => {
  const { state, background } = app
  await background.sleep(state.backfill.deliveryDelayMs)
  if (state.backfill.paused) {
    state.counters.deliveriesPaused++
    while (state.backfill.paused && !background.signal.aborted) await background.sleep(20)
    state.counters.deliveriesPaused--
  }
  const target = state.backfill.deliverAs === "ping" ? state.backfill.pingTo ?? state.backfill.deliverTo : state.backfill.deliverTo
  const user = state.users.get(request.userId)
  if (target === undefined || user === undefined) return
  const key = envelopeKeyOf(request.type)
  const records = (user.data[key] ?? []).filter((record) => {
    const time = recordTimeOf(record)
    return time !== undefined && time >= request.start && time < request.end
  })
  const chunkSize = Math.max(1, Math.floor(state.backfill.chunkSize))
  // Backfilled records are uploaded anew, as if just synced: by PING, each chunk is one upload
  // second of its own, announced by one pull URL for that second.
  let uploadedAt = Math.floor(Date.now() / 1000)
  for (let offset = 0; offset < records.length; offset += chunkSize) {
    if (offset > 0) await background.sleep(state.backfill.chunkGapMs)
    const chunk = records.slice(offset, offset + chunkSize)
    const body = bodyOf(app, user.userId, key, request.type, chunk, uploadedAt++)
    const status = await postWithRetries(app, target, JSON.stringify(body))
    if (background.signal.aborted) return
    state.deliveries.push({ userId: user.userId, type: request.type, key, count: chunk.length, status, at: Date.now(), start: request.start, end: request.end })
  }
}

/** One backfill POST's body: the chunk inline or as a PING item, with whatever Garmin batches alongside. */
const bodyOf = (app: App, userId: string, key: string, restType: string, chunk: Array<GarminRecord>, uploadedAt: number) => {
  const { state } = app
  let items: Array<unknown> = chunk
  if (state.backfill.deliverAs === "ping") {
    for (const record of chunk) announcedUploads.set(record, uploadedAt)
    items = [{ userId, callbackURL: mintPingUrl(app, restType, { userId }, uploadedAt, uploadedAt) }]
  }
  const body: Record<string, Array<unknown>> = { [key]: items }
  for (const [other, extra] of Object.entries(state.backfill.alongside?.(userId) ?? {})) {
    body[other] = other === key ? [...extra, ...items] : extra
  }
  return body
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/** GET /wellness-api/rest/{type}: the PING callback pull. */
const pullSummaries = (app: App, ex: Exchange, type: string): Reply => {
  const user = authorizePull(app, ex, (token) => app.state.pullTokens.get(token))
  if (user === undefined) return garminError(401, "InvalidPullTokenException")
  const start = seconds(ex.url.searchParams.get("uploadStartTimeInSeconds"))
  const end = seconds(ex.url.searchParams.get("uploadEndTimeInSeconds"))
  if (start === undefined || end === undefined || end < start) {
    return garminError(400, "uploadStartTimeInSeconds and uploadEndTimeInSeconds are required")
  }
  if (end - start > MAX_PULL_WINDOW_S) return garminError(400, `time range exceeds ${MAX_PULL_WINDOW_S} seconds`)
  // Garmin serves what was uploaded in the window: a pull of another window misses the data.
  const inWindow = (record: GarminRecord) => {
    const uploaded = uploadTimeOf(record)
    return uploaded !== undefined && uploaded >= start && uploaded <= end
  }
  return json(200, (user.data[envelopeKeyOf(type)] ?? []).filter(inWindow))
}

/** GET /wellness-api/rest/activityFile?id=&token=: one download, then 410. */
const downloadActivityFile = (app: App, ex: Exchange): Reply => {
  const file = app.state.activityFiles.get(ex.url.searchParams.get("id") ?? "")
  if (file === undefined) return garminError(404, "Activity file not found")
  const user = authorizePull(app, ex, (token) => (safeEqual(token, file.token) ? file.userId : undefined))
  if (user === undefined) return garminError(401, "InvalidPullTokenException")
  if (file.downloaded) return garminError(410, "Activity file already downloaded")
  file.downloaded = true
  return { status: 200, headers: { "content-type": file.contentType }, body: file.bytes }
}

/** GET /oauth2Confirm: the user approves at once; redirects back with a code. */
const oauth2Confirm = (app: App, ex: Exchange): Reply => {
  const query = ex.url.searchParams
  const redirectUri = query.get("redirect_uri")
  const codeChallenge = query.get("code_challenge")
  if (query.get("client_id") !== app.client.consumerKey) return garminError(400, "unknown client_id")
  if (query.get("response_type") !== "code" || query.get("code_challenge_method") !== "S256") {
    return garminError(400, "response_type=code and code_challenge_method=S256 are required")
  }
  if (redirectUri === null || codeChallenge === null) return garminError(400, "redirect_uri and code_challenge are required")
  const user = approvingUser(app.state, app.state.nextOAuth2User)
  const code = randomToken()
  app.state.authorizationCodes.set(code, { userId: user.userId, codeChallenge, redirectUri })
  const state = query.get("state")
  return redirect(redirectUri, state === null ? { code } : { code, state })
}

/** POST /di-oauth2-service/oauth/token */
const oauth2Token = (app: App, ex: Exchange): Reply => {
  const fields = formFields(ex)
  if (fields.get("client_id") !== app.client.consumerKey || fields.get("client_secret") !== app.client.consumerSecret) {
    return oauthError(401, "invalid_client")
  }
  switch (fields.get("grant_type")) {
    case "authorization_code":
      return authorizationCodeGrant(app, fields)
    case "refresh_token":
      return refreshTokenGrant(app, fields)
    default:
      return oauthError(400, "unsupported_grant_type")
  }
}

/** POST /oauth-service/oauth/request_token: signed with the consumer only. */
const oauth1RequestToken = (app: App, ex: Exchange): Reply => {
  const verified = verifyOAuth1(app, ex, () => undefined)
  if (verified === undefined) return garminError(401, "Invalid OAuth signature")
  const callback = verified.params.get("oauth_callback")
  if (callback === undefined) return garminError(400, "oauth_callback is required")
  const token = randomToken()
  const secret = randomToken()
  app.state.requestTokens.set(token, { secret, callback, verifier: undefined, userId: undefined })
  return form({ oauth_token: token, oauth_token_secret: secret, oauth_callback_confirmed: "true" })
}

/** GET /oauthConfirm: the user approves at once; redirects back with a verifier. */
const oauth1Confirm = (app: App, ex: Exchange): Reply => {
  const token = ex.url.searchParams.get("oauth_token") ?? ""
  const pending = app.state.requestTokens.get(token)
  if (pending === undefined) return garminError(400, "unknown oauth_token")
  const verifier = randomToken()
  pending.userId = approvingUser(app.state, app.state.nextOAuth1User).userId
  pending.verifier = verifier
  const callback = ex.url.searchParams.get("oauth_callback") ?? pending.callback
  return redirect(callback, { oauth_token: token, oauth_verifier: verifier })
}

/** POST /oauth-service/oauth/access_token: signed with the approved request token. */
const oauth1AccessToken = (app: App, ex: Exchange): Reply => {
  const verified = verifyOAuth1(app, ex, (token) => app.state.requestTokens.get(token))
  const pending = verified?.credential
  if (verified?.token === undefined || pending?.verifier === undefined || pending.userId === undefined) {
    return garminError(401, "Invalid OAuth signature or request token")
  }
  if (verified.params.get("oauth_verifier") !== pending.verifier) return garminError(401, "Invalid oauth_verifier")
  app.state.requestTokens.delete(verified.token)
  const user = approvingUser(app.state, pending.userId)
  user.oauth1 = { token: randomToken(), secret: randomToken() }
  return form({ oauth_token: user.oauth1.token, oauth_token_secret: user.oauth1.secret })
}

/** POST /partner-gateway/rest/user/token-exchange: OAuth1 token → OAuth2 pair. */
const tokenExchange = (app: App, ex: Exchange): Reply => {
  const user = userByOAuth1(app, ex)
  if (user === undefined) return garminError(401, "Invalid OAuth signature")
  app.state.counters.tokenExchangeCount++
  if (user.tokenExchangeFailure !== undefined) return garminError(user.tokenExchangeFailure, "token exchange failed")
  return issueOAuth2(user) // the OAuth1 token stays valid (Garmin: 30 more days)
}

/** Wraps a handler that needs an authenticated user. */
const withUser =
  (handle: (app: App, ex: Exchange, user: FakeGarminUser, match: RegExpExecArray) => Reply) =>
  (app: App, ex: Exchange, match: RegExpExecArray): Reply => {
    const user = authenticateUser(app, ex)
    return user === undefined ? garminError(401, "Unauthorized") : handle(app, ex, user, match)
  }

const userId = withUser((_app, _ex, user) => json(200, { userId: user.userId }))

const userPermissions = withUser((app, _ex, user) =>
  json(200, app.state.permissionsShape === "array" ? user.permissions : { permissions: user.permissions })
)

const deleteRegistration = withUser((app, _ex, user) => {
  user.registered = false
  app.state.counters.deregistrations++
  return empty(204)
})

/** The answer to an authenticated backfill request; on 202 it records and schedules delivery. */
const answerBackfill = (
  app: App,
  user: FakeGarminUser,
  type: string,
  start: number | undefined,
  end: number | undefined,
  now: number
): Reply => {
  const { state } = app
  if (!user.permissions.includes("HISTORICAL_DATA_EXPORT")) {
    return garminError(403, "User has not granted the HISTORICAL_DATA_EXPORT permission")
  }
  if (start === undefined || end === undefined || end <= start) {
    return garminError(400, "summaryStartTimeInSeconds and summaryEndTimeInSeconds are required")
  }
  if (end - start > MAX_BACKFILL_RANGE_S) return garminError(400, "time range exceeds 90 days")
  if (ACTIVITY_BACKFILL_TYPES.has(type) && end - start > MAX_ACTIVITY_BACKFILL_RANGE_S) {
    return garminError(400, "time range exceeds 30 days")
  }
  const minStart = user.backfillMinStartTimeInSeconds ?? state.backfill.minStartTimeInSeconds
  if (minStart !== undefined && start < minStart) {
    return garminError(400, state.backfill.minStartMessage(minStart))
  }
  const waitMs = rateLimitWaitMs(state, daysOf(start, end), now)
  if (waitMs !== undefined) {
    return {
      ...garminError(429, "Rate limit exceeded"),
      headers: { "content-type": "application/json;charset=UTF-8", "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) }
    }
  }
  // Any overlap with a range already requested for the user is a duplicate, not only the same range.
  const duplicate = state.backfills.some(
    (request) => request.userId === user.userId && request.type === type && request.start < end && start < request.end
  )
  if (duplicate) return garminError(409, "Duplicate backfill request")
  const request: BackfillRequest = { userId: user.userId, type, start, end }
  state.backfills.push(request)
  void deliverBackfill(app, request) // in the background: the 202 does not wait for it
  return empty(202)
}

/**
 * GET /wellness-api/rest/backfill/{type}. Checked in order: 401 credentials, 403 no
 * HISTORICAL_DATA_EXPORT, 400 bad range (90 days; 30 for activity types), 400 before the min
 * start, 429 over the days budget, 409 overlapping a range already requested; else 202 and a
 * later delivery.
 * Every request is logged in `state.backfillRequests`, whatever it answered.
 */
const backfill = (app: App, ex: Exchange, match: RegExpExecArray): Reply => {
  const type = match[1] ?? ""
  const start = seconds(ex.url.searchParams.get("summaryStartTimeInSeconds"))
  const end = seconds(ex.url.searchParams.get("summaryEndTimeInSeconds"))
  const now = Date.now()
  const user = authenticateUser(app, ex)
  const reply = user === undefined ? garminError(401, "Unauthorized") : answerBackfill(app, user, type, start, end, now)
  app.state.backfillRequests.push({ userId: user?.userId, type, start, end, status: reply.status, at: now })
  return reply
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

interface Route {
  readonly method: string
  readonly path: RegExp
  readonly handle: (app: App, ex: Exchange, match: RegExpExecArray) => Reply
}

// Order matters: the generic PING pull comes after the fixed wellness-api paths.
const routes: ReadonlyArray<Route> = [
  { method: "GET", path: /^\/oauth2Confirm$/, handle: oauth2Confirm },
  { method: "POST", path: /^\/di-oauth2-service\/oauth\/token$/, handle: oauth2Token },
  { method: "POST", path: /^\/oauth-service\/oauth\/request_token$/, handle: oauth1RequestToken },
  { method: "GET", path: /^\/oauthConfirm$/, handle: oauth1Confirm },
  { method: "POST", path: /^\/oauth-service\/oauth\/access_token$/, handle: oauth1AccessToken },
  { method: "POST", path: /^\/partner-gateway\/rest\/user\/token-exchange$/, handle: tokenExchange },
  { method: "GET", path: /^\/wellness-api\/rest\/user\/id$/, handle: userId },
  { method: "GET", path: /^\/wellness-api\/rest\/user\/permissions$/, handle: userPermissions },
  { method: "DELETE", path: /^\/wellness-api\/rest\/user\/registration$/, handle: deleteRegistration },
  { method: "GET", path: /^\/wellness-api\/rest\/backfill\/(\w+)$/, handle: backfill },
  { method: "GET", path: /^\/wellness-api\/rest\/activityFile$/, handle: downloadActivityFile },
  { method: "GET", path: /^\/wellness-api\/rest\/(\w+)$/, handle: (app, ex, match) => pullSummaries(app, ex, match[1] ?? "") }
]

const route = (app: App, ex: Exchange): Reply => {
  for (const candidate of routes) {
    const match = candidate.method === ex.method ? candidate.path.exec(ex.url.pathname) : null
    if (match !== null) return candidate.handle(app, ex, match)
  }
  return garminError(404, "Not Found")
}

// ---------------------------------------------------------------------------
// Failure injection
// ---------------------------------------------------------------------------

interface ActiveRule {
  readonly rule: InjectRule
  remaining: number
}

/** Takes one use of the first rule matching the request, if any. */
const takeRule = (rules: Array<ActiveRule>, ex: Exchange): InjectRule | undefined => {
  const index = rules.findIndex(({ rule }) => {
    const methodMatches = rule.method === undefined || rule.method.toUpperCase() === ex.method
    const pathMatches = typeof rule.path === "string" ? rule.path === ex.url.pathname : rule.path.test(ex.url.pathname)
    return methodMatches && pathMatches
  })
  const active = rules[index]
  if (active === undefined) return undefined
  if (--active.remaining <= 0) rules.splice(index, 1)
  return active.rule
}

/** A rule with only delayMs or hold slows the request down and lets it through; any other fails it. */
const injectedReply = (rule: InjectRule): Reply | undefined => {
  if ((rule.delayMs !== undefined || rule.hold !== undefined) && rule.status === undefined && rule.body === undefined) return undefined
  const contentType = rule.body === undefined ? {} : { "content-type": "application/json;charset=UTF-8" }
  return { status: rule.status ?? 500, headers: { ...contentType, ...rule.headers }, body: rule.body ?? "" }
}

// ---------------------------------------------------------------------------
// History seeding (for backfill tests)
// ---------------------------------------------------------------------------

/** The repository's copy of the Garmin fixtures (testing/fixtures). */
const FIXTURES_DIR = new URL("./fixtures/", import.meta.url)
const DEFAULT_HISTORY_KEYS = ["dailies", "sleeps", "epochs", "activities", "bodyComps", "hrv", "stressDetails"]
/** Users do not work out every day: these keys get a record every second seeded day. */
const ACTIVITY_KEYS = new Set(["activities", "activityDetails", "manuallyUpdatedActivities", "moveIQActivities"])
/** Fields holding epoch seconds, moved with the record (durations and offsets are not). */
const TIME_FIELDS = new Set([
  "startTimeInSeconds",
  "napStartTimeInSeconds",
  "endTimeInSeconds",
  "measurementTimeInSeconds",
  "eventStartTimeInSeconds",
  "lastUpdatedTimeInSeconds"
])

/** The first record of a fixture file, read at call time so fixture edits show up at once. */
const fixtureRecord = (key: string): GarminRecord => {
  const file = new URL(`${key}.json`, FIXTURES_DIR)
  const body = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>
  const first = (body[key] as Array<GarminRecord> | undefined)?.[0]
  if (first === undefined) throw new Error(`fake-garmin: ${file.pathname} has no "${key}" record`)
  return first
}

/** A deep copy with every time field moved by `deltaS` seconds (a whole number of days). */
const shiftTimes = (value: unknown, deltaS: number): unknown => {
  if (Array.isArray(value)) return value.map((item) => shiftTimes(item, deltaS))
  if (typeof value !== "object" || value === null) return value
  return Object.fromEntries(
    Object.entries(value).map(([field, inner]) => {
      if (TIME_FIELDS.has(field) && typeof inner === "number") return [field, inner + deltaS]
      if (field === "calendarDate" && typeof inner === "string") {
        return [field, new Date(Date.parse(`${inner}T00:00:00Z`) + deltaS * 1000).toISOString().slice(0, 10)]
      }
      return [field, shiftTimes(inner, deltaS)]
    })
  )
}

/** The fixture record moved to `day` (UTC midnight, epoch s), keeping its time of day. */
const recordOnDay = (template: GarminRecord, key: string, userId: string, day: number): GarminRecord => {
  const time = recordTimeOf(template)
  if (time === undefined) throw new Error(`fake-garmin: ${key} records carry no time; they cannot be seeded as history`)
  const record = shiftTimes(template, day - Math.floor(time / DAY_S) * DAY_S) as GarminRecord
  delete record["userAccessToken"] // OAuth2-era notifications carry userId only
  // One sleep session a seeded day: the template night's nap would be a session of its own.
  delete record["naps"]
  record["userId"] = userId
  record["summaryId"] = `${key}-${new Date(day * 1000).toISOString().slice(0, 10)}-${randomToken(4)}`
  if (key === "activityDetails") {
    // Detail summaryIds are "<activityId>-detail".
    const activityId = randomBytes(4).readUInt32BE()
    record["activityId"] = activityId
    record["summaryId"] = `${activityId}-detail`
  }
  return record
}

const seedHistoryOf = (state: FakeGarminState, userId: string, options: SeedHistoryOptions) => {
  const user = state.users.get(userId)
  if (user === undefined) throw new Error(`fake-garmin: seedHistory for unknown user ${userId}; addUser first`)
  const step = Math.max(1, Math.floor(options.everyDays ?? 1)) * DAY_S
  const added: Record<string, Array<GarminRecord>> = {}
  for (const key of options.types ?? DEFAULT_HISTORY_KEYS) {
    const template = fixtureRecord(key)
    const records: Array<GarminRecord> = []
    for (let day = Math.floor(options.from / DAY_S) * DAY_S, index = 0; day < options.to; day += step, index++) {
      if (ACTIVITY_KEYS.has(key) && index % 2 === 1) continue
      const record = recordOnDay(template, key, userId, day)
      const time = recordTimeOf(record)
      if (time !== undefined && time >= options.from && time < options.to) records.push(record)
    }
    ;(user.data[key] ??= []).push(...records)
    added[key] = records
  }
  return added
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

export const startFakeGarmin = async (options: FakeGarminOptions): Promise<FakeGarmin> => {
  const state = emptyState()
  const app: App = { state, client: options, background: makeBackground(), url: "" }
  const requests: Array<RecordedRequest> = []
  const rules: Array<ActiveRule> = []
  let url = ""

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const ex = toExchange(req, await readBody(req), url)
    requests.push(toRecorded(ex))
    const rule = takeRule(rules, ex)
    if (rule?.delayMs !== undefined) await sleep(rule.delayMs)
    if (rule?.hold !== undefined) await rule.hold.catch(() => undefined)
    if (rule?.handled) route(app, ex)
    send(res, (rule && injectedReply(rule)) ?? route(app, ex))
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // Surface bugs in the fake as a 500 the test can see, rather than a hung request.
      if (!res.headersSent) send(res, garminError(500, `fake-garmin: ${String(error)}`))
      else res.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("fake-garmin: no TCP address")
  url = `http://127.0.0.1:${address.port}`
  app.url = url

  const addUser = (userId: string, init: Partial<Omit<FakeGarminUser, "userId">> = {}) => {
    const user = newUser(userId, init)
    state.users.set(userId, user)
    return user
  }


  const addActivityFile: FakeGarmin["addActivityFile"] = (owner, file) => {
    const id = file.id ?? String(randomBytes(4).readUInt32BE())
    const token = randomToken()
    const bytes = typeof file.bytes === "string" ? new TextEncoder().encode(file.bytes) : file.bytes
    const contentType = file.contentType ?? "application/octet-stream"
    state.activityFiles.set(id, { userId: owner, token, bytes, contentType, downloaded: false })
    return `${url}/wellness-api/rest/activityFile?id=${encodeURIComponent(id)}&token=${token}`
  }

  return {
    url,
    env: {
      GARMIN_CLIENT_ID: options.consumerKey,
      GARMIN_CLIENT_SECRET: options.consumerSecret,
      GARMIN_API_URL: url,
      GARMIN_CONNECT_URL: url,
      GARMIN_CONNECTAPI_URL: url,
      GARMIN_AUTH_URL: url
    },
    state,
    requests,
    inject: (rule) => void rules.push({ rule, remaining: rule.times ?? 1 }),
    pingUrl: (type, userKey, uploadStart, uploadEnd) => {
      // Announcing uploads: what the user(s) have of this type with no upload time yet was uploaded now, in the window.
      const owner = "userId" in userKey ? userKey.userId : "token" in userKey ? state.pullTokens.get(userKey.token) : undefined
      const users = owner !== undefined ? [state.users.get(owner)].filter((u) => u !== undefined) : state.users.values()
      announce(users, envelopeKeyOf(type), uploadEnd)
      return mintPingUrl(app, type, userKey, uploadStart, uploadEnd)
    },
    addUser,
    addActivityFile,
    seedHistory: (userId, seedOptions) => seedHistoryOf(state, userId, seedOptions),
    close: () =>
      new Promise<void>((resolve, reject) => {
        app.background.cancel() // pending deliveries would otherwise fire after the test
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections() // fetch keeps connections alive; don't wait for them
      })
  }
}
