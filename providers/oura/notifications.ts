/**
 * What Oura sends and what the plugin stores. Two body shapes reach the inbox:
 * - a notification, exactly as Oura posted it: `{event_type, data_type, object_id,
 *   event_time, user_id}`, naming one changed document (a pointer to fetch), or for
 *   `delete` one the user deleted (a deletion of that id: the document is gone, nothing to fetch);
 * - a fetched page: `{"<data_type>": [page]}` with `page = {data_type, user_id, data: [documents]}`,
 *   Oura's own list envelope plus the user it was fetched for (Oura's documents do not name
 *   their user, and today's core stores what a pull returns as `{key: records}`).
 * Validation here is structural; fields are checked by the normalizers, off the request path.
 */
import { constantTimeEquals } from "@wearflow/core/crypto"
import type { NotificationItem } from "@wearflow/core/provider"
import { Either, Redacted } from "effect"
import { createHmac } from "node:crypto"
import { EVENT_TYPES, type EventType } from "./config.ts"
import { normalizers, storedOnly } from "./normalize.ts"

/**
 * The inbox kinds the plugin commits. Today's core knows only `ping` (items are pulled) and
 * `push` (items are normalized); the one place to rename them when kinds become the provider's.
 */
export const NOTIFICATION_KIND = "notification" as const
export const PAGE_KIND = "page" as const

export interface OuraNotification {
  readonly event_type: EventType
  readonly data_type: string
  readonly object_id: string
  readonly event_time: string
  readonly user_id: string
}

/** A fetched page of one user's documents of one data type. */
export interface FetchedPage {
  readonly data_type: string
  readonly user_id: string
  readonly data: ReadonlyArray<unknown>
}

/** The data types the plugin fetches and keeps: those with a normalizer, and those kept raw. */
const knownTypes: ReadonlySet<string> = new Set<string>([...Object.keys(normalizers), ...storedOnly])
export const isKnownDataType = (type: string) => knownTypes.has(type)

/** Time series without documents: a whole fetched batch is one item. */
const batchTypes: ReadonlySet<string> = new Set(["heartrate"])

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Ids and names are short printable text: no control characters (Postgres refuses NUL), no lone surrogates. */
const isId = (u: unknown): u is string => typeof u === "string" && u.length > 0 && u.length <= 256 && u.isWellFormed() && !/[\u0000-\u001f\u007f]/.test(u)

const isEventType = (u: unknown): u is EventType => typeof u === "string" && (EVENT_TYPES as ReadonlyArray<string>).includes(u)

/** Oura's signature: upper-case hex HMAC-SHA256, keyed by the client secret, over the timestamp and the raw body. */
export const signatureOf = (secret: Redacted.Redacted<string>, timestamp: string, body: Uint8Array): string =>
  createHmac("sha256", Redacted.value(secret)).update(timestamp, "utf8").update(body).digest("hex").toUpperCase()

/** Whether `signature` (any case) signs `timestamp` + `body`; constant time. */
export const signatureMatches = (secret: Redacted.Redacted<string>, timestamp: string, body: Uint8Array, signature: string): boolean =>
  constantTimeEquals(signature.toUpperCase(), signatureOf(secret, timestamp, body))

/** The largest notification taken: Oura's are about 200 bytes. */
export const MAX_NOTIFICATION_BYTES = 16 * 1024

/** A notification body's structure checked; the message never quotes the body. */
export const decodeNotification = (text: string): Either.Either<OuraNotification, string> => {
  const parsed = Either.try(() => JSON.parse(text) as unknown)
  if (Either.isLeft(parsed)) return Either.left(`body is not valid JSON (${text.length} characters received)`)
  const body = parsed.right
  if (!isRecord(body)) return Either.left("body must be a JSON object")
  if (!isEventType(body.event_type)) return Either.left("event_type must be create, update or delete")
  for (const field of ["data_type", "object_id", "user_id"] as const) {
    if (!isId(body[field])) return Either.left(`${field} must be a non-empty id`)
  }
  if (typeof body.event_time !== "string" || body.event_time.length > 64) return Either.left("event_time must be a date-time")
  return Either.right(body as unknown as OuraNotification)
}

/**
 * A stored notification as one item keyed by its data type: a pointer to the changed document,
 * or for `delete` the deletion of its id (every record stored from the document goes). None for
 * data types the plugin does not keep, nor for time series (they have no documents).
 */
const notificationItems = (body: unknown): ReadonlyArray<NotificationItem> => {
  if (!isRecord(body) || !isEventType(body.event_type) || !isId(body.data_type) || !isId(body.object_id) || !isId(body.user_id)) return []
  if (!isKnownDataType(body.data_type) || batchTypes.has(body.data_type)) return []
  const user = { _tag: "UserId", id: body.user_id } as const
  return body.event_type === "delete"
    ? [{ key: body.data_type, index: 0, user, carries: "deletion", deleted: body.object_id, raw: body }]
    : [{ key: body.data_type, index: 0, user, carries: "pointer", raw: body }]
}

/** A sleep period the user deleted comes back from Oura as a document of type `deleted`. */
const deletedDocumentId = (dataType: string, document: Record<string, unknown>): string | undefined =>
  dataType === "sleep" && document.type === "deleted" && isId(document.id) ? document.id : undefined

const isPage = (u: unknown): u is FetchedPage => isRecord(u) && isId(u.data_type) && isId(u.user_id) && Array.isArray(u.data)

/** The pages of a stored fetched body: `{"<data_type>": [pages]}`, or a bare page. */
const pagesOf = (body: unknown): ReadonlyArray<FetchedPage> => {
  if (isPage(body)) return [body]
  if (!isRecord(body)) return []
  return Object.entries(body).flatMap(([key, pages]) => (Array.isArray(pages) ? pages.filter((page): page is FetchedPage => isPage(page) && page.data_type === key) : []))
}

/**
 * A stored fetched body as items: one per document (a time-series batch is one), addressed to
 * the page's user; a deleted sleep period is the deletion of its id.
 */
const pageItems = (body: unknown): ReadonlyArray<NotificationItem> => {
  const items: Array<NotificationItem> = []
  for (const page of pagesOf(body)) {
    if (!isKnownDataType(page.data_type)) continue
    const user = { _tag: "UserId", id: page.user_id } as const
    if (batchTypes.has(page.data_type)) {
      items.push({ key: page.data_type, index: items.length, user, carries: "record", raw: { data: page.data } })
      continue
    }
    for (const document of page.data) {
      if (!isRecord(document)) continue
      const deleted = deletedDocumentId(page.data_type, document)
      items.push(
        deleted === undefined
          ? { key: page.data_type, index: items.length, user, carries: "record", raw: document }
          : { key: page.data_type, index: items.length, user, carries: "deletion", deleted, raw: document }
      )
    }
  }
  return items
}

/** The items of a stored body: a notification's pointer or deletion, or a fetched page's documents. */
export const itemsOf = (kind: string, body: unknown): ReadonlyArray<NotificationItem> =>
  kind === NOTIFICATION_KIND ? notificationItems(body) : kind === PAGE_KIND ? pageItems(body) : []

/** A fetched page as the records a pull returns (stored as `{"<data_type>": [page]}`). */
export const pageOf = (dataType: string, userId: string, documents: ReadonlyArray<unknown>): FetchedPage => ({
  data_type: dataType,
  user_id: userId,
  data: documents
})
