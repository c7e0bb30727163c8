/**
 * Garmin notification bodies: `{"<summaryKey>": [items]}`, one body possibly carrying several
 * keys and many users. Before the 200 only the body is checked (JSON, an object); each item's
 * structure is checked by the ingest worker (`problemsOf`, `itemsOf`), its fields by the
 * normalizers, all off the request path.
 */
import { aliasDigest } from "@wearflow/core/crypto"
import type { BodyItems } from "@wearflow/core/pipeline/inbox"
import { parseSpan, scanObject } from "@wearflow/core/pipeline/json-scan"
import type { LifecycleChange, NotificationItem, UserRef } from "@wearflow/core/provider"
import { Either } from "effect"
import { isActivityId } from "./normalize/shared.ts"

/** Every key Garmin's Health and Activity APIs send, in PUSH or PING mode. */
export const dataKeys = [
  "dailies",
  "epochs",
  "sleeps",
  "bodyComps",
  "stressDetails",
  "userMetrics",
  "pulseox",
  "allDayRespiration",
  "healthSnapshot",
  "hrv",
  "bloodPressures",
  "skinTemp",
  "activities",
  "activityDetails",
  "manuallyUpdatedActivities",
  "activityFiles",
  "moveIQActivities",
  "mct"
] as const
export const lifecycleKeys = ["deregistrations", "userPermissionsChange"] as const
const knownKeys: ReadonlySet<string> = new Set<string>([...dataKeys, ...lifecycleKeys])

/**
 * Garmin's two notification kinds, as bodies are committed to the inbox: a PUSH body carries
 * the records, a PING body carries callback URLs to fetch them from.
 */
export type NotificationKind = "push" | "ping"

export interface ItemProblem {
  readonly key: string
  readonly index: number
  readonly message: string
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)
const isText = (u: unknown): u is string => typeof u === "string" && u.length > 0

/** Ids are short printable text: no control characters (Postgres refuses NUL), no lone surrogates. */
const isId = (u: unknown): u is string => isText(u) && u.length <= 256 && u.isWellFormed() && !/[\u0000-\u001f\u007f]/.test(u)

const isLifecycleKey = (key: string) => (lifecycleKeys as ReadonlyArray<string>).includes(key)

/** Activity records: named by summaryId or activityId (a number, or a numeric string). */
const activityKeys: ReadonlySet<string> = new Set(["activities", "manuallyUpdatedActivities", "activityDetails"])

/** An activityId the normalizers read, when present; activityDetails may carry one in `summary` too. */
const activityIdProblem = (item: Record<string, unknown>): string | undefined => {
  if (item.activityId != null && !isActivityId(item.activityId)) return "activityId is not a valid id"
  const summary = isRecord(item.summary) ? item.summary : undefined
  if (summary?.activityId != null && !isActivityId(summary.activityId)) return "summary.activityId is not a valid id"
  return undefined
}

const hasActivityId = (item: Record<string, unknown>) =>
  isActivityId(item.activityId) || (isRecord(item.summary) && isActivityId(item.summary.activityId))

/**
 * Why one item cannot be processed, or undefined when it is structurally fine. The ids it
 * accepts are the ones the normalizers key records by, so an item accepted here is stored by
 * the worker (or fails there on a field, never on its identity).
 */
const problemOf = (kind: string, key: string, item: unknown): string | undefined => {
  if (!isRecord(item)) return "item is not an object"
  if (item.userId === undefined && item.userAccessToken === undefined) return "item has neither userId nor userAccessToken"
  if (item.userId !== undefined && !isId(item.userId)) return "userId is not a valid id"
  if (item.userAccessToken !== undefined && !isId(item.userAccessToken)) return "userAccessToken is not a valid token"
  // Lifecycle items need only their user, on either URL: Garmin sends no summaryId with
  // some of them, and no callbackURL with any.
  if (isLifecycleKey(key)) return undefined
  // A PING item (and every activityFiles item) carries a URL to pull instead of the data.
  if (kind === "ping" || key === "activityFiles") return isText(item.callbackURL) ? undefined : "callbackURL is missing"
  if (activityKeys.has(key)) {
    const problem = activityIdProblem(item)
    if (problem !== undefined) return problem
    if (item.summaryId == null) return hasActivityId(item) ? undefined : "summaryId and activityId are missing"
  }
  if (item.summaryId === undefined) return "summaryId is missing"
  return isId(item.summaryId) ? undefined : "summaryId is not a valid id"
}

/** At most this many ignored keys are listed (and logged); the rest are counted. */
export const LISTED = 100
/** Ignored keys are listed cut to this many characters. */
const LISTED_KEY_LENGTH = 64

/** What a body's text says, as far as the answer and storing it need. */
export interface InspectedBody {
  /** Items per known key. */
  readonly accepted: Record<string, number>
  /** Top-level keys Wearflow does not know: the first LISTED, each cut short. */
  readonly ignoredKeys: ReadonlyArray<string>
  readonly ignoredKeysOmitted: number
  readonly itemCount: number
  /**
   * The body's items by key, as offsets into its text: only for a body stored in parts or
   * with items redacted (both need them), else undefined.
   */
  readonly items: ReadonlyArray<BodyItems> | undefined
  /** The text to store instead of an item's own (by its start offset): OAuth 1.0a tokens replaced by their hash. */
  readonly redacted: ReadonlyMap<number, string> | undefined
}

/** When the inbox stores a body in parts (InboxSettings): then its items' offsets are needed. */
export interface PartLimits {
  readonly partBytes: number
  readonly partItems: number
}

const invalidJson = (text: string) => `body is not valid JSON (${text.length} characters received)`
const notObject = "body must be a JSON object whose keys are Garmin summary types"

/**
 * What the request path checks before the 200: the text is a JSON object, and where its
 * items lie when the inbox needs that. Each item is checked by the ingest worker
 * (`problemsOf`), which records the problems on the inbox row: Garmin never reads them.
 *
 * A body the inbox stores whole is parsed whole (JSON.parse is the cheapest check there is);
 * a body over `partBytes` is read item by item, never as one object graph, so a 100 MB body
 * stays near 100 MB; so is a body with OAuth 1.0a tokens, which are replaced in its text.
 */
export const inspect = (text: string, limits: PartLimits): Either.Either<InspectedBody, string> => {
  if (text.length > limits.partBytes) return outline(text)
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    // (JSON.parse's own messages quote the input, so none are passed on.)
    return Either.left(invalidJson(text))
  }
  if (!isRecord(body)) return Either.left(notObject)
  const accepted: Record<string, number> = {}
  const ignoredKeys: Array<string> = []
  let ignoredKeysOmitted = 0
  let itemCount = 0
  let tokens = false
  for (const key in body) {
    const value = body[key]
    if (!knownKeys.has(key)) {
      if (ignoredKeys.length < LISTED) ignoredKeys.push(listedKey(key))
      else ignoredKeysOmitted++
    } else if (Array.isArray(value)) {
      accepted[key] = value.length
      itemCount += value.length
      if (!tokens) tokens = value.some((item) => isRecord(item) && typeof item.userAccessToken === "string")
    }
  }
  return tokens || itemCount > limits.partItems
    ? outline(text)
    : Either.right({ accepted, ignoredKeys, ignoredKeysOmitted, itemCount, items: undefined, redacted: undefined })
}

const listedKey = (key: string) => (key.length > LISTED_KEY_LENGTH ? `${key.slice(0, LISTED_KEY_LENGTH)}…` : key)

/** `inspect` reading the text item by item: the items' offsets, and the text of each redacted one. */
const outline = (text: string): Either.Either<InspectedBody, string> => {
  const scanned = scanObject(text)
  if (Either.isLeft(scanned)) {
    // Only a body that is not an object at all can be valid JSON here.
    if (!/^\s*\{/.test(text.slice(0, 64)) && parseSpan(text, 0, text.length) !== undefined) return Either.left(notObject)
    return Either.left(invalidJson(text))
  }
  const accepted: Record<string, number> = {}
  const ignoredKeys: Array<string> = []
  const items: Array<BodyItems> = []
  const redacted = new Map<number, string>()
  let ignoredKeysOmitted = 0
  let itemCount = 0
  // JSON.parse keeps the last of repeated keys; so does this.
  const entries = new Map(scanned.right.map((entry) => [entry.key, entry]))
  for (const entry of scanned.right) {
    if (entries.get(entry.key) !== entry) continue
    const { key } = entry
    if (!knownKeys.has(key) || entry.items === undefined) {
      if (!knownKeys.has(key)) {
        if (ignoredKeys.length < LISTED) ignoredKeys.push(listedKey(key))
        else ignoredKeysOmitted++
      }
      if (parseSpan(text, entry.start, entry.end) === undefined) return Either.left(invalidJson(text))
      continue
    }
    const spans = entry.items
    accepted[key] = spans.length / 2
    itemCount += spans.length / 2
    items.push({ key, spans })
    for (let index = 0; index < spans.length / 2; index++) {
      const start = spans[2 * index]!
      const parsed = parseSpan(text, start, spans[2 * index + 1]!)
      if (parsed === undefined) return Either.left(invalidJson(text))
      const stored = withoutToken(parsed.value)
      if (stored !== undefined) redacted.set(start, stored)
    }
  }
  return Either.right({ accepted, ignoredKeys, ignoredKeysOmitted, itemCount, items, redacted })
}

/**
 * Why items of a stored body cannot be processed, in body order: a known key whose value is
 * not a list (index -1), and each item `problemOf` refuses. The ingest worker records them on
 * the inbox row's outcome; the items themselves are left out by `itemsOf`.
 */
export const problemsOf = (kind: string, body: unknown): ReadonlyArray<ItemProblem> => {
  if (!isRecord(body)) return []
  const problems: Array<ItemProblem> = []
  for (const [key, value] of Object.entries(body)) {
    if (!knownKeys.has(key)) continue
    if (!Array.isArray(value)) {
      problems.push({ key, index: -1, message: `${key} must be a list` })
      continue
    }
    value.forEach((raw, index) => {
      const message = problemOf(kind, key, asReceived(raw))
      if (message !== undefined) problems.push({ key, index, message })
    })
  }
  return problems
}

/**
 * An OAuth 1.0a item as stored: its `userAccessToken` (a credential) replaced by the token's
 * hash, `userAccessTokenHash`, which routes it as well (connections keep the same hash).
 * Undefined for items without a token.
 */
const withoutToken = (item: unknown): string | undefined => {
  if (!isRecord(item) || typeof item.userAccessToken !== "string") return undefined
  return JSON.stringify(redactToken(item))
}

/** `item` with its OAuth 1.0a token replaced by the token's hash (same place in the record). */
export const redactToken = (item: Record<string, unknown>): Record<string, unknown> =>
  typeof item.userAccessToken !== "string"
    ? item
    : Object.fromEntries(
      Object.entries(item).map(([k, v]) => (k === "userAccessToken" ? [TOKEN_HASH, aliasDigest(v as string)] : [k, v]))
    )

const TOKEN_HASH = "userAccessTokenHash"
const isDigest = (u: unknown): u is string => typeof u === "string" && /^[0-9a-f]{64}$/.test(u)

/** A stored item as it was received, as far as the checks go: its token's hash stands in for the token. */
const asReceived = (item: unknown): unknown =>
  isRecord(item) && item[TOKEN_HASH] !== undefined && item.userAccessToken === undefined ? { ...item, userAccessToken: item[TOKEN_HASH] } : item

/**
 * Garmin names users by `userId` (OAuth 2.0 era) or, before migration, `userAccessToken`: the
 * OAuth 1.0a token is the connection's alias (state.ts), and stored bodies keep its digest.
 */
const userRefOf = (item: Record<string, unknown>): UserRef | undefined =>
  isId(item.userId)
    ? { _tag: "UserId", id: item.userId }
    : isDigest(item[TOKEN_HASH])
    ? { _tag: "Alias", digest: item[TOKEN_HASH] }
    : isId(item.userAccessToken)
    ? { _tag: "Alias", digest: aliasDigest(item.userAccessToken) }
    : undefined

/**
 * The items of a stored body (PUSH or PING), addressed to Garmin users, for the ingest worker:
 * a PING body's data items point at their data (callbackURL); everything else is the record.
 */
export const itemsOf = (kind: string, body: unknown): ReadonlyArray<NotificationItem> => {
  if (!isRecord(body)) return []
  const items: Array<NotificationItem> = []
  for (const [key, value] of Object.entries(body)) {
    if (!knownKeys.has(key) || !Array.isArray(value)) continue
    const carries = kind === "ping" && !isLifecycleKey(key) ? "pointer" : "record"
    value.forEach((raw, index) => {
      if (problemOf(kind, key, asReceived(raw)) !== undefined) return
      items.push({ key, index, user: userRefOf(raw as Record<string, unknown>), carries, raw })
    })
  }
  return items
}

/** What a lifecycle item says: the user deregistered, or changed the permissions they grant. */
export const lifecycleOf = (item: NotificationItem): LifecycleChange | undefined => {
  if (item.key === "deregistrations") return { _tag: "Deregistered" }
  if (item.key !== "userPermissionsChange") return undefined
  const permissions = (item.raw as { permissions?: unknown }).permissions
  return { _tag: "PermissionsChanged", permissions: Array.isArray(permissions) ? permissions.filter((p): p is string => typeof p === "string") : [] }
}
