/**
 * Withings' notification as the plugin stores it, and what it means. Withings POSTs a
 * form (`userid`, `appli`, `startdate`+`enddate` or `date`, `deviceid`, and for appli 46
 * `action`); the route decodes it into {@link StoredNotification} and commits that JSON to the
 * inbox as kind {@link NOTIFY_KIND}. A notification carries no data: it names a user whose
 * data changed (their poll runs at once), or for appli 46 a user who unlinked or deleted
 * their account (the connection is deregistered). Messages never quote the body.
 */
import type { LifecycleChange, NotificationItem } from "@wearflow/core/provider"
import { Either } from "effect"
import { APPLI_SCOPES } from "./config.ts"

/** The inbox kind of a stored notification. */
export const NOTIFY_KIND = "notify"

/** The item key of a stored notification (no normalizer: it carries no record). */
export const NOTIFY_KEY = "notify"

/** The user-events category: its `action` says unlink, delete or update. */
export const USER_EVENTS_APPLI = 46

/** The largest notification body taken: Withings' are about 100 bytes. */
export const MAX_NOTIFICATION_BYTES = 4 * 1024

/** A notification's fields as stored (unknown fields dropped). */
export interface StoredNotification {
  readonly userid: string
  readonly appli: number
  /** Unix seconds: the changed data's range (data categories). */
  readonly startdate?: number
  readonly enddate?: number
  /** An event's date: YYYY-MM-DD or unix seconds, as Withings sent it. */
  readonly date?: string
  readonly deviceid?: string
  /** Appli 46: delete, unlink or update. */
  readonly action?: string
}

/** Withings user ids are numbers; 20 digits covers any 64-bit id. */
const USERID = /^[0-9]{1,20}$/
/** Appli codes are small integers. */
const APPLI = /^[0-9]{1,4}$/
const UNIX_SECONDS = /^[0-9]{1,12}$/
const DATE = /^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,12})$/
/** Device ids are hex hashes; letters, digits, - and _ bounded. */
const DEVICEID = /^[A-Za-z0-9_-]{1,128}$/
const ACTION = /^[a-z_]{1,32}$/

const FIELDS = ["userid", "appli", "startdate", "enddate", "date", "deviceid", "action"] as const

/** Whether the plugin knows the appli code (a code from the wire may be anything else). */
export const isKnownAppli = (appli: number): boolean => Object.hasOwn(APPLI_SCOPES, appli)

/**
 * The form Withings posted, decoded and checked; the message says which field is wrong,
 * never its value. Empty optional fields count as absent; a known field given twice is refused.
 */
export const decodeNotification = (form: string): Either.Either<StoredNotification, string> => {
  let params: URLSearchParams
  try {
    params = new URLSearchParams(form)
  } catch {
    return Either.left("body is not a form")
  }
  const values: Partial<Record<(typeof FIELDS)[number], string>> = {}
  for (const field of FIELDS) {
    const all = params.getAll(field)
    if (all.length > 1) return Either.left(`${field} is given more than once`)
    const [value] = all
    if (value !== undefined && value !== "") values[field] = value
  }
  const { action, appli, date, deviceid, enddate, startdate, userid } = values
  if (userid === undefined || !USERID.test(userid)) return Either.left("userid must be a Withings user id (digits)")
  if (appli === undefined || !APPLI.test(appli)) return Either.left("appli must be a notification category (an integer)")
  if (startdate !== undefined && !UNIX_SECONDS.test(startdate)) return Either.left("startdate must be unix seconds")
  if (enddate !== undefined && !UNIX_SECONDS.test(enddate)) return Either.left("enddate must be unix seconds")
  if (date !== undefined && !DATE.test(date)) return Either.left("date must be YYYY-MM-DD or unix seconds")
  if (deviceid !== undefined && !DEVICEID.test(deviceid)) return Either.left("deviceid must be a device id")
  if (action !== undefined && !ACTION.test(action)) return Either.left("action must be a word")
  return Either.right({
    userid,
    appli: Number(appli),
    ...(startdate === undefined ? {} : { startdate: Number(startdate) }),
    ...(enddate === undefined ? {} : { enddate: Number(enddate) }),
    ...(date === undefined ? {} : { date }),
    ...(deviceid === undefined ? {} : { deviceid }),
    ...(action === undefined ? {} : { action })
  })
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A stored body read back: the fields decodeNotification keeps, checked again (stored bodies outlive code). */
const storedOf = (body: unknown): StoredNotification | undefined => {
  if (!isRecord(body)) return undefined
  const { action, appli, userid } = body
  if (typeof userid !== "string" || !USERID.test(userid)) return undefined
  if (typeof appli !== "number" || !Number.isInteger(appli) || appli < 0) return undefined
  if (action !== undefined && (typeof action !== "string" || !ACTION.test(action))) return undefined
  return body as unknown as StoredNotification
}

/** A stored notification as its one item, addressed to its Withings user; none when malformed. */
export const notificationItemsOf = (body: unknown): ReadonlyArray<NotificationItem> => {
  const notification = storedOf(body)
  if (notification === undefined) return []
  return [{ key: NOTIFY_KEY, index: 0, user: { _tag: "UserId", id: notification.userid }, carries: "record", raw: notification }]
}

/**
 * What a notification means for the connection: the user unlinked the application or deleted
 * their account (appli 46, action unlink|delete) ends it; anything else says the user's data
 * may have changed, so their poll runs now. Items that are not notifications mean nothing here.
 */
export const lifecycleOf = (item: NotificationItem): LifecycleChange | undefined => {
  if (item.key !== NOTIFY_KEY) return undefined
  const notification = storedOf(item.raw)
  if (notification?.appli === USER_EVENTS_APPLI && (notification.action === "unlink" || notification.action === "delete")) return { _tag: "Deregistered" }
  return { _tag: "DataChanged" }
}
