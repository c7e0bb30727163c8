/**
 * Garmin notification bodies: `{"<summaryKey>": [items]}`, one body possibly carrying several
 * keys and many users. Validation here is the cheap, structural check done before the 200;
 * field-level validation happens in the normalizers, off the request path.
 */
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

export type NotificationKind = "push" | "ping"

export interface ItemProblem {
  readonly key: string
  readonly index: number
  readonly message: string
}

export interface NotificationSummary {
  readonly accepted: Record<string, number>
  readonly ignoredKeys: ReadonlyArray<string>
  readonly errors: ReadonlyArray<ItemProblem>
  readonly itemCount: number
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
const problemOf = (kind: NotificationKind, key: string, item: unknown): string | undefined => {
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

/** Structural check of a parsed body: counts per key, unknown keys, per-item problems. */
export const inspect = (kind: NotificationKind, body: unknown): Either.Either<NotificationSummary, string> => {
  if (!isRecord(body)) return Either.left("body must be a JSON object whose keys are Garmin summary types")
  const accepted: Record<string, number> = {}
  const ignoredKeys: Array<string> = []
  const errors: Array<ItemProblem> = []
  let itemCount = 0
  for (const [key, value] of Object.entries(body)) {
    if (!knownKeys.has(key)) {
      ignoredKeys.push(key)
      continue
    }
    if (!Array.isArray(value)) {
      errors.push({ key, index: -1, message: `${key} must be a list` })
      continue
    }
    accepted[key] = value.length
    itemCount += value.length
    value.forEach((item, index) => {
      const message = problemOf(kind, key, item)
      if (message) errors.push({ key, index, message })
    })
  }
  return Either.right({ accepted, ignoredKeys, errors, itemCount })
}

/** Garmin names users by `userId` (OAuth 2.0 era) or, before migration, `userAccessToken`. */
const userRefOf = (item: Record<string, unknown>): UserRef | undefined =>
  isId(item.userId) ? { _tag: "UserId", id: item.userId } : isId(item.userAccessToken) ? { _tag: "AccessToken", token: item.userAccessToken } : undefined

/** The items of a stored body (PUSH or PING), addressed to Garmin users, for the ingest worker. */
export const itemsOf = (kind: NotificationKind, body: unknown): ReadonlyArray<NotificationItem> => {
  if (!isRecord(body)) return []
  const items: Array<NotificationItem> = []
  for (const [key, value] of Object.entries(body)) {
    if (!knownKeys.has(key) || !Array.isArray(value)) continue
    value.forEach((raw, index) => {
      if (problemOf(kind, key, raw) !== undefined) return
      items.push({ key, index, user: userRefOf(raw as Record<string, unknown>), raw })
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
