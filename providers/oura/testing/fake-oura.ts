/**
 * A fake Oura API v2 on loopback, for tests.
 *
 * One server plays api.ouraring.com and cloud.ouraring.com: point both base URLs at `url`.
 * Paths and behaviour follow Oura's OpenAPI document (1.37) and the project's Oura reference:
 * the OAuth 2.0 authorization-code flow (consent, single-use 10-minute codes, refresh tokens
 * that work once, revoke), every /v2/usercollection route with its date window, pagination by
 * `next_token`, scopes, rate limits, 426, the sandbox, and webhook subscriptions with the
 * verification challenge, signed notifications, retries and 410-cancels. Everything lives in
 * `state`, which tests may read and change at any time; `inject()` adds failures, delays and
 * held requests in front of it; `seed()` loads a user's documents from ./fixtures (copies of
 * the recorded Oura examples).
 *
 * Where Oura's behaviour is known the fake behaves so, not as a client would like. Where it is
 * undocumented the fake picks one answer and makes it a switch in `state`:
 * - date windows: which document field each collection filters on and whether each end is
 *   inclusive (`state.windows`; defaults from the reference's observations: daily_activity on
 *   `timestamp` with an exclusive end, workout exclusive at the end, sleep exclusive at the
 *   start, the rest inclusive on `day`). A date-only bound is midnight of that day in the
 *   document's own offset; a date-time with an offset is compared as an instant. Bounds
 *   FastAPI would read as numbers (`start_date=1`) are unix seconds, so nonsense dates give
 *   200 with no data, as recorded; unparseable ones give 422.
 * - a window left out: documents are not limited on that side; time series (heartrate, ring
 *   battery) default to the last `state.timeSeriesDefaultSpanMs` (24 h).
 * - pages of `state.pageSize` documents (3) and `state.timeSeriesPageSize` rows (100); the
 *   next_token is opaque, works alone or with the original params, unknown → 400.
 * - refresh: the old access token stays valid until it expires
 *   (`state.oauth.refreshRevokesOldAccessToken`); a redirect_uri that differs from the
 *   authorize request's answers `invalid_redirect_uri` (`state.oauth.redirectMismatchError`).
 * - error bodies are `{"detail": ...}` as recorded; `state.errorShape = "problem"` answers the
 *   RFC 7807 bodies Oura's docs describe instead.
 * - webhooks: a failed verification answers `state.webhooks.verificationFailureStatus` (400)
 *   and creates nothing; a second subscription for the same (event_type, data_type) answers
 *   409 (`state.webhooks.duplicates = "allow"` permits it); unknown ids answer 403 as the
 *   spec says (`state.webhooks.unknownIdStatus = 404` as one client saw); PUT re-verifies the
 *   (new) callback; notification bodies are compact JSON, so the raw bytes and Oura's
 *   re-serialising sample both verify (`state.webhooks.bodyStyle = "python"` sends Python's
 *   `", "`/`": "` spacing, where only the raw bytes verify).
 * - rate limits are off until set (`state.rateLimit`); the 429's X-RateLimit-Tier is
 *   `access_token` or `application`; data and sandbox requests count, OAuth and webhook
 *   routes do not.
 * - `fields` keeps `id`, `day` and `timestamp` (the "always returned fields" are unnamed) plus
 *   the fields it lists; the sandbox ignores it.
 * - consent: `state.nextConsent` names the user who answers every consent screen until changed
 *   (undefined: a new user each time); the user's `approvedScopes` are what stays ticked.
 *   personal_info shows `id` to any token, the profile with `personal`, `email` with `email`.
 * - revoke answers 200 with no body, known token or not, and kills the whole grant.
 * - the sandbox accepts any bearer or none and serves every fixture.
 * - notifications go out at once (Oura: ~30 s after the sync), retried after
 *   `state.webhooks.retryDelayMs(n)` (default 20·n ms; Oura: about an hour in all).
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http"

// ---------------------------------------------------------------------------
// Collections and scopes
// ---------------------------------------------------------------------------

/** An Oura document or time-series row as served (free-form JSON). */
export type OuraDocument = Record<string, unknown>

/** Collections with ids, a date window and a single-document route. */
export const DOCUMENT_COLLECTIONS = [
  "daily_activity",
  "daily_readiness",
  "daily_sleep",
  "daily_spo2",
  "daily_stress",
  "daily_resilience",
  "daily_cardiovascular_age",
  "sleep",
  "sleep_time",
  "session",
  "workout",
  "enhanced_tag",
  "tag",
  "rest_mode_period",
  "vO2_max"
] as const
/** Time series: start_datetime/end_datetime, `latest`, no ids, no single-document route. */
export const TIME_SERIES_COLLECTIONS = ["heartrate", "ring_battery_level"] as const
export const COLLECTIONS = [...DOCUMENT_COLLECTIONS, ...TIME_SERIES_COLLECTIONS, "ring_configuration"] as const
export type OuraCollection = (typeof COLLECTIONS)[number]

/** Webhook data types (ExtApiV2DataType). */
export const DATA_TYPES = [
  "tag",
  "enhanced_tag",
  "workout",
  "session",
  "sleep",
  "daily_sleep",
  "daily_readiness",
  "daily_activity",
  "daily_spo2",
  "sleep_time",
  "rest_mode_period",
  "ring_configuration",
  "daily_stress",
  "daily_cardiovascular_age",
  "daily_resilience",
  "vo2_max",
  "meal"
] as const
export type OuraDataType = (typeof DATA_TYPES)[number]
export type OuraEventType = "create" | "update" | "delete"
const EVENT_TYPES: ReadonlyArray<string> = ["create", "update", "delete"]

/** The collection a webhook data_type names (vo2_max is vO2_max in paths); undefined for meal. */
export const collectionOf = (dataType: string): OuraCollection | undefined => {
  const name = dataType === "vo2_max" ? "vO2_max" : dataType
  return (COLLECTIONS as ReadonlyArray<string>).includes(name) ? (name as OuraCollection) : undefined
}
/** The webhook data_type of a collection. */
export const dataTypeOf = (collection: string): string => (collection === "vO2_max" ? "vo2_max" : collection)

/** Collection → scope the live API enforces (reference, two independent clients). */
export const DEFAULT_COLLECTION_SCOPES: Readonly<Record<OuraCollection, string>> = {
  daily_activity: "daily",
  daily_readiness: "daily",
  daily_sleep: "daily",
  daily_stress: "daily",
  sleep: "daily",
  sleep_time: "daily",
  rest_mode_period: "daily",
  heartrate: "heartrate",
  workout: "workout",
  session: "session",
  tag: "tag",
  enhanced_tag: "tag",
  daily_spo2: "spo2",
  vO2_max: "heart_health",
  daily_cardiovascular_age: "heart_health",
  daily_resilience: "stress",
  ring_configuration: "ring_configuration",
  ring_battery_level: "ring_configuration"
}
/** Scopes the consent screen knows; others are silently dropped (spo2Daily is the spec's name, the live API's is spo2). */
export const DEFAULT_KNOWN_SCOPES = [
  "email",
  "personal",
  "daily",
  "heartrate",
  "workout",
  "tag",
  "session",
  "spo2",
  "heart_health",
  "stress",
  "ring_configuration"
]

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

export interface FakeOuraUser {
  /** Oura's user id: personal_info.id and the notifications' user_id. */
  readonly userId: string
  /** Served by personal_info (its `id` is always `userId`). */
  personalInfo: OuraDocument
  /** Scopes the user leaves ticked on the consent screen; granted = requested ∩ these. Undefined: all requested. */
  approvedScopes: Array<string> | undefined
  /** When true, the consent screen answers error=access_denied. */
  deniesConsent: boolean
  /** False: the Oura membership lapsed, every data route answers 403. */
  membershipActive: boolean
  /** Collections that answer 426 (the user's app is too old to share them). */
  appTooOld: Set<string>
  /** The user's documents by collection path name (`vO2_max`, `heartrate`, ...). */
  documents: Record<string, Array<OuraDocument>>
}

export interface FakeOuraGrant {
  readonly id: string
  readonly userId: string
  readonly scopes: ReadonlyArray<string>
  revoked: boolean
}

export interface FakeOuraAccessToken {
  readonly grantId: string
  /** Milliseconds since epoch; set it in the past to expire the token. */
  expiresAt: number
  revoked: boolean
}

export interface FakeOuraRefreshToken {
  readonly grantId: string
  /** Refresh tokens work once. */
  used: boolean
}

export interface FakeOuraAuthorizationCode {
  readonly userId: string
  readonly scopes: ReadonlyArray<string>
  readonly redirectUri: string
  /** Milliseconds since epoch (10 minutes after issue). */
  expiresAt: number
  used: boolean
}

/** Which field a collection's window applies to and whether each end includes its bound. */
export interface WindowRule {
  /** `day`-like date fields (YYYY-MM-DD) or timestamp fields. */
  field: string
  start: "inclusive" | "exclusive"
  end: "inclusive" | "exclusive"
}

export interface FakeOuraSubscription {
  readonly id: string
  callback_url: string
  event_type: string
  data_type: string
  verification_token: string
  /** Milliseconds since epoch; after it the subscription receives nothing. */
  expiresAt: number
}

export interface OuraNotification {
  readonly event_type: string
  readonly data_type: string
  readonly object_id: string
  readonly event_time: string
  readonly user_id: string
}

/** One POST of a notification to a callback, whatever it answered. */
export interface DeliveryAttempt {
  readonly subscriptionId: string
  readonly callbackUrl: string
  readonly notification: OuraNotification
  /** 1 for the first try. */
  readonly attempt: number
  /** HTTP status; 0 when it could not connect or timed out. */
  readonly status: number
  readonly at: number
}

/** One verification GET made while creating or updating a subscription. */
export interface VerificationAttempt {
  readonly callbackUrl: string
  readonly challenge: string
  /** HTTP status; 0 when it could not connect or timed out. */
  readonly status: number
  readonly passed: boolean
}

export interface FakeOuraState {
  users: Map<string, FakeOuraUser>
  /** Who answers the next consent screen; undefined → a new user with a random id. */
  nextConsent: string | undefined
  grants: Map<string, FakeOuraGrant>
  accessTokens: Map<string, FakeOuraAccessToken>
  refreshTokens: Map<string, FakeOuraRefreshToken>
  authorizationCodes: Map<string, FakeOuraAuthorizationCode>
  oauth: {
    /** expires_in of issued access tokens, seconds (default 86,400). */
    expiresIn: number
    codeLifetimeMs: number
    /** Redirect URIs registered for the application; undefined: any. */
    redirectUris: Array<string> | undefined
    refreshRevokesOldAccessToken: boolean
    redirectMismatchError: "invalid_redirect_uri" | "invalid_grant"
    knownScopes: Array<string>
  }
  collectionScopes: Record<string, string>
  windows: Record<string, WindowRule>
  /** Documents per page (default 3) and time-series rows per page (default 100). */
  pageSize: number
  timeSeriesPageSize: number
  timeSeriesDefaultSpanMs: number
  /** Open page cursors (next_token → query). */
  pageTokens: Map<string, PageCursor>
  errorShape: "detail" | "problem"
  /** Undefined limits are off. Oura: 5,000 per 5 minutes, per access token and per application. */
  rateLimit: { perToken: number | undefined; perApp: number | undefined; windowMs: number }
  /** Data requests (user collections and sandbox) seen, whatever they answered. */
  counters: {
    requestsByToken: Map<string, number>
    requestsByApp: number
    rateLimited: number
    refreshes: number
  }
  sandbox: { documents: Record<string, Array<OuraDocument>> }
  subscriptions: Map<string, FakeOuraSubscription>
  webhooks: {
    lifetimeMs: number
    unknownIdStatus: 403 | 404
    verificationFailureStatus: number
    duplicates: "reject" | "allow"
    /** Retries after the first failed POST (Oura: 10). */
    retries: number
    /** Wait before retry n (1-based); Oura spreads them over about an hour. */
    retryDelayMs: (retry: number) => number
    /** A callback that has not answered in this long counts as failed (Oura: 10 s). */
    timeoutMs: number
    bodyStyle: "compact" | "python"
  }
  verifications: Array<VerificationAttempt>
  deliveries: Array<DeliveryAttempt>
}

export interface PageCursor {
  readonly userId: string | undefined
  readonly collection: string
  readonly query: Array<[string, string]>
  readonly offset: number
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
  /** Status to answer with (default 500). A rule with delayMs or hold but no status/body only slows. */
  readonly status?: number
  readonly body?: string
  readonly headers?: Record<string, string>
  readonly delayMs?: number
  /** How many matching requests the rule applies to (default 1). */
  readonly times?: number
  /** Holds the request open until this settles, then answers as the rule says (or normally). */
  readonly hold?: Promise<unknown>
  /** The fake handles the request (e.g. rotates the refresh token) but answers the rule's status. */
  readonly handled?: boolean
}

export interface TokenResponse {
  readonly access_token: string
  readonly token_type: "bearer"
  readonly expires_in: number
  readonly refresh_token: string
  readonly scope: string
}

export interface NotifyInput {
  readonly userId: string
  /** A webhook data_type (`vo2_max`) or a collection name (`vO2_max`). */
  readonly dataType: string
  readonly objectId: string
  readonly eventType: OuraEventType
  /** Default: now. */
  readonly eventTime?: string
}

/** How one notification ended for one subscription. */
export interface NotifyOutcome {
  readonly subscriptionId: string
  /** The last attempt's status (0: no answer); 410 cancelled the subscription. */
  readonly status: number
  readonly attempts: number
}

export interface FakeOura {
  /** e.g. http://127.0.0.1:PORT — both api.ouraring.com and cloud.ouraring.com. */
  readonly url: string
  readonly clientId: string
  readonly clientSecret: string
  readonly state: FakeOuraState
  readonly requests: Array<RecordedRequest>
  inject(rule: InjectRule): void
  /** Adds (or replaces) a user; personal_info gets the fixture's fields with this id. */
  addUser(userId: string, init?: Partial<Omit<FakeOuraUser, "userId">>): FakeOuraUser
  /** Issues a grant without the consent flow (scopes default: every known scope). */
  connect(userId: string, scopes?: ReadonlyArray<string>): TokenResponse
  /**
   * Adds the fixture documents to the user (creating the user if needed): by default every
   * collection with a fixture; `collections` picks some. Returns what it added.
   */
  seed(userId: string, collections?: ReadonlyArray<string>): Record<string, Array<OuraDocument>>
  /** POSTs a notification to every live subscription for (event_type, data_type). */
  notify(input: NotifyInput): Promise<Array<NotifyOutcome>>
  /** Adds the document (it must carry `id`) and notifies `create`. */
  create(userId: string, dataType: string, doc: OuraDocument): Promise<Array<NotifyOutcome>>
  /** Replaces the document with the same `id` (added if absent) and notifies `update`. */
  revise(userId: string, dataType: string, doc: OuraDocument): Promise<Array<NotifyOutcome>>
  /** Deletes the document and notifies `delete`. */
  remove(userId: string, dataType: string, id: string): Promise<Array<NotifyOutcome>>
  /** Stops the server and cancels pending deliveries. */
  close(): Promise<void>
}

export interface FakeOuraOptions {
  /** Default: a random id and secret. */
  readonly clientId?: string
  readonly clientSecret?: string
  /** Registered redirect URIs; default: any. */
  readonly redirectUris?: ReadonlyArray<string>
}

// ---------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------

const DAY_MS = 86_400_000
const inclusive = (field: string): WindowRule => ({ field, start: "inclusive", end: "inclusive" })

const defaultWindows = (): Record<string, WindowRule> => ({
  daily_activity: { field: "timestamp", start: "inclusive", end: "exclusive" },
  daily_readiness: inclusive("day"),
  daily_sleep: inclusive("day"),
  daily_spo2: inclusive("day"),
  daily_stress: inclusive("day"),
  daily_resilience: inclusive("day"),
  daily_cardiovascular_age: inclusive("day"),
  sleep: { field: "day", start: "exclusive", end: "inclusive" },
  sleep_time: inclusive("day"),
  session: inclusive("day"),
  workout: { field: "day", start: "inclusive", end: "exclusive" },
  enhanced_tag: inclusive("start_day"),
  tag: inclusive("day"),
  rest_mode_period: inclusive("start_day"),
  vO2_max: inclusive("day"),
  heartrate: inclusive("timestamp"),
  ring_battery_level: inclusive("timestamp")
})

const emptyState = (options: FakeOuraOptions): FakeOuraState => ({
  users: new Map(),
  nextConsent: undefined,
  grants: new Map(),
  accessTokens: new Map(),
  refreshTokens: new Map(),
  authorizationCodes: new Map(),
  oauth: {
    expiresIn: 86_400,
    codeLifetimeMs: 10 * 60_000,
    redirectUris: options.redirectUris === undefined ? undefined : [...options.redirectUris],
    refreshRevokesOldAccessToken: false,
    redirectMismatchError: "invalid_redirect_uri",
    knownScopes: [...DEFAULT_KNOWN_SCOPES]
  },
  collectionScopes: { ...DEFAULT_COLLECTION_SCOPES },
  windows: defaultWindows(),
  pageSize: 3,
  timeSeriesPageSize: 100,
  timeSeriesDefaultSpanMs: DAY_MS,
  pageTokens: new Map(),
  errorShape: "detail",
  rateLimit: { perToken: undefined, perApp: undefined, windowMs: 5 * 60_000 },
  counters: { requestsByToken: new Map(), requestsByApp: 0, rateLimited: 0, refreshes: 0 },
  sandbox: { documents: {} },
  subscriptions: new Map(),
  webhooks: {
    lifetimeMs: 90 * DAY_MS,
    unknownIdStatus: 403,
    verificationFailureStatus: 400,
    duplicates: "reject",
    retries: 10,
    retryDelayMs: (retry) => 20 * retry,
    timeoutMs: 10_000,
    bodyStyle: "compact"
  },
  verifications: [],
  deliveries: []
})

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const FIXTURES_DIR = new URL("./fixtures/", import.meta.url)

const readFixture = (name: string): unknown => JSON.parse(readFileSync(new URL(name, FIXTURES_DIR), "utf8"))

/** Collection → fixture file (vO2_max's is vo2_max.list.200.json). */
const FIXTURE_FILES: Readonly<Record<string, string>> = Object.fromEntries(
  [
    "daily_activity",
    "daily_cardiovascular_age",
    "daily_readiness",
    "daily_resilience",
    "daily_sleep",
    "daily_spo2",
    "daily_stress",
    "enhanced_tag",
    "heartrate",
    "rest_mode_period",
    "ring_configuration",
    "session",
    "sleep",
    "sleep_time",
    "workout",
    "vO2_max"
  ].map((collection) => [collection, `${dataTypeOf(collection)}.list.200.json`])
)

const fixtureDocuments = (collection: string): Array<OuraDocument> => {
  const file = FIXTURE_FILES[collection]
  if (file === undefined) throw new Error(`fake-oura: no fixture for ${collection}`)
  return (readFixture(file) as { data: Array<OuraDocument> }).data
}

const fixturePersonalInfo = (): OuraDocument => readFixture("personal_info.200.json") as OuraDocument

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

interface Exchange {
  readonly method: string
  readonly url: URL
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

interface Reply {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body?: string
}

interface App {
  readonly state: FakeOuraState
  readonly clientId: string
  readonly clientSecret: string
  readonly background: Background
}

const JSON_TYPE = { "content-type": "application/json" }
const json = (status: number, value: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { ...JSON_TYPE, ...headers },
  body: JSON.stringify(value)
})
const empty = (status: number): Reply => ({ status })

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  426: "Upgrade Required",
  429: "Too Many Requests"
}
/** Oura's error body: `{"detail": ...}` as recorded, or RFC 7807 as its docs describe. */
const ouraError = (state: FakeOuraState, status: number, detail: string, headers: Record<string, string> = {}): Reply =>
  state.errorShape === "problem"
    ? json(status, { status, title: TITLES[status] ?? "Error", detail }, { ...headers, "content-type": "application/problem+json" })
    : json(status, { detail }, headers)

interface FieldError {
  readonly loc: ReadonlyArray<string | number>
  readonly msg: string
  readonly type: string
  readonly input?: unknown
}
/** FastAPI's validation error. */
const validationError = (errors: ReadonlyArray<FieldError>): Reply => json(422, { detail: errors })

const oauthError = (status: number, error: string, description: string): Reply =>
  json(status, { error, error_description: description })

const redirect = (target: string, params: Record<string, string>): Reply => {
  const location = new URL(target)
  for (const [key, value] of Object.entries(params)) location.searchParams.set(key, value)
  return { status: 302, headers: { location: location.toString() } }
}

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

const send = (res: ServerResponse, reply: Reply): void => {
  res.writeHead(reply.status, reply.headers)
  res.end(reply.body === undefined ? undefined : Buffer.from(reply.body))
}

const header = (ex: Exchange, name: string): string | undefined => {
  const value = ex.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** Constant-time, as a real server compares secrets. */
const safeEqualText = (a: string, b: string): boolean => {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

const randomToken = (bytes = 24): string => randomBytes(bytes).toString("base64url")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
/** `2023-01-01T08:00:00+00:00`, the notification example's form. */
const isoOffset = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+00:00")
/** `2024-08-24T14:15:22Z`, the subscription examples' form. */
const isoZulu = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z")

// ---------------------------------------------------------------------------
// Background work (notification deliveries), cancelled by close()
// ---------------------------------------------------------------------------

interface Background {
  sleep(ms: number): Promise<void>
  readonly signal: AbortSignal
  cancel(): void
}

const makeBackground = (): Background => {
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const controller = new AbortController()
  return {
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        if (controller.signal.aborted) return resolve()
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

// ---------------------------------------------------------------------------
// Users and OAuth
// ---------------------------------------------------------------------------

const newUser = (userId: string, init: Partial<Omit<FakeOuraUser, "userId">> = {}): FakeOuraUser => ({
  approvedScopes: undefined,
  deniesConsent: false,
  membershipActive: true,
  appTooOld: new Set(),
  documents: {},
  ...init,
  personalInfo: { ...fixturePersonalInfo(), ...init.personalInfo, id: userId },
  userId
})

/** A fresh access + refresh pair for the grant. */
const issueTokens = (state: FakeOuraState, grant: FakeOuraGrant): TokenResponse => {
  const accessToken = randomToken()
  const refreshToken = randomToken()
  state.accessTokens.set(accessToken, { grantId: grant.id, expiresAt: Date.now() + state.oauth.expiresIn * 1000, revoked: false })
  state.refreshTokens.set(refreshToken, { grantId: grant.id, used: false })
  return {
    access_token: accessToken,
    token_type: "bearer",
    expires_in: state.oauth.expiresIn,
    refresh_token: refreshToken,
    scope: grant.scopes.join(" ")
  }
}

const newGrant = (state: FakeOuraState, userId: string, scopes: ReadonlyArray<string>): FakeOuraGrant => {
  const grant: FakeOuraGrant = { id: randomUUID(), userId, scopes: [...scopes], revoked: false }
  state.grants.set(grant.id, grant)
  return grant
}

/** Revokes the grant and every token issued under it. */
const revokeGrant = (state: FakeOuraState, grantId: string): void => {
  const grant = state.grants.get(grantId)
  if (grant !== undefined) grant.revoked = true
  for (const token of state.accessTokens.values()) if (token.grantId === grantId) token.revoked = true
  for (const token of state.refreshTokens.values()) if (token.grantId === grantId) token.used = true
}

/** GET /oauth/authorize: the chosen user answers the consent screen at once. */
const authorize = (app: App, ex: Exchange): Reply => {
  const { state } = app
  const params = ex.url.searchParams
  const redirectUri = params.get("redirect_uri")
  if (params.get("client_id") !== app.clientId) return oauthError(400, "invalid_client", "Unknown client_id")
  if (redirectUri === null || !URL.canParse(redirectUri)) return oauthError(400, "invalid_request", "redirect_uri is required")
  if (state.oauth.redirectUris !== undefined && !state.oauth.redirectUris.includes(redirectUri)) {
    return oauthError(400, "invalid_redirect_uri", "redirect_uri is not registered for this application")
  }
  const back = (values: Record<string, string>) => {
    const clientState = params.get("state")
    return redirect(redirectUri, clientState === null ? values : { ...values, state: clientState })
  }
  if (params.get("response_type") !== "code") {
    return back({ error: "unsupported_response_type", error_description: "response_type must be code" })
  }
  const userId = state.nextConsent ?? randomUUID()
  const user = state.users.get(userId) ?? newUser(userId)
  state.users.set(userId, user)
  if (user.deniesConsent) return back({ error: "access_denied", error_description: "The user denied access" })
  // No scope: the user is asked for all. Unknown scopes never reach the consent screen.
  const requested = (params.get("scope") ?? "").split(/[\s+]+/).filter((scope) => scope !== "")
  const offered = (requested.length === 0 ? state.oauth.knownScopes : requested).filter((s) => state.oauth.knownScopes.includes(s))
  const granted = offered.filter((scope) => user.approvedScopes === undefined || user.approvedScopes.includes(scope))
  const code = randomToken()
  state.authorizationCodes.set(code, {
    userId,
    scopes: granted,
    redirectUri,
    expiresAt: Date.now() + state.oauth.codeLifetimeMs,
    used: false
  })
  return back({ code })
}

/** POST /oauth/token: authorization_code and refresh_token grants, credentials in the body. */
const token = (app: App, ex: Exchange): Reply => {
  const { state } = app
  const form = (header(ex, "content-type") ?? "").includes("application/x-www-form-urlencoded")
    ? new URLSearchParams(ex.body)
    : new URLSearchParams()
  if (!safeEqualText(form.get("client_id") ?? "", app.clientId) || !safeEqualText(form.get("client_secret") ?? "", app.clientSecret)) {
    return oauthError(401, "invalid_client", "Invalid client credentials")
  }
  switch (form.get("grant_type")) {
    case "authorization_code": {
      const code = state.authorizationCodes.get(form.get("code") ?? "")
      if (code === undefined || code.used || code.expiresAt <= Date.now()) {
        return oauthError(400, "invalid_grant", "Invalid, expired or already used authorization code")
      }
      if (form.get("redirect_uri") !== code.redirectUri) {
        return oauthError(400, state.oauth.redirectMismatchError, "redirect_uri does not match the authorization request")
      }
      code.used = true
      return json(200, issueTokens(state, newGrant(state, code.userId, code.scopes)))
    }
    case "refresh_token": {
      state.counters.refreshes++
      const refresh = state.refreshTokens.get(form.get("refresh_token") ?? "")
      const grant = refresh && state.grants.get(refresh.grantId)
      if (refresh === undefined || grant === undefined || refresh.used || grant.revoked) {
        return oauthError(400, "invalid_grant", "Token Already Used Or Revoked")
      }
      refresh.used = true
      if (state.oauth.refreshRevokesOldAccessToken) {
        for (const access of state.accessTokens.values()) if (access.grantId === grant.id) access.revoked = true
      }
      return json(200, issueTokens(state, grant))
    }
    default:
      return oauthError(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
  }
}

/** POST /oauth/revoke?access_token=..: revokes the token's grant. Unknown tokens answer 200 too (RFC 7009). */
const revoke = (app: App, ex: Exchange): Reply => {
  const access = app.state.accessTokens.get(ex.url.searchParams.get("access_token") ?? "")
  if (access !== undefined) revokeGrant(app.state, access.grantId)
  return empty(200)
}

// ---------------------------------------------------------------------------
// Data routes
// ---------------------------------------------------------------------------

const bearerOf = (ex: Exchange): string | undefined => /^Bearer\s+(\S+)$/i.exec(header(ex, "authorization") ?? "")?.[1]

/** The grant behind a live access token. */
const grantOf = (state: FakeOuraState, bearer: string | undefined): FakeOuraGrant | undefined => {
  const access = bearer === undefined ? undefined : state.accessTokens.get(bearer)
  if (access === undefined || access.revoked || access.expiresAt <= Date.now()) return undefined
  const grant = state.grants.get(access.grantId)
  return grant === undefined || grant.revoked ? undefined : grant
}

/** Sliding-window rate limiting, per access token and per application. */
interface RateWindow {
  readonly byToken: Map<string, Array<number>>
  readonly byApp: Array<number>
}

const prune = (times: Array<number>, since: number): void => {
  while (times.length > 0 && (times[0] ?? 0) <= since) times.shift()
}

const rateLimited = (app: App, window: RateWindow, bearer: string): Reply | undefined => {
  const { state } = app
  const now = Date.now()
  const { perToken, perApp, windowMs } = state.rateLimit
  state.counters.requestsByToken.set(bearer, (state.counters.requestsByToken.get(bearer) ?? 0) + 1)
  state.counters.requestsByApp++
  const tokenTimes = window.byToken.get(bearer) ?? []
  window.byToken.set(bearer, tokenTimes)
  prune(tokenTimes, now - windowMs)
  prune(window.byApp, now - windowMs)
  const over =
    perToken !== undefined && tokenTimes.length >= perToken
      ? { tier: "access_token", limit: perToken, oldest: tokenTimes[0] ?? now }
      : perApp !== undefined && window.byApp.length >= perApp
        ? { tier: "application", limit: perApp, oldest: window.byApp[0] ?? now }
        : undefined
  if (over !== undefined) {
    state.counters.rateLimited++
    const resetMs = over.oldest + windowMs
    return ouraError(state, 429, "Rate limit exceeded", {
      "retry-after": String(Math.max(1, Math.ceil((resetMs - now) / 1000))),
      "x-ratelimit-limit": String(over.limit),
      "x-ratelimit-window": String(Math.ceil(windowMs / 1000)),
      "x-ratelimit-reset": String(Math.ceil(resetMs / 1000)),
      "x-ratelimit-tier": over.tier
    })
  }
  tokenTimes.push(now)
  window.byApp.push(now)
  return undefined
}

/** A window bound as FastAPI/pydantic would read it. */
type Bound =
  | { readonly kind: "date"; readonly date: string }
  /** A date-time without an offset: wall-clock in the user's zone. */
  | { readonly kind: "local"; readonly wallClock: string }
  | { readonly kind: "instant"; readonly ms: number; readonly date: string }

const DATE = /^\d{4}-\d{2}-\d{2}$/
const DATE_TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?$/
const NUMBER = /^-?\d+(?:\.\d+)?$/

/** Undefined: unparseable (422). Numbers are unix seconds (milliseconds above 2e10), as pydantic reads them. */
const parseBound = (value: string, dateAllowed: boolean): Bound | undefined => {
  if (DATE.test(value)) return dateAllowed && !Number.isNaN(Date.parse(value)) ? { kind: "date", date: value } : undefined
  const match = DATE_TIME.exec(value)
  if (match !== null) {
    const [, date = "", time = "", offset] = match
    if (offset === undefined) return { kind: "local", wallClock: `${date}T${time.length === 5 ? `${time}:00` : time}` }
    const ms = Date.parse(`${date}T${time}${offset}`)
    return Number.isNaN(ms) ? undefined : { kind: "instant", ms, date }
  }
  if (NUMBER.test(value)) {
    const n = Number(value)
    const ms = Math.abs(n) > 2e10 ? n : n * 1000
    return { kind: "instant", ms, date: new Date(ms).toISOString().slice(0, 10) }
  }
  return undefined
}

/** -1, 0 or 1: the document's field value against the bound; undefined when it cannot be compared. */
const compareToBound = (value: unknown, bound: Bound): number | undefined => {
  if (typeof value !== "string") return undefined
  const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0)
  const isDate = DATE.test(value)
  if (isDate) {
    // A date field against a date-time bound: the bound's date.
    const boundDate = bound.kind === "date" ? bound.date : bound.kind === "local" ? bound.wallClock.slice(0, 10) : bound.date
    return sign(value.localeCompare(boundDate))
  }
  // A timestamp field: date-only and offset-less bounds are wall-clock in the document's own offset.
  if (bound.kind === "instant") {
    const ms = Date.parse(value)
    return Number.isNaN(ms) ? undefined : sign(ms - bound.ms)
  }
  const wallClock = value.slice(0, 19)
  return sign(wallClock.localeCompare(bound.kind === "date" ? `${bound.date}T00:00:00` : bound.wallClock.slice(0, 19)))
}

const inWindow = (doc: OuraDocument, rule: WindowRule, start: Bound | undefined, end: Bound | undefined): boolean => {
  const value = doc[rule.field]
  if (start !== undefined) {
    const c = compareToBound(value, start)
    if (c === undefined || c < 0 || (c === 0 && rule.start === "exclusive")) return false
  }
  if (end !== undefined) {
    const c = compareToBound(value, end)
    if (c === undefined || c > 0 || (c === 0 && rule.end === "exclusive")) return false
  }
  return true
}

const sortKey = (doc: OuraDocument, field: string): number | string => {
  const value = doc[field]
  if (typeof value !== "string") return ""
  if (DATE.test(value)) return value
  const ms = Date.parse(value)
  return Number.isNaN(ms) ? value : ms
}

const isTimeSeries = (collection: string) => (TIME_SERIES_COLLECTIONS as ReadonlyArray<string>).includes(collection)
const isDocumentCollection = (collection: string) => (DOCUMENT_COLLECTIONS as ReadonlyArray<string>).includes(collection)

/** Keeps the always-returned fields and the ones `fields` names. */
const pickFields = (doc: OuraDocument, fields: string | null): OuraDocument => {
  if (fields === null || fields.trim() === "") return doc
  const keep = new Set(["id", "day", "timestamp", ...fields.split(",").map((f) => f.trim())])
  return Object.fromEntries(Object.entries(doc).filter(([key]) => keep.has(key)))
}

/** The list answer for a (validated) query: the page at `offset` and its next_token. */
const listPage = (
  state: FakeOuraState,
  docs: ReadonlyArray<OuraDocument>,
  collection: string,
  userId: string | undefined,
  query: Array<[string, string]>,
  offset: number,
  sandbox: boolean
): Reply => {
  const params = new URLSearchParams(query)
  const timeSeries = isTimeSeries(collection)
  const [startName, endName] = timeSeries ? ["start_datetime", "end_datetime"] : ["start_date", "end_date"]
  const errors: Array<FieldError> = []
  const bound = (name: string): Bound | undefined => {
    const raw = params.get(name)
    if (raw === null || raw === "") return undefined
    const parsed = parseBound(raw, !timeSeries)
    if (parsed === undefined) {
      errors.push({
        loc: ["query", name],
        msg: timeSeries ? "Input should be a valid datetime" : "Input should be a valid datetime or date",
        type: timeSeries ? "datetime_from_date_parsing" : "datetime_parsing",
        input: raw
      })
    }
    return parsed
  }
  const rule = state.windows[collection]
  let start = collection === "ring_configuration" ? undefined : bound(startName)
  const end = collection === "ring_configuration" ? undefined : bound(endName)
  const latestRaw = timeSeries ? params.get("latest") : null
  const latest = latestRaw === null ? false : /^(true|1|yes|on)$/i.test(latestRaw) ? true : /^(false|0|no|off)$/i.test(latestRaw) ? false : undefined
  if (latest === undefined) errors.push({ loc: ["query", "latest"], msg: "Input should be a valid boolean", type: "bool_parsing", input: latestRaw })
  if (errors.length > 0) return validationError(errors)
  if (timeSeries && start === undefined && end === undefined && !latest) {
    start = { kind: "instant", ms: Date.now() - state.timeSeriesDefaultSpanMs, date: "" }
  }
  let selected = docs.filter((doc) => rule === undefined || inWindow(doc, rule, start, end))
  if (rule !== undefined) {
    selected = selected
      .map((doc, index) => ({ doc, index, key: sortKey(doc, rule.field) }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.index - b.index))
      .map(({ doc }) => doc)
  }
  if (latest) selected = selected.slice(-1)
  const size = Math.max(1, timeSeries ? state.timeSeriesPageSize : state.pageSize)
  const page = selected.slice(offset, offset + size)
  let nextToken: string | null = null
  if (offset + size < selected.length) {
    nextToken = randomToken(12)
    state.pageTokens.set(nextToken, { userId, collection, query, offset: offset + size })
  }
  const fields = sandbox ? null : params.get("fields")
  return json(200, { data: page.map((doc) => pickFields(doc, fields)), next_token: nextToken })
}

/** GET /v2/usercollection/{collection}[/{id}] and the sandbox's. */
const dataRoute = (app: App, window: RateWindow, ex: Exchange, sandbox: boolean, collection: string, documentId: string | undefined): Reply => {
  const { state } = app
  const bearer = bearerOf(ex)
  const grant = sandbox ? undefined : grantOf(state, bearer)
  if (!sandbox && grant === undefined) return ouraError(state, 401, "Unauthorized")
  const limited = rateLimited(app, window, bearer ?? "(none)")
  if (limited !== undefined) return limited
  const user = grant === undefined ? undefined : state.users.get(grant.userId)
  if (!sandbox && user === undefined) return ouraError(state, 401, "Unauthorized")

  if (collection === "personal_info" && documentId === undefined && !sandbox && user !== undefined && grant !== undefined) {
    // The id is readable with any token; the rest needs personal (email: email).
    const info = user.personalInfo
    const visible = Object.fromEntries(
      Object.entries(info).filter(
        ([key]) => key === "id" || (key === "email" ? grant.scopes.includes("email") : grant.scopes.includes("personal"))
      )
    )
    return json(200, { ...visible, id: user.userId })
  }
  const known = (COLLECTIONS as ReadonlyArray<string>).includes(collection)
  const hasDocumentRoute = isDocumentCollection(collection) || collection === "ring_configuration"
  if (!known || (documentId !== undefined && !hasDocumentRoute)) return ouraError(state, 404, "Not Found")
  if (user !== undefined && grant !== undefined) {
    if (!user.membershipActive) return ouraError(state, 403, "The user's Oura membership is not active")
    const scope = state.collectionScopes[collection]
    if (scope !== undefined && !grant.scopes.includes(scope)) return ouraError(state, 403, "Access forbidden: missing scope")
    if (user.appTooOld.has(collection)) return ouraError(state, 426, "The user's Oura app must be updated to share this data")
  }
  const docs = (sandbox ? state.sandbox.documents : (user?.documents ?? {}))[collection] ?? []
  if (documentId !== undefined) {
    const doc = docs.find((candidate) => candidate["id"] === documentId)
    return doc === undefined ? ouraError(state, 404, "Document not found.") : json(200, doc)
  }
  const nextToken = ex.url.searchParams.get("next_token")
  if (nextToken !== null && nextToken !== "") {
    const cursor = state.pageTokens.get(nextToken)
    if (cursor === undefined || cursor.collection !== collection || cursor.userId !== user?.userId) {
      return ouraError(state, 400, "Invalid next_token")
    }
    return listPage(state, docs, collection, cursor.userId, cursor.query, cursor.offset, sandbox)
  }
  const query = [...ex.url.searchParams].filter(([key]) => key !== "next_token")
  return listPage(state, docs, collection, user?.userId, query, 0, sandbox)
}

// ---------------------------------------------------------------------------
// Webhook subscriptions
// ---------------------------------------------------------------------------

const clientAuthorized = (app: App, ex: Exchange): boolean =>
  safeEqualText(header(ex, "x-client-id") ?? "", app.clientId) && safeEqualText(header(ex, "x-client-secret") ?? "", app.clientSecret)

const subscriptionModel = (sub: FakeOuraSubscription) => ({
  id: sub.id,
  callback_url: sub.callback_url,
  event_type: sub.event_type,
  data_type: sub.data_type,
  expiration_time: isoZulu(sub.expiresAt)
})

/** Oura's verification GET; passes on 200 with `{"challenge": <same>}`. */
const verifyCallback = async (app: App, callbackUrl: string, verificationToken: string): Promise<boolean> => {
  const challenge = randomToken(16)
  let status = 0
  let passed = false
  try {
    const target = new URL(callbackUrl)
    target.searchParams.set("verification_token", verificationToken)
    target.searchParams.set("challenge", challenge)
    const response = await fetch(target, {
      signal: AbortSignal.any([app.background.signal, AbortSignal.timeout(app.state.webhooks.timeoutMs)])
    })
    status = response.status
    const body = (await response.json().catch(() => undefined)) as { challenge?: unknown } | undefined
    passed = status === 200 && body?.challenge === challenge
  } catch {
    // unreachable callback: verification fails
  }
  app.state.verifications.push({ callbackUrl, challenge, status, passed })
  return passed
}

const parseJsonObject = (body: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(body)
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** FastAPI-style checks of a subscription body; `required` names the fields that must be present. */
const subscriptionBodyErrors = (body: Record<string, unknown> | undefined, required: ReadonlyArray<string>): Array<FieldError> => {
  if (body === undefined) return [{ loc: ["body"], msg: "Input should be a valid dictionary or object", type: "model_attributes_type" }]
  const errors: Array<FieldError> = []
  for (const field of ["callback_url", "verification_token", "event_type", "data_type"]) {
    const value = body[field]
    if (value === undefined || value === null) {
      if (required.includes(field)) errors.push({ loc: ["body", field], msg: "Field required", type: "missing" })
      continue
    }
    if (typeof value !== "string") {
      errors.push({ loc: ["body", field], msg: "Input should be a valid string", type: "string_type", input: value })
    } else if (field === "event_type" && !EVENT_TYPES.includes(value)) {
      errors.push({ loc: ["body", field], msg: "Input should be 'create', 'update' or 'delete'", type: "enum", input: value })
    } else if (field === "data_type" && !(DATA_TYPES as ReadonlyArray<string>).includes(value)) {
      errors.push({ loc: ["body", field], msg: `Input should be one of ${DATA_TYPES.join(", ")}`, type: "enum", input: value })
    } else if (field === "callback_url" && !URL.canParse(value)) {
      errors.push({ loc: ["body", field], msg: "Input should be a valid URL", type: "url_parsing", input: value })
    }
  }
  return errors
}

const duplicateOf = (state: FakeOuraState, eventType: string, dataType: string, except?: string) =>
  state.webhooks.duplicates === "reject" &&
  [...state.subscriptions.values()].some((s) => s.id !== except && s.event_type === eventType && s.data_type === dataType)

const createSubscription = async (app: App, ex: Exchange): Promise<Reply> => {
  const { state } = app
  const body = parseJsonObject(ex.body)
  const errors = subscriptionBodyErrors(body, ["callback_url", "verification_token", "event_type", "data_type"])
  if (body === undefined || errors.length > 0) return validationError(errors)
  const [callbackUrl, token, eventType, dataType] = [body["callback_url"], body["verification_token"], body["event_type"], body["data_type"]].map(String) as [string, string, string, string]
  if (duplicateOf(state, eventType, dataType)) return ouraError(state, 409, "A subscription for this event_type and data_type already exists")
  if (!(await verifyCallback(app, callbackUrl, token))) {
    return ouraError(state, state.webhooks.verificationFailureStatus, "Verification of the callback_url failed")
  }
  const sub: FakeOuraSubscription = {
    id: randomUUID(),
    callback_url: callbackUrl,
    event_type: eventType,
    data_type: dataType,
    verification_token: token,
    expiresAt: Date.now() + state.webhooks.lifetimeMs
  }
  state.subscriptions.set(sub.id, sub)
  return json(201, subscriptionModel(sub))
}

const updateSubscription = async (app: App, ex: Exchange, sub: FakeOuraSubscription): Promise<Reply> => {
  const { state } = app
  const body = parseJsonObject(ex.body)
  const errors = subscriptionBodyErrors(body, ["verification_token"])
  if (body === undefined || errors.length > 0) return validationError(errors)
  const pick = (field: string, current: string) => (typeof body[field] === "string" ? (body[field] as string) : current)
  const next = {
    callback_url: pick("callback_url", sub.callback_url),
    event_type: pick("event_type", sub.event_type),
    data_type: pick("data_type", sub.data_type),
    verification_token: pick("verification_token", sub.verification_token)
  }
  if (duplicateOf(state, next.event_type, next.data_type, sub.id)) {
    return ouraError(state, 409, "A subscription for this event_type and data_type already exists")
  }
  if (!(await verifyCallback(app, next.callback_url, next.verification_token))) {
    return ouraError(state, state.webhooks.verificationFailureStatus, "Verification of the callback_url failed")
  }
  Object.assign(sub, next)
  return json(200, subscriptionModel(sub))
}

const subscriptionRoute = async (app: App, ex: Exchange, id: string | undefined, renew: boolean): Promise<Reply> => {
  const { state } = app
  if (!clientAuthorized(app, ex)) return ouraError(state, 401, "Invalid client credentials")
  if (id === undefined) {
    if (ex.method === "GET") return json(200, [...state.subscriptions.values()].map(subscriptionModel))
    if (ex.method === "POST") return createSubscription(app, ex)
    return ouraError(state, 405, "Method Not Allowed")
  }
  const sub = state.subscriptions.get(id)
  if (sub === undefined) return ouraError(state, state.webhooks.unknownIdStatus, "Webhook with specified id does not exist.")
  if (renew) {
    sub.expiresAt = Date.now() + state.webhooks.lifetimeMs
    return json(200, subscriptionModel(sub))
  }
  switch (ex.method) {
    case "GET":
      return json(200, subscriptionModel(sub))
    case "PUT":
      return updateSubscription(app, ex, sub)
    case "DELETE":
      state.subscriptions.delete(id)
      return empty(204)
    default:
      return ouraError(state, 405, "Method Not Allowed")
  }
}

// ---------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------

/** The signature Oura sends: upper-case hex HMAC-SHA256(client secret, timestamp + body). */
export const ouraSignature = (clientSecret: string, timestamp: string, body: string): string =>
  createHmac("sha256", clientSecret).update(timestamp + body).digest("hex").toUpperCase()

/** Python's json.dumps default separators, for `bodyStyle: "python"`. */
const pythonJson = (value: Record<string, string>): string =>
  `{${Object.entries(value)
    .map(([key, inner]) => `${JSON.stringify(key)}: ${JSON.stringify(inner)}`)
    .join(", ")}}`

const postNotification = async (app: App, sub: FakeOuraSubscription, notification: OuraNotification): Promise<number> => {
  const body =
    app.state.webhooks.bodyStyle === "python" ? pythonJson({ ...notification }) : JSON.stringify(notification)
  const timestamp = String(Math.floor(Date.now() / 1000))
  try {
    const response = await fetch(sub.callback_url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-oura-signature": ouraSignature(app.clientSecret, timestamp, body),
        "x-oura-timestamp": timestamp
      },
      body,
      redirect: "manual",
      signal: AbortSignal.any([app.background.signal, AbortSignal.timeout(app.state.webhooks.timeoutMs)])
    })
    await response.arrayBuffer().catch(() => undefined)
    return response.status
  } catch {
    return 0
  }
}

/** Delivers to one subscription with retries; 2xx/3xx succeed, 410 cancels the subscription. */
const deliver = async (app: App, sub: FakeOuraSubscription, notification: OuraNotification): Promise<NotifyOutcome> => {
  const { state, background } = app
  for (let attempt = 1; ; attempt++) {
    const status = await postNotification(app, sub, notification)
    state.deliveries.push({ subscriptionId: sub.id, callbackUrl: sub.callback_url, notification, attempt, status, at: Date.now() })
    if (status === 410) state.subscriptions.delete(sub.id)
    const done = (status >= 200 && status < 400) || status === 410 || attempt > state.webhooks.retries
    if (done || background.signal.aborted) return { subscriptionId: sub.id, status, attempts: attempt }
    await background.sleep(state.webhooks.retryDelayMs(attempt))
  }
}

const notifyAll = (app: App, input: NotifyInput): Promise<Array<NotifyOutcome>> => {
  const dataType = dataTypeOf(input.dataType)
  const notification: OuraNotification = {
    event_type: input.eventType,
    data_type: dataType,
    object_id: input.objectId,
    event_time: input.eventTime ?? isoOffset(Date.now()),
    user_id: input.userId
  }
  const now = Date.now()
  const live = [...app.state.subscriptions.values()].filter(
    (sub) => sub.event_type === input.eventType && sub.data_type === dataType && sub.expiresAt > now
  )
  return Promise.all(live.map((sub) => deliver(app, sub, notification)))
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

const USER_COLLECTION = /^\/v2\/(sandbox\/)?usercollection\/([A-Za-z0-9_]+)(?:\/([^/]+))?$/
const SUBSCRIPTION = /^\/v2\/webhook\/subscription(?:\/(renew)\/([^/]+)|\/([^/]+))?$/

const route = (app: App, window: RateWindow, ex: Exchange): Reply | Promise<Reply> => {
  const path = ex.url.pathname
  if (path === "/oauth/authorize" && ex.method === "GET") return authorize(app, ex)
  if (path === "/oauth/token" && ex.method === "POST") return token(app, ex)
  if (path === "/oauth/revoke" && ex.method === "POST") return revoke(app, ex)
  const data = USER_COLLECTION.exec(path)
  if (data !== null && ex.method === "GET") {
    const documentId = data[3] === undefined ? undefined : decodeURIComponent(data[3])
    return dataRoute(app, window, ex, data[1] !== undefined, data[2] ?? "", documentId)
  }
  const subscription = SUBSCRIPTION.exec(path)
  if (subscription !== null) {
    const renew = subscription[1] !== undefined
    if (renew && ex.method !== "PUT") return ouraError(app.state, 405, "Method Not Allowed")
    const id = subscription[2] ?? subscription[3]
    return subscriptionRoute(app, ex, id === undefined ? undefined : decodeURIComponent(id), renew)
  }
  return ouraError(app.state, 404, "Not Found")
}

// ---------------------------------------------------------------------------
// Failure injection
// ---------------------------------------------------------------------------

interface ActiveRule {
  readonly rule: InjectRule
  remaining: number
}

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

const injectedReply = (rule: InjectRule): Reply | undefined => {
  if ((rule.delayMs !== undefined || rule.hold !== undefined) && rule.status === undefined && rule.body === undefined) return undefined
  const contentType: Record<string, string> = rule.body === undefined ? {} : JSON_TYPE
  return { status: rule.status ?? 500, headers: { ...contentType, ...rule.headers }, body: rule.body ?? "" }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

export const startFakeOura = async (options: FakeOuraOptions = {}): Promise<FakeOura> => {
  const clientId = options.clientId ?? `client-${randomToken(6)}`
  const clientSecret = options.clientSecret ?? randomToken()
  const state = emptyState(options)
  const app: App = { state, clientId, clientSecret, background: makeBackground() }
  const window: RateWindow = { byToken: new Map(), byApp: [] }
  const requests: Array<RecordedRequest> = []
  const rules: Array<ActiveRule> = []
  let url = ""

  for (const collection of Object.keys(FIXTURE_FILES)) state.sandbox.documents[collection] = fixtureDocuments(collection)

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const ex: Exchange = { method: req.method ?? "GET", url: new URL(req.url ?? "/", url), headers: req.headers, body: await readBody(req) }
    requests.push({
      method: ex.method,
      path: ex.url.pathname,
      query: Object.fromEntries(ex.url.searchParams),
      headers: Object.fromEntries(Object.entries(ex.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v])),
      body: ex.body
    })
    const rule = takeRule(rules, ex)
    if (rule?.delayMs !== undefined) await sleep(rule.delayMs)
    if (rule?.hold !== undefined) await rule.hold.catch(() => undefined)
    if (rule?.handled) await route(app, window, ex)
    send(res, (rule && injectedReply(rule)) ?? (await route(app, window, ex)))
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, json(500, { detail: `fake-oura: ${String(error)}` }))
      else res.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("fake-oura: no TCP address")
  url = `http://127.0.0.1:${address.port}`

  const addUser: FakeOura["addUser"] = (userId, init = {}) => {
    const user = newUser(userId, init)
    state.users.set(userId, user)
    return user
  }
  const userOf = (userId: string) => state.users.get(userId) ?? addUser(userId)
  const listOf = (userId: string, dataType: string): Array<OuraDocument> => {
    const collection = collectionOf(dataType)
    if (collection === undefined) throw new Error(`fake-oura: ${dataType} has no collection`)
    const user = userOf(userId)
    return (user.documents[collection] ??= [])
  }
  const idOf = (doc: OuraDocument): string => {
    const id = doc["id"]
    if (typeof id !== "string") throw new Error("fake-oura: the document needs a string id")
    return id
  }

  return {
    url,
    clientId,
    clientSecret,
    state,
    requests,
    inject: (rule) => void rules.push({ rule, remaining: rule.times ?? 1 }),
    addUser,
    connect: (userId, scopes = state.oauth.knownScopes) => {
      userOf(userId)
      return issueTokens(state, newGrant(state, userId, scopes))
    },
    seed: (userId, collections = Object.keys(FIXTURE_FILES)) => {
      const added: Record<string, Array<OuraDocument>> = {}
      for (const name of collections) {
        const collection = collectionOf(name) ?? name
        const docs = fixtureDocuments(collection)
        listOf(userId, collection).push(...docs)
        added[collection] = docs
      }
      return added
    },
    notify: (input) => notifyAll(app, input),
    create: (userId, dataType, doc) => {
      const id = idOf(doc)
      listOf(userId, dataType).push(doc)
      return notifyAll(app, { userId, dataType, objectId: id, eventType: "create" })
    },
    revise: (userId, dataType, doc) => {
      const id = idOf(doc)
      const list = listOf(userId, dataType)
      const index = list.findIndex((candidate) => candidate["id"] === id)
      if (index === -1) list.push(doc)
      else list[index] = doc
      return notifyAll(app, { userId, dataType, objectId: id, eventType: "update" })
    },
    remove: (userId, dataType, id) => {
      const list = listOf(userId, dataType)
      const index = list.findIndex((candidate) => candidate["id"] === id)
      if (index !== -1) list.splice(index, 1)
      return notifyAll(app, { userId, dataType, objectId: id, eventType: "delete" })
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        app.background.cancel()
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      })
  }
}
