/**
 * A fake Withings Public Health Data API on loopback, for tests.
 *
 * One server plays account.withings.com and wbsapi.withings.net: point both base URLs at `url`.
 * Behaviour follows the project's Withings reference (withings.md, Withings' OpenAPI document
 * and the recorded examples): an RPC API where every call names an `action=` (form fields or
 * query, merged), and every answer is HTTP 200 with `{"status", "body", "error"?}` — status 0
 * is success, failures keep HTTP 200 (401 invalid token, 503 invalid params, 601 too many
 * requests, 2554 unknown action). OAuth 2.0 with Withings' quirks: comma-separated scopes,
 * 30-second codes, `POST /v2/oauth2 action=requesttoken`, rotating refresh tokens, `userid`
 * in the answer, signed `revoke` (nonce from `/v2/signature action=getnonce`) that also drops
 * the user's notification subscriptions. Data: getmeas (measures as `value × 10^unit`),
 * getactivity, getintradayactivity, getworkouts, sleep get/getsummary, getdevice, getgoals,
 * with `lastupdate` (created or modified since), date ranges and `offset`/`more` pages.
 * Notifications: `/notify` subscribe (with the HEAD check of the callback) / list / get /
 * update / revoke per user and appli, the appli allowed by the token's scopes, and
 * `notify()` POSTing Withings' form-encoded notification. An app-wide rate limit answers 601.
 *
 * Everything lives in `state`, which tests may read and change at any time; `inject()` adds
 * failures, delays and held requests in front of it; `seed()` loads a user's data from
 * ./fixtures (byte-identical copies of the recorded examples; `shiftDays` moves them nearer
 * today). `add`/`revise`/`remove` change a user's data and stamp `modified` with
 * `state.clock()`, so `lastupdate` queries see it. `state.inFlight`/`maxInFlight` count each
 * user's requests being answered at once, `state.counters` every request.
 *
 * Where Withings' behaviour is undocumented the fake picks one answer and makes it a switch:
 * - `lastupdate` includes documents modified at that very second (`state.lastupdate =
 *   "exclusive"`: strictly after); combined with a date range it answers an empty page, as
 *   one client saw for getsummary (`state.lastupdateWithRange = "invalid"`: status 503).
 * - lists are served oldest change first (`modified`, then insertion), so paging a
 *   `lastupdate` query walks a changelog; pages hold `state.pageSize` documents (3). getmeas
 *   answers `more: 1, offset` while more remain and leaves both out on the last page, as
 *   recorded (`state.getmeasLastPage = "zero"`: `more: 0, offset: 0`); v2 lists always answer
 *   `more` (boolean) and `offset`.
 * - deleted documents vanish from every answer (how Withings shows deletions is unknown).
 * - refresh: the old refresh token keeps working until the new access token is used or
 *   `state.oauth.oldRefreshGraceMs` (8 h) passes, as documented; `state.oauth.oldRefresh =
 *   "immediate"` kills it at once. The old access token lives on until it expires. The refresh
 *   answer leaves `userid` out (`state.oauth.refreshIncludesUserid`); `userid` is a string
 *   (`state.oauth.useridType = "number"` as the spec draws it). Unknown or dead refresh tokens
 *   and codes answer 503 "Invalid Params"; a bad client answers 503 too.
 * - a scope missing for an action or appli answers `state.scopeErrorStatus` (214, an
 *   "Unauthorized" code); expired or unknown tokens 401.
 * - the callback check is a HEAD that must answer 2xx within `state.notify.timeoutMs`;
 *   failing it answers 503 and stores nothing. Withings' URL rules (HTTPS, a domain, port
 *   80/443) are off, the fake lives on loopback (`state.notify.enforceUrlRules`). Subscribing
 *   the same (callbackurl, appli) twice keeps one subscription; revoking an unknown one
 *   answers 503.
 * - `notify()` tries each callback `state.notify.tries` times (2, Withings' first cycle), waiting
 *   `state.notify.retryDelayMs(n)` between tries (Withings: 10 s, 1 min, 1 h, 4 h).
 * - the rate limit is off until `state.rateLimit.perWindow` is set (Withings: 120 a minute);
 *   every wbsapi request counts, OAuth and notify included; the authorize page does not.
 * - sleep get answers `model` from the user (`sleepModel`, 32 as recorded); intraday without
 *   dates answers the 24 h up to the user's latest sample. `data_fields` keeps the named
 *   fields (inside `data` where a document nests them); without it everything is served.
 * - refresh tokens do not age (set `diesAt` for the 1-year end); /v2/heart, getdemoaccess,
 *   `mode=demo` and appli 53 are not played (unknown paths answer HTTP 404).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http"

// ---------------------------------------------------------------------------
// Statuses, scopes and applis
// ---------------------------------------------------------------------------

/** Status codes inside the HTTP 200 answers (Withings' response_status table). */
export const STATUS = {
  ok: 0,
  invalidToken: 401,
  invalidParams: 503,
  unauthorized: 214,
  tooManyRequests: 601,
  notImplemented: 2554
} as const

export const SCOPES = ["user.info", "user.metrics", "user.activity", "user.sleepevents"] as const

/** Action → scope it needs (reference); actions not listed need none beyond a live token. */
export const DEFAULT_ACTION_SCOPES: Readonly<Record<string, string>> = {
  getmeas: "user.metrics",
  getactivity: "user.activity",
  getintradayactivity: "user.activity",
  getworkouts: "user.activity",
  "sleep.get": "user.activity",
  "sleep.getsummary": "user.activity"
}

/** Notification category (appli) → scope that allows subscribing to it. 46 (user events) needs none. */
export const DEFAULT_APPLI_SCOPES: Readonly<Record<number, string | null>> = {
  1: "user.metrics",
  2: "user.metrics",
  4: "user.metrics",
  16: "user.activity",
  44: "user.activity",
  46: null,
  50: "user.sleepevents",
  51: "user.sleepevents",
  52: "user.metrics",
  54: "user.metrics",
  55: "user.metrics",
  58: "user.metrics"
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/** A Withings document as served (free-form JSON). */
export type WithingsDocument = Record<string, unknown>

/** The lists `lastupdate` applies to, each keyed as `idOf` says. */
export type StampedResource = "measuregrps" | "activities" | "workouts" | "sleepSummaries"
/** Every list a user holds. */
export type Resource = StampedResource | "sleepSeries" | "intraday"

/**
 * A Withings account. Tests may change its lists directly; a document pushed without
 * `modified` only shows to `lastupdate=0`, so stamp it yourself or use add/revise/remove.
 */
export interface FakeWithingsUser {
  /** Withings' numeric user id, as a string. */
  readonly userId: string
  timezone: string
  /** Scopes the user leaves ticked; granted = requested ∩ these. Undefined: all requested. */
  approvedScopes: Array<string> | undefined
  /** The consent screen redirects with error=access_denied. */
  deniesConsent: boolean
  /** getmeas groups, getactivity days, getworkouts series, getsummary nights. */
  measuregrps: Array<WithingsDocument>
  activities: Array<WithingsDocument>
  workouts: Array<WithingsDocument>
  sleepSummaries: Array<WithingsDocument>
  /** sleep get's series items (`startdate`, `enddate`, `state`, `hr`...). */
  sleepSeries: Array<WithingsDocument>
  /** getintradayactivity samples, each with its `timestamp` (epoch s) and fields. */
  intraday: Array<WithingsDocument>
  /** sleep get's `model` (16 tracker, 32 sleep monitor). */
  sleepModel: number
  devices: Array<WithingsDocument>
  goals: WithingsDocument
}

export interface FakeWithingsGrant {
  readonly id: string
  readonly userId: string
  readonly scopes: ReadonlyArray<string>
  revoked: boolean
}

export interface FakeWithingsAccessToken {
  readonly grantId: string
  /** Milliseconds since epoch; set it in the past to expire the token. */
  expiresAt: number
  /** The refresh token that produced this one (dies when this one is first used). */
  readonly retiresRefreshToken: string | undefined
  revoked: boolean
}

export interface FakeWithingsRefreshToken {
  readonly grantId: string
  /** Milliseconds since epoch when it stops working; undefined: alive (1 year). */
  diesAt: number | undefined
  dead: boolean
}

export interface FakeWithingsCode {
  readonly userId: string
  readonly scopes: ReadonlyArray<string>
  readonly redirectUri: string
  expiresAt: number
  used: boolean
}

export interface FakeWithingsSubscription {
  readonly userId: string
  appli: number
  callbackurl: string
  comment: string
  expires: number
}

/** One HEAD check made while subscribing. */
export interface CallbackCheck {
  readonly callbackurl: string
  /** HTTP status; 0 when it could not connect or timed out. */
  readonly status: number
  readonly passed: boolean
}

/** One POST of a notification to a callback, whatever it answered. */
export interface DeliveryAttempt {
  readonly userId: string
  readonly appli: number
  readonly callbackurl: string
  /** The form-encoded body sent. */
  readonly body: string
  /** 1 for the first try. */
  readonly attempt: number
  /** HTTP status; 0 when it could not connect or timed out. */
  readonly status: number
  readonly at: number
}

export interface FakeWithingsState {
  users: Map<string, FakeWithingsUser>
  /** Who answers the next consent screen; undefined → a new user with a fresh id. */
  nextConsent: string | undefined
  grants: Map<string, FakeWithingsGrant>
  accessTokens: Map<string, FakeWithingsAccessToken>
  refreshTokens: Map<string, FakeWithingsRefreshToken>
  codes: Map<string, FakeWithingsCode>
  /** Nonces from getnonce: expiry (ms) and whether used. */
  nonces: Map<string, { expiresAt: number; used: boolean }>
  oauth: {
    /** expires_in of access tokens, seconds (Withings: 10,800). */
    expiresIn: number
    codeLifetimeMs: number
    /** Registered callback URLs; undefined: any. */
    redirectUris: Array<string> | undefined
    oldRefresh: "grace" | "immediate"
    oldRefreshGraceMs: number
    refreshIncludesUserid: boolean
    useridType: "string" | "number"
  }
  /** Unix seconds "now": stamps changes and answers `updatetime`. */
  clock: () => number
  lastupdate: "inclusive" | "exclusive"
  lastupdateWithRange: "empty" | "invalid"
  pageSize: number
  getmeasLastPage: "absent" | "zero"
  actionScopes: Record<string, string>
  appliScopes: Record<number, string | null>
  scopeErrorStatus: number
  /** Off while perWindow is undefined. Withings: 120 per 60 s, per application. */
  rateLimit: { perWindow: number | undefined; windowMs: number }
  counters: {
    /** wbsapi requests seen, whatever they answered. */
    requests: number
    byAction: Map<string, number>
    rateLimited: number
    refreshes: number
  }
  /**
   * Requests with a user's live Bearer token being answered now, and the most ever at once,
   * by user id (injected delays and holds included): "never two polls of one user at once".
   */
  inFlight: Map<string, number>
  maxInFlight: Map<string, number>
  subscriptions: Array<FakeWithingsSubscription>
  notify: {
    enforceUrlRules: boolean
    timeoutMs: number
    tries: number
    retryDelayMs: (retry: number) => number
  }
  checks: Array<CallbackCheck>
  deliveries: Array<DeliveryAttempt>
}

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  /** Query and form fields merged. */
  readonly params: Record<string, string>
  readonly headers: Record<string, string | undefined>
}

export interface InjectRule {
  readonly method?: string
  /** A string matches the path exactly; a RegExp is tested against the path (no query). */
  readonly path: string | RegExp
  /** Only requests with this action. */
  readonly action?: string
  /** Only requests whose query and form fields include these (e.g. `{ offset: "3" }`: a second page). */
  readonly params?: Readonly<Record<string, string>>
  /** Answer HTTP 200 with this Withings status (and `error`). */
  readonly withingsStatus?: number
  readonly error?: string
  /** Answer this HTTP status instead (e.g. 502 from a proxy), with `body`. */
  readonly httpStatus?: number
  readonly body?: string
  readonly delayMs?: number
  /** How many matching requests the rule applies to (default 1). */
  readonly times?: number
  /** Holds the request open until this settles, then answers as the rule says (or normally). */
  readonly hold?: Promise<unknown>
  /** The fake handles the request (e.g. rotates the refresh token) but answers the rule's. */
  readonly handled?: boolean
}

export interface TokenBody {
  readonly userid?: string | number
  readonly access_token: string
  readonly refresh_token: string
  readonly expires_in: number
  readonly scope: string
  readonly csrf_token: string
  readonly token_type: "Bearer"
}

/** The fixture files `seed()` reads, by what they fill. */
export const FIXTURES = {
  measuregrps: ["measure-getmeas.200.json", "measure-getmeas.measuregrps-bodyscan.json", "measure-getmeas.measuregrps-segmental.json"],
  activities: ["measure-v2-getactivity.200.json"],
  workouts: ["measure-v2-getworkouts.200.json"],
  sleepSummaries: ["sleep-v2-getsummary.page1.200.json"],
  sleepSeries: ["sleep-v2-get.200.json"],
  devices: ["user-v2-getdevice.200.json"],
  goals: ["user-v2-getgoals.200.json"]
} as const
export type SeedPart = keyof typeof FIXTURES

export interface SeedOptions {
  /**
   * Moves every time in the seeded documents by this many whole days (the recorded examples
   * are from 2021–2024): epoch-second fields, YYYY-MM-DD dates and the epoch keys of sleep
   * series maps. Times of day, durations and relations stay.
   */
  readonly shiftDays?: number
  /** Stamps each document of a `lastupdate` list as modified now, as if the user had just synced it. */
  readonly touched?: boolean
}

const EPOCH_FIELDS = new Set(["date", "created", "modified", "startdate", "enddate", "first_session_date", "last_session_date", "timestamp"])
const YMD = /^\d{4}-\d{2}-\d{2}$/
const EPOCH_KEY = /^\d{9,10}$/

/** `value` with its times moved by `days` (see SeedOptions.shiftDays). */
export const shiftDays = <A>(value: A, days: number, field?: string): A => {
  const seconds = days * DAY_S
  if (typeof value === "string" && YMD.test(value)) {
    return new Date(Date.parse(`${value}T00:00:00Z`) + seconds * 1000).toISOString().slice(0, 10) as A
  }
  if (typeof value === "number" && field !== undefined && EPOCH_FIELDS.has(field)) return (value + seconds) as A
  if (Array.isArray(value)) return value.map((item) => shiftDays(item, days)) as A
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [EPOCH_KEY.test(key) ? String(Number(key) + seconds) : key, shiftDays(item, days, key)])
    ) as A
  }
  return value
}

export interface FakeWithings {
  /** e.g. http://127.0.0.1:PORT — both account.withings.com and wbsapi.withings.net. */
  readonly url: string
  readonly clientId: string
  readonly clientSecret: string
  readonly state: FakeWithingsState
  readonly requests: Array<RecordedRequest>
  inject(rule: InjectRule): void
  /** Drops every injected rule not yet used up. */
  clearInjected(): void
  /** Adds (or replaces) a user with empty data. */
  addUser(userId: string, init?: Partial<Omit<FakeWithingsUser, "userId">>): FakeWithingsUser
  /** Issues tokens without the consent flow (scopes default: all). */
  connect(userId: string, scopes?: ReadonlyArray<string>): TokenBody & { readonly userid: string | number }
  /** Fills the user's data from the fixtures (all parts by default), creating the user if needed. */
  seed(userId: string, parts?: ReadonlyArray<SeedPart>, options?: SeedOptions): void
  /** Adds a document, stamping `created`/`modified` (stamped lists) with the clock. */
  add(userId: string, resource: Resource, doc: WithingsDocument): WithingsDocument
  /** Replaces the document with the same key (added if absent), stamping `modified`. */
  revise(userId: string, resource: Resource, doc: WithingsDocument): WithingsDocument
  /** Deletes the documents with this key; true when one was there. */
  remove(userId: string, resource: Resource, key: string): boolean
  /**
   * POSTs Withings' notification (`userid`, `appli`, `startdate`, `enddate`, plus `extra`
   * fields such as `date`, `deviceid` or `action`) to each of the user's subscriptions for the
   * appli; resolves with the last status of each (0: no answer). Attempts are in state.deliveries.
   */
  notify(userId: string, appli: number, startdate?: number, enddate?: number, extra?: Record<string, string>): Promise<Array<number>>
  /** Stops the server and cancels pending deliveries. */
  close(): Promise<void>
}

export interface FakeWithingsOptions {
  readonly clientId?: string
  readonly clientSecret?: string
  readonly redirectUris?: ReadonlyArray<string>
}

// ---------------------------------------------------------------------------
// Defaults and fixtures
// ---------------------------------------------------------------------------

const HOUR_MS = 3_600_000
const DAY_S = 86_400

const emptyState = (options: FakeWithingsOptions): FakeWithingsState => ({
  users: new Map(),
  nextConsent: undefined,
  grants: new Map(),
  accessTokens: new Map(),
  refreshTokens: new Map(),
  codes: new Map(),
  nonces: new Map(),
  oauth: {
    expiresIn: 10_800,
    codeLifetimeMs: 30_000,
    redirectUris: options.redirectUris === undefined ? undefined : [...options.redirectUris],
    oldRefresh: "grace",
    oldRefreshGraceMs: 8 * HOUR_MS,
    refreshIncludesUserid: false,
    useridType: "string"
  },
  clock: () => Math.floor(Date.now() / 1000),
  lastupdate: "inclusive",
  lastupdateWithRange: "empty",
  pageSize: 3,
  getmeasLastPage: "absent",
  actionScopes: { ...DEFAULT_ACTION_SCOPES },
  appliScopes: { ...DEFAULT_APPLI_SCOPES },
  scopeErrorStatus: STATUS.unauthorized,
  rateLimit: { perWindow: undefined, windowMs: 60_000 },
  counters: { requests: 0, byAction: new Map(), rateLimited: 0, refreshes: 0 },
  inFlight: new Map(),
  maxInFlight: new Map(),
  subscriptions: [],
  notify: { enforceUrlRules: false, timeoutMs: 10_000, tries: 2, retryDelayMs: (retry) => 20 * retry },
  checks: [],
  deliveries: []
})

const FIXTURES_DIR = new URL("./fixtures/", import.meta.url)
const readFixture = (name: string): unknown => JSON.parse(readFileSync(new URL(name, FIXTURES_DIR), "utf8"))

/** A fixture's documents: a bare array, or the list under `body`. */
const fixtureList = (name: string, key: string): Array<WithingsDocument> => {
  const value = readFixture(name)
  if (Array.isArray(value)) return value as Array<WithingsDocument>
  const body = (value as { body: Record<string, unknown> }).body
  return [...((body[key] as Array<WithingsDocument> | undefined) ?? [])]
}

/** The key a document is revised and removed by. Activities are one per day and source. */
export const keyOf = (resource: Resource, doc: WithingsDocument): string => {
  switch (resource) {
    case "measuregrps":
      return String(doc["grpid"])
    case "activities":
      return `${String(doc["date"])}|${String(doc["hash_deviceid"] ?? doc["modelid"] ?? "")}`
    case "workouts":
    case "sleepSummaries":
      return String(doc["id"])
    case "sleepSeries":
    case "intraday":
      return String(doc["startdate"] ?? doc["timestamp"])
  }
}

const isStamped = (resource: Resource): resource is StampedResource =>
  resource === "measuregrps" || resource === "activities" || resource === "workouts" || resource === "sleepSummaries"

const newUser = (userId: string, init: Partial<Omit<FakeWithingsUser, "userId">> = {}): FakeWithingsUser => ({
  timezone: "Europe/Amsterdam",
  approvedScopes: undefined,
  deniesConsent: false,
  measuregrps: [],
  activities: [],
  workouts: [],
  sleepSummaries: [],
  sleepSeries: [],
  intraday: [],
  sleepModel: 32,
  devices: [],
  goals: {},
  ...init,
  userId
})

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

interface Exchange {
  readonly method: string
  readonly url: URL
  readonly headers: IncomingHttpHeaders
  /** Query and form fields merged (form wins). */
  readonly params: URLSearchParams
}

interface Reply {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body?: string
}

interface App {
  readonly state: FakeWithingsState
  readonly clientId: string
  readonly clientSecret: string
  readonly background: Background
  readonly rateTimes: Array<number>
}

const JSON_TYPE = { "content-type": "application/json" }
const ok = (body: unknown): Reply => ({ status: 200, headers: JSON_TYPE, body: JSON.stringify({ status: STATUS.ok, body }) })
/** A failure as Withings sends it: HTTP 200, the status inside. */
const failure = (status: number, error: string): Reply => ({
  status: 200,
  headers: JSON_TYPE,
  body: JSON.stringify({ status, body: {}, error })
})
const invalidParams = (what: string) => failure(STATUS.invalidParams, `Invalid Params: ${what}`)
const INVALID_TOKEN = "XRequestID: Not provided invalid_token: The access token provided is invalid"

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

const safeEqualText = (a: string, b: string): boolean => {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

const randomHex = (bytes = 20): string => randomBytes(bytes).toString("hex")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** An integer field; undefined when absent, NaN when not an integer. */
const intParam = (params: URLSearchParams, name: string): number | undefined => {
  const raw = params.get(name)
  if (raw === null || raw === "") return undefined
  return /^-?\d+$/.test(raw) ? Number(raw) : Number.NaN
}

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
// OAuth 2.0
// ---------------------------------------------------------------------------

let nextUserId = 30_000_001

const useridOf = (state: FakeWithingsState, userId: string): string | number =>
  state.oauth.useridType === "number" ? Number(userId) : userId

const issueTokens = (state: FakeWithingsState, grant: FakeWithingsGrant, retires: string | undefined, withUserid: boolean): TokenBody => {
  const accessToken = randomHex()
  const refreshToken = randomHex()
  state.accessTokens.set(accessToken, {
    grantId: grant.id,
    expiresAt: Date.now() + state.oauth.expiresIn * 1000,
    retiresRefreshToken: retires,
    revoked: false
  })
  state.refreshTokens.set(refreshToken, { grantId: grant.id, diesAt: undefined, dead: false })
  const tokens = {
    access_token: accessToken,
    refresh_token: refreshToken,
    expires_in: state.oauth.expiresIn,
    scope: grant.scopes.join(","),
    csrf_token: randomBytes(24).toString("base64url"),
    token_type: "Bearer" as const
  }
  return withUserid ? { userid: useridOf(state, grant.userId), ...tokens } : tokens
}

const newGrant = (state: FakeWithingsState, userId: string, scopes: ReadonlyArray<string>): FakeWithingsGrant => {
  const grant: FakeWithingsGrant = { id: randomHex(8), userId, scopes: [...scopes], revoked: false }
  state.grants.set(grant.id, grant)
  return grant
}

/** Ends every grant of the user and drops the user's notification subscriptions. */
const revokeUser = (state: FakeWithingsState, userId: string): void => {
  for (const grant of state.grants.values()) {
    if (grant.userId !== userId) continue
    grant.revoked = true
    for (const token of state.accessTokens.values()) if (token.grantId === grant.id) token.revoked = true
    for (const token of state.refreshTokens.values()) if (token.grantId === grant.id) token.dead = true
  }
  state.subscriptions = state.subscriptions.filter((sub) => sub.userId !== userId)
}

const redirect = (target: string, params: Record<string, string>): Reply => {
  const location = new URL(target)
  for (const [key, value] of Object.entries(params)) location.searchParams.set(key, value)
  return { status: 302, headers: { location: location.toString() } }
}

/** GET /oauth2_user/authorize2: the chosen user consents at once. Bad requests get an error page. */
const authorize = (app: App, ex: Exchange): Reply => {
  const { state } = app
  const params = ex.url.searchParams
  const page = (text: string): Reply => ({ status: 400, headers: { "content-type": "text/html" }, body: `<html><body>${text}</body></html>` })
  for (const name of ["response_type", "client_id", "scope", "redirect_uri", "state"]) {
    if ((params.get(name) ?? "") === "") return page(`Missing parameter: ${name}`)
  }
  if (params.get("client_id") !== app.clientId) return page("Invalid client_id")
  const redirectUri = params.get("redirect_uri") ?? ""
  if (!URL.canParse(redirectUri) || (state.oauth.redirectUris !== undefined && !state.oauth.redirectUris.includes(redirectUri))) {
    return page("The redirect_uri is not a registered callback URL")
  }
  if (params.get("response_type") !== "code") return page("response_type must be code")
  // Comma-separated: a space-separated list is one unknown scope.
  const requested = (params.get("scope") ?? "").split(",").map((s) => s.trim()).filter((s) => (SCOPES as ReadonlyArray<string>).includes(s))
  if (requested.length === 0) return page("Invalid scope")
  const userId = state.nextConsent ?? String(nextUserId++)
  const user = state.users.get(userId) ?? newUser(userId)
  state.users.set(userId, user)
  const clientState = params.get("state") ?? ""
  if (user.deniesConsent) return redirect(redirectUri, { error: "access_denied", state: clientState })
  const granted = requested.filter((scope) => user.approvedScopes === undefined || user.approvedScopes.includes(scope))
  const code = randomHex()
  state.codes.set(code, { userId, scopes: granted, redirectUri, expiresAt: Date.now() + state.oauth.codeLifetimeMs, used: false })
  return redirect(redirectUri, { code, state: clientState })
}

/** The request's client credentials: the secret, or a signature over (action, client_id, nonce) with a fresh nonce. */
const clientAuthenticated = (app: App, params: URLSearchParams): boolean => {
  if (!safeEqualText(params.get("client_id") ?? "", app.clientId)) return false
  const secret = params.get("client_secret")
  if (secret !== null) return safeEqualText(secret, app.clientSecret)
  return signedCallValid(app, params)
}

/** hex HMAC-SHA256(client secret, values of `fields` ordered by name, joined with ","). */
export const withingsSignature = (clientSecret: string, fields: Record<string, string>): string =>
  createHmac("sha256", clientSecret)
    .update(
      Object.keys(fields)
        .sort()
        .map((key) => fields[key])
        .join(",")
    )
    .digest("hex")

const signedCallValid = (app: App, params: URLSearchParams): boolean => {
  const nonce = params.get("nonce") ?? ""
  const entry = app.state.nonces.get(nonce)
  if (entry === undefined || entry.used || entry.expiresAt <= Date.now()) return false
  const expected = withingsSignature(app.clientSecret, {
    action: params.get("action") ?? "",
    client_id: params.get("client_id") ?? "",
    nonce
  })
  if (!safeEqualText(params.get("signature") ?? "", expected)) return false
  entry.used = true
  return true
}

/** POST /v2/signature action=getnonce. */
const signatureRoute = (app: App, ex: Exchange): Reply => {
  const { params } = ex
  if (params.get("action") !== "getnonce") return failure(STATUS.notImplemented, "Not implemented")
  const timestamp = params.get("timestamp") ?? ""
  const expected = withingsSignature(app.clientSecret, { action: "getnonce", client_id: params.get("client_id") ?? "", timestamp })
  if (!safeEqualText(params.get("client_id") ?? "", app.clientId) || !safeEqualText(params.get("signature") ?? "", expected)) {
    return invalidParams("invalid signature")
  }
  const nonce = randomHex()
  app.state.nonces.set(nonce, { expiresAt: Date.now() + 30 * 60_000, used: false })
  return ok({ nonce })
}

/** POST /v2/oauth2: requesttoken (authorization_code | refresh_token) and revoke. */
const oauth2Route = (app: App, ex: Exchange): Reply => {
  const { state } = app
  const { params } = ex
  const action = params.get("action")
  if (action === "revoke") {
    if (!clientAuthenticated(app, params)) return invalidParams("invalid signature")
    const userId = params.get("userid") ?? ""
    if (!state.users.has(userId)) return invalidParams("invalid userid")
    revokeUser(state, userId)
    return ok({})
  }
  if (action !== "requesttoken") return failure(STATUS.notImplemented, "Not implemented")
  if (!clientAuthenticated(app, params)) return invalidParams("invalid client_id or client_secret")
  switch (params.get("grant_type")) {
    case "authorization_code": {
      const code = state.codes.get(params.get("code") ?? "")
      if (code === undefined || code.used || code.expiresAt <= Date.now()) return invalidParams("invalid code")
      if (params.get("redirect_uri") !== code.redirectUri) return invalidParams("invalid redirect_uri")
      code.used = true
      return ok(issueTokens(state, newGrant(state, code.userId, code.scopes), undefined, true))
    }
    case "refresh_token": {
      state.counters.refreshes++
      const presented = params.get("refresh_token") ?? ""
      const refresh = state.refreshTokens.get(presented)
      const grant = refresh && state.grants.get(refresh.grantId)
      if (refresh === undefined || grant === undefined || grant.revoked || refreshDead(refresh)) {
        return invalidParams("invalid refresh_token")
      }
      if (state.oauth.oldRefresh === "immediate") refresh.dead = true
      else refresh.diesAt = Math.min(refresh.diesAt ?? Number.POSITIVE_INFINITY, Date.now() + state.oauth.oldRefreshGraceMs)
      return ok(issueTokens(state, grant, presented, state.oauth.refreshIncludesUserid))
    }
    default:
      return invalidParams("invalid grant_type")
  }
}

const refreshDead = (refresh: FakeWithingsRefreshToken): boolean =>
  refresh.dead || (refresh.diesAt !== undefined && refresh.diesAt <= Date.now())

/** The live access token and grant a request carries, without using it. */
const liveToken = (state: FakeWithingsState, ex: Exchange): { access: FakeWithingsAccessToken; grant: FakeWithingsGrant } | undefined => {
  const bearer = /^Bearer\s+(\S+)$/i.exec(header(ex, "authorization") ?? "")?.[1] ?? ex.params.get("access_token") ?? undefined
  const access = bearer === undefined ? undefined : state.accessTokens.get(bearer)
  if (access === undefined || access.revoked || access.expiresAt <= Date.now()) return undefined
  const grant = state.grants.get(access.grantId)
  return grant === undefined || grant.revoked ? undefined : { access, grant }
}

/** The grant behind a live Bearer token; its first use retires the refresh token that made it. */
const grantOf = (state: FakeWithingsState, ex: Exchange): FakeWithingsGrant | undefined => {
  const live = liveToken(state, ex)
  if (live === undefined) return undefined
  const { access, grant } = live
  if (access.retiresRefreshToken !== undefined) {
    const old = state.refreshTokens.get(access.retiresRefreshToken)
    if (old !== undefined) old.dead = true
  }
  return grant
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

const num = (value: unknown): number => (typeof value === "number" ? value : Number(value))

/** Lists are served oldest change first; the sort is stable, so ties keep insertion order. */
const byChange = (docs: ReadonlyArray<WithingsDocument>): Array<WithingsDocument> =>
  [...docs].sort((a, b) => num(a["modified"] ?? 0) - num(b["modified"] ?? 0))

const changedSince = (state: FakeWithingsState, doc: WithingsDocument, since: number): boolean => {
  const modified = num(doc["modified"] ?? doc["created"] ?? 0)
  return state.lastupdate === "inclusive" ? modified >= since : modified > since
}

interface Page {
  readonly docs: Array<WithingsDocument>
  readonly more: boolean
  readonly offset: number
}

const pageOf = (state: FakeWithingsState, docs: ReadonlyArray<WithingsDocument>, offset: number): Page => {
  const size = Math.max(1, state.pageSize)
  const end = offset + size
  return { docs: docs.slice(offset, end), more: end < docs.length, offset: Math.min(end, docs.length) }
}

/** Keeps the fields a `data_fields` list names (in `data` when the document nests them). */
const pickFields = (doc: WithingsDocument, fields: string | null, candidates: ReadonlyArray<string>): WithingsDocument => {
  if (fields === null || fields.trim() === "") return doc
  const keep = new Set(fields.split(",").map((f) => f.trim()))
  const data = doc["data"]
  if (data !== null && typeof data === "object" && !Array.isArray(data)) {
    return { ...doc, data: Object.fromEntries(Object.entries(data).filter(([key]) => keep.has(key))) }
  }
  return Object.fromEntries(Object.entries(doc).filter(([key]) => !candidates.includes(key) || keep.has(key)))
}

const ACTIVITY_FIELDS = [
  "steps", "distance", "elevation", "soft", "moderate", "intense", "active", "calories", "totalcalories",
  "hr_average", "hr_min", "hr_max", "hr_zone_0", "hr_zone_1", "hr_zone_2", "hr_zone_3"
]
const SLEEP_SERIES_FIELDS = ["hr", "rr", "snoring", "sdnn_1", "rmssd", "hrv_quality", "mvt_score", "chest_movement_rate", "withings_index", "breathing_sounds"]

type Selection = { readonly kind: "lastupdate"; readonly since: number } | { readonly kind: "range"; readonly keep: (doc: WithingsDocument) => boolean }

/** lastupdate or a ymd range (on the document's `date`), as v2 lists take them. */
const ymdSelection = (state: FakeWithingsState, params: URLSearchParams): Selection | Reply | "empty" => {
  const lastupdate = intParam(params, "lastupdate")
  const start = params.get("startdateymd")
  const end = params.get("enddateymd")
  const hasRange = (start ?? "") !== "" || (end ?? "") !== ""
  if (Number.isNaN(lastupdate)) return invalidParams("lastupdate")
  if (lastupdate !== undefined && hasRange) return state.lastupdateWithRange === "empty" ? "empty" : invalidParams("lastupdate and startdateymd")
  if (lastupdate !== undefined) return { kind: "lastupdate", since: lastupdate }
  const ymd = /^\d{4}-\d{2}-\d{2}$/
  if (start === null || end === null || !ymd.test(start) || !ymd.test(end)) return invalidParams("startdateymd / enddateymd")
  return { kind: "range", keep: (doc) => String(doc["date"]) >= start && String(doc["date"]) <= end }
}

const v2List = (app: App, ex: Exchange, docs: ReadonlyArray<WithingsDocument>, key: string, fields: ReadonlyArray<string>): Reply => {
  const { state } = app
  const { params } = ex
  const selection = ymdSelection(state, params)
  if (selection === "empty") return ok({ [key]: [], more: false, offset: 0 })
  if (!("kind" in selection)) return selection
  const offset = intParam(params, "offset") ?? 0
  if (Number.isNaN(offset) || offset < 0) return invalidParams("offset")
  const selected = byChange(docs).filter((doc) =>
    selection.kind === "lastupdate" ? changedSince(state, doc, selection.since) : selection.keep(doc)
  )
  const page = pageOf(state, selected, offset)
  const dataFields = params.get("data_fields")
  return ok({ [key]: page.docs.map((doc) => pickFields(doc, dataFields, fields)), more: page.more, offset: page.offset })
}

/** /measure action=getmeas. */
const getmeas = (app: App, ex: Exchange, user: FakeWithingsUser): Reply => {
  const { state } = app
  const { params } = ex
  const [lastupdate, startdate, enddate, offset, meastype, category] = ["lastupdate", "startdate", "enddate", "offset", "meastype", "category"].map(
    (name) => intParam(params, name)
  )
  if ([lastupdate, startdate, enddate, offset, meastype, category].some((n) => Number.isNaN(n))) return invalidParams("integer expected")
  const typesRaw = params.get("meastypes")
  const types = new Set<number>(meastype === undefined ? [] : [meastype])
  if (typesRaw !== null && typesRaw !== "") {
    for (const part of typesRaw.split(",")) {
      if (!/^\d+$/.test(part.trim())) return invalidParams("meastypes")
      types.add(Number(part.trim()))
    }
  }
  const updatetime = state.clock()
  if (lastupdate !== undefined && (startdate !== undefined || enddate !== undefined)) {
    if (state.lastupdateWithRange === "invalid") return invalidParams("lastupdate and startdate")
    return ok({ updatetime, timezone: user.timezone, measuregrps: [] })
  }
  const wanted = byChange(user.measuregrps)
    .filter((group) => num(group["category"] ?? 1) === (category ?? 1))
    .filter((group) => (lastupdate === undefined ? true : changedSince(state, group, lastupdate)))
    .filter((group) => startdate === undefined || num(group["date"]) >= startdate)
    .filter((group) => enddate === undefined || num(group["date"]) <= enddate)
    .map((group) =>
      types.size === 0
        ? group
        : { ...group, measures: ((group["measures"] as Array<WithingsDocument> | undefined) ?? []).filter((m) => types.has(num(m["type"]))) }
    )
    .filter((group) => ((group["measures"] as Array<unknown> | undefined) ?? []).length > 0)
  const page = pageOf(state, wanted, offset ?? 0)
  const tail = page.more ? { more: 1, offset: page.offset } : state.getmeasLastPage === "zero" ? { more: 0, offset: 0 } : {}
  return ok({ updatetime, timezone: user.timezone, measuregrps: page.docs, ...tail })
}

/** startdate..enddate capped at 24 h, as sleep get and intraday take them. */
const dayWindow = (params: URLSearchParams): { start: number; end: number } | Reply | undefined => {
  const start = intParam(params, "startdate")
  const end = intParam(params, "enddate")
  if (Number.isNaN(start) || Number.isNaN(end)) return invalidParams("startdate / enddate")
  if (start === undefined || end === undefined) return undefined
  return { start, end: Math.min(end, start + DAY_S) }
}

/** /v2/sleep action=get: series items starting inside the (24 h capped) window. */
const sleepGet = (ex: Exchange, user: FakeWithingsUser): Reply => {
  const window = dayWindow(ex.params)
  if (window === undefined) return invalidParams("startdate and enddate are required")
  if ("status" in window) return window
  const fields = ex.params.get("data_fields")
  const series = user.sleepSeries
    .filter((item) => num(item["startdate"]) >= window.start && num(item["startdate"]) <= window.end)
    .sort((a, b) => num(a["startdate"]) - num(b["startdate"]))
    .map((item) => pickFields(item, fields, SLEEP_SERIES_FIELDS))
  return ok({ series, model: user.sleepModel })
}

/** /v2/measure action=getintradayactivity: `series` keyed by epoch seconds; no pages. */
const intraday = (ex: Exchange, user: FakeWithingsUser): Reply => {
  const given = dayWindow(ex.params)
  if (given !== undefined && "status" in given) return given
  const latest = Math.max(0, ...user.intraday.map((s) => num(s["timestamp"])))
  const window = given ?? { start: latest - DAY_S, end: latest }
  const fields = ex.params.get("data_fields")
  const keep = fields === null || fields === "" ? undefined : new Set(fields.split(",").map((f) => f.trim()))
  const series: Record<string, WithingsDocument> = {}
  for (const sample of [...user.intraday].sort((a, b) => num(a["timestamp"]) - num(b["timestamp"]))) {
    const at = num(sample["timestamp"])
    if (at < window.start || at > window.end) continue
    series[String(at)] = Object.fromEntries(
      Object.entries(sample).filter(([key]) => key !== "timestamp" && (keep === undefined || ["deviceid", "model", "model_id"].includes(key) || keep.has(key)))
    )
  }
  return ok({ series })
}

type DataHandler = (app: App, ex: Exchange, user: FakeWithingsUser) => Reply

/** path → action → handler, and the scope key each action is checked under. */
const DATA_ROUTES: Readonly<Record<string, Readonly<Record<string, { scopeKey: string; handle: DataHandler }>>>> = {
  "/measure": { getmeas: { scopeKey: "getmeas", handle: getmeas } },
  "/v2/measure": {
    getactivity: { scopeKey: "getactivity", handle: (app, ex, user) => v2List(app, ex, user.activities, "activities", ACTIVITY_FIELDS) },
    getworkouts: { scopeKey: "getworkouts", handle: (app, ex, user) => v2List(app, ex, user.workouts, "series", []) },
    getintradayactivity: { scopeKey: "getintradayactivity", handle: (_app, ex, user) => intraday(ex, user) }
  },
  "/v2/sleep": {
    get: { scopeKey: "sleep.get", handle: (_app, ex, user) => sleepGet(ex, user) },
    getsummary: { scopeKey: "sleep.getsummary", handle: (app, ex, user) => v2List(app, ex, user.sleepSummaries, "series", []) }
  },
  "/v2/user": {
    getdevice: { scopeKey: "getdevice", handle: (_app, _ex, user) => ok({ devices: user.devices }) },
    getgoals: { scopeKey: "getgoals", handle: (_app, _ex, user) => ok({ goals: user.goals }) }
  }
}

const dataRoute = (app: App, ex: Exchange, actions: Readonly<Record<string, { scopeKey: string; handle: DataHandler }>>): Reply => {
  const { state } = app
  const grant = grantOf(state, ex)
  if (grant === undefined) return failure(STATUS.invalidToken, INVALID_TOKEN)
  const route = actions[ex.params.get("action") ?? ""]
  if (route === undefined) return failure(STATUS.notImplemented, "Not implemented")
  const scope = state.actionScopes[route.scopeKey]
  if (scope !== undefined && !grant.scopes.includes(scope)) return failure(state.scopeErrorStatus, "Unauthorized: missing scope")
  const user = state.users.get(grant.userId)
  if (user === undefined) return failure(STATUS.invalidToken, INVALID_TOKEN)
  return route.handle(app, ex, user)
}

// ---------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------

/** Withings' callback URL rules: HTTPS, a domain name, port 443 (or 80), at most 255 characters. */
const urlFollowsRules = (callbackurl: string): boolean => {
  if (callbackurl.length > 255 || !URL.canParse(callbackurl)) return false
  const url = new URL(callbackurl)
  const isIp = /^[\d.]+$/.test(url.hostname) || url.hostname.startsWith("[") || url.hostname === "localhost"
  return url.protocol === "https:" && !isIp && (url.port === "" || url.port === "443" || url.port === "80")
}

/** Withings' check of a callback while subscribing: HEAD, 2xx passes. */
const checkCallback = async (app: App, callbackurl: string): Promise<boolean> => {
  let status = 0
  try {
    const response = await fetch(callbackurl, {
      method: "HEAD",
      redirect: "manual",
      signal: AbortSignal.any([app.background.signal, AbortSignal.timeout(app.state.notify.timeoutMs)])
    })
    status = response.status
    await response.arrayBuffer().catch(() => undefined)
  } catch {
    // unreachable: the check fails
  }
  const passed = status >= 200 && status < 300
  app.state.checks.push({ callbackurl, status, passed })
  return passed
}

const profileOf = (sub: FakeWithingsSubscription) => ({ appli: sub.appli, callbackurl: sub.callbackurl, expires: sub.expires, comment: sub.comment })

/** /notify: subscribe, list, get, update, revoke — per user, with the user's Bearer token. */
const notifyRoute = async (app: App, ex: Exchange): Promise<Reply> => {
  const { state } = app
  const { params } = ex
  const action = params.get("action") ?? ""
  if (!["subscribe", "list", "get", "update", "revoke"].includes(action)) return failure(STATUS.notImplemented, "Not implemented")
  const grant = grantOf(state, ex)
  if (grant === undefined) return failure(STATUS.invalidToken, INVALID_TOKEN)
  const appli = intParam(params, "appli")
  if (Number.isNaN(appli)) return invalidParams("appli")
  const callbackurl = params.get("callbackurl") ?? ""
  const mine = state.subscriptions.filter((sub) => sub.userId === grant.userId)
  const find = (url: string, category: number) => mine.find((sub) => sub.callbackurl === url && sub.appli === category)
  const allowed = (category: number): boolean => {
    if (!(category in state.appliScopes)) return false
    const scope = state.appliScopes[category]
    return scope === null || scope === undefined || grant.scopes.includes(scope)
  }
  switch (action) {
    case "list":
      return ok({ profiles: mine.filter((sub) => appli === undefined || sub.appli === appli).map(profileOf) })
    case "get": {
      const sub = find(callbackurl, appli ?? 1)
      return sub === undefined ? invalidParams("no such subscription") : ok(profileOf(sub))
    }
    case "subscribe": {
      if (callbackurl === "" || appli === undefined) return invalidParams("callbackurl and appli are required")
      if (!(appli in state.appliScopes)) return invalidParams("appli")
      if (!allowed(appli)) return failure(state.scopeErrorStatus, "Unauthorized: the user's scopes do not allow this appli")
      if (state.notify.enforceUrlRules && !urlFollowsRules(callbackurl)) return invalidParams("callbackurl")
      if (!(await checkCallback(app, callbackurl))) return invalidParams("callbackurl did not answer")
      const comment = params.get("comment") ?? ""
      const existing = find(callbackurl, appli)
      if (existing !== undefined) existing.comment = comment
      else state.subscriptions.push({ userId: grant.userId, appli, callbackurl, comment, expires: 2_147_483_647 })
      return ok({})
    }
    case "update": {
      const sub = appli === undefined ? undefined : find(callbackurl, appli)
      if (sub === undefined) return invalidParams("no such subscription")
      const newUrl = params.get("new_callbackurl")
      const newAppli = intParam(params, "new_appli")
      if (newUrl !== null && newUrl !== "") {
        if (!(await checkCallback(app, newUrl))) return invalidParams("callbackurl did not answer")
        sub.callbackurl = newUrl
      } else if (newAppli !== undefined) {
        if (Number.isNaN(newAppli) || !(newAppli in state.appliScopes)) return invalidParams("new_appli")
        if (!allowed(newAppli)) return failure(state.scopeErrorStatus, "Unauthorized: the user's scopes do not allow this appli")
        sub.appli = newAppli
      } else if (params.has("comment")) {
        sub.comment = params.get("comment") ?? ""
      } else {
        return invalidParams("new_callbackurl, new_appli or comment")
      }
      return ok({})
    }
    default: {
      // revoke: one appli, or every appli of the callback.
      const gone = mine.filter((sub) => sub.callbackurl === callbackurl && (appli === undefined || sub.appli === appli))
      if (gone.length === 0) return invalidParams("no such subscription")
      state.subscriptions = state.subscriptions.filter((sub) => !gone.includes(sub))
      return ok({})
    }
  }
}

const postNotification = async (app: App, callbackurl: string, body: string): Promise<number> => {
  try {
    const response = await fetch(callbackurl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
      redirect: "manual",
      signal: AbortSignal.any([app.background.signal, AbortSignal.timeout(app.state.notify.timeoutMs)])
    })
    await response.arrayBuffer().catch(() => undefined)
    return response.status
  } catch {
    return 0
  }
}

const deliver = async (app: App, sub: FakeWithingsSubscription, body: string): Promise<number> => {
  const { state, background } = app
  for (let attempt = 1; ; attempt++) {
    const status = await postNotification(app, sub.callbackurl, body)
    state.deliveries.push({ userId: sub.userId, appli: sub.appli, callbackurl: sub.callbackurl, body, attempt, status, at: Date.now() })
    if ((status >= 200 && status < 400) || attempt >= state.notify.tries || background.signal.aborted) return status
    await background.sleep(state.notify.retryDelayMs(attempt))
  }
}

// ---------------------------------------------------------------------------
// Rate limit, routing, injection
// ---------------------------------------------------------------------------

/** App-wide sliding window; true when this request is over the limit. */
const overRateLimit = (app: App, action: string): boolean => {
  const { state, rateTimes } = app
  state.counters.requests++
  state.counters.byAction.set(action, (state.counters.byAction.get(action) ?? 0) + 1)
  const { perWindow, windowMs } = state.rateLimit
  const now = Date.now()
  while (rateTimes.length > 0 && (rateTimes[0] ?? 0) <= now - windowMs) rateTimes.shift()
  if (perWindow !== undefined && rateTimes.length >= perWindow) {
    state.counters.rateLimited++
    return true
  }
  rateTimes.push(now)
  return false
}

const route = async (app: App, ex: Exchange): Promise<Reply> => {
  const path = ex.url.pathname
  if (path === "/oauth2_user/authorize2" && ex.method === "GET") return authorize(app, ex)
  const dataActions = DATA_ROUTES[path]
  const known = dataActions !== undefined || path === "/v2/oauth2" || path === "/v2/signature" || path === "/notify"
  if (!known) return { status: 404, headers: { "content-type": "text/plain" }, body: "Not Found" }
  if (overRateLimit(app, `${path}:${ex.params.get("action") ?? ""}`)) return failure(STATUS.tooManyRequests, "Too many requests")
  if (path === "/v2/oauth2") return oauth2Route(app, ex)
  if (path === "/v2/signature") return signatureRoute(app, ex)
  if (path === "/notify") return notifyRoute(app, ex)
  return dataRoute(app, ex, dataActions ?? {})
}

interface ActiveRule {
  readonly rule: InjectRule
  remaining: number
}

const takeRule = (rules: Array<ActiveRule>, ex: Exchange): InjectRule | undefined => {
  const index = rules.findIndex(({ rule }) => {
    const methodMatches = rule.method === undefined || rule.method.toUpperCase() === ex.method
    const pathMatches = typeof rule.path === "string" ? rule.path === ex.url.pathname : rule.path.test(ex.url.pathname)
    const actionMatches = rule.action === undefined || rule.action === ex.params.get("action")
    const paramsMatch = Object.entries(rule.params ?? {}).every(([name, value]) => ex.params.get(name) === value)
    return methodMatches && pathMatches && actionMatches && paramsMatch
  })
  const active = rules[index]
  if (active === undefined) return undefined
  if (--active.remaining <= 0) rules.splice(index, 1)
  return active.rule
}

const injectedReply = (rule: InjectRule): Reply | undefined => {
  if (rule.httpStatus !== undefined) return { status: rule.httpStatus, headers: { "content-type": "text/plain" }, body: rule.body ?? "" }
  if (rule.withingsStatus !== undefined) return failure(rule.withingsStatus, rule.error ?? "An error occurred")
  return undefined
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

export const startFakeWithings = async (options: FakeWithingsOptions = {}): Promise<FakeWithings> => {
  const clientId = options.clientId ?? randomHex(16)
  const clientSecret = options.clientSecret ?? randomHex(32)
  const state = emptyState(options)
  const app: App = { state, clientId, clientSecret, background: makeBackground(), rateTimes: [] }
  const requests: Array<RecordedRequest> = []
  const rules: Array<ActiveRule> = []
  let url = ""

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const requestUrl = new URL(req.url ?? "/", url)
    const body = await readBody(req)
    const params = new URLSearchParams(requestUrl.searchParams)
    if ((req.headers["content-type"] ?? "").includes("application/x-www-form-urlencoded")) {
      for (const [key, value] of new URLSearchParams(body)) params.set(key, value)
    }
    const ex: Exchange = { method: req.method ?? "GET", url: requestUrl, headers: req.headers, params }
    requests.push({
      method: ex.method,
      path: requestUrl.pathname,
      params: Object.fromEntries(params),
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v]))
    })
    const userId = liveToken(state, ex)?.grant.userId
    if (userId !== undefined) {
      const now = (state.inFlight.get(userId) ?? 0) + 1
      state.inFlight.set(userId, now)
      state.maxInFlight.set(userId, Math.max(now, state.maxInFlight.get(userId) ?? 0))
    }
    try {
      const rule = takeRule(rules, ex)
      if (rule?.delayMs !== undefined) await sleep(rule.delayMs)
      if (rule?.hold !== undefined) await rule.hold.catch(() => undefined)
      if (rule?.handled) await route(app, ex)
      send(res, (rule && injectedReply(rule)) ?? (await route(app, ex)))
    } finally {
      if (userId !== undefined) state.inFlight.set(userId, (state.inFlight.get(userId) ?? 1) - 1)
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, { status: 500, headers: { "content-type": "text/plain" }, body: `fake-withings: ${String(error)}` })
      else res.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("fake-withings: no TCP address")
  url = `http://127.0.0.1:${address.port}`

  const addUser: FakeWithings["addUser"] = (userId, init = {}) => {
    const user = newUser(userId, init)
    state.users.set(userId, user)
    return user
  }
  const userOf = (userId: string) => state.users.get(userId) ?? addUser(userId)

  const add: FakeWithings["add"] = (userId, resource, doc) => {
    const now = state.clock()
    const created = resource === "measuregrps" || resource === "sleepSummaries" ? { created: now } : {}
    const stamped = isStamped(resource) ? { ...doc, ...created, modified: now } : { ...doc }
    userOf(userId)[resource].push(stamped)
    return stamped
  }

  return {
    url,
    clientId,
    clientSecret,
    state,
    requests,
    inject: (rule) => void rules.push({ rule, remaining: rule.times ?? 1 }),
    clearInjected: () => void rules.splice(0),
    addUser,
    connect: (userId, scopes = SCOPES) => {
      userOf(userId)
      return issueTokens(state, newGrant(state, userId, scopes), undefined, true) as TokenBody & { userid: string | number }
    },
    seed: (userId, parts = Object.keys(FIXTURES) as Array<SeedPart>, options = {}) => {
      const user = userOf(userId)
      const days = options.shiftDays ?? 0
      for (const part of parts) {
        if (part === "goals") {
          user.goals = (readFixture(FIXTURES.goals[0]) as { body: { goals: WithingsDocument } }).body.goals
          continue
        }
        const key = part === "measuregrps" ? "measuregrps" : part === "activities" ? "activities" : part === "devices" ? "devices" : "series"
        const touch = options.touched === true && isStamped(part as Resource)
        for (const file of FIXTURES[part]) {
          user[part].push(...fixtureList(file, key).map((doc) => shiftDays(doc, days)).map((doc) => (touch ? { ...doc, modified: state.clock() } : doc)))
        }
      }
    },
    add,
    revise: (userId, resource, doc) => {
      const list = userOf(userId)[resource]
      const key = keyOf(resource, doc)
      const index = list.findIndex((candidate) => keyOf(resource, candidate) === key)
      if (index === -1) return add(userId, resource, doc)
      const revised = isStamped(resource) ? { ...doc, modified: state.clock() } : { ...doc }
      list[index] = revised
      return revised
    },
    remove: (userId, resource, key) => {
      const user = userOf(userId)
      const before = user[resource].length
      user[resource] = user[resource].filter((doc) => keyOf(resource, doc) !== key)
      return user[resource].length < before
    },
    notify: (userId, appli, startdate, enddate, extra = {}) => {
      const fields: Record<string, string> = { userid: userId, appli: String(appli) }
      if (startdate !== undefined) fields["startdate"] = String(startdate)
      if (enddate !== undefined) fields["enddate"] = String(enddate)
      const body = new URLSearchParams({ ...fields, ...extra }).toString()
      const targets = state.subscriptions.filter((sub) => sub.userId === userId && sub.appli === appli)
      return Promise.all(targets.map((sub) => deliver(app, sub, body)))
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        app.background.cancel()
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      })
  }
}
