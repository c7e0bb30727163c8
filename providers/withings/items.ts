/**
 * The pages a poll or a backfill stores, split into items. Each page kind is one Withings
 * answer, kept as the plugin committed it (paging.ts builds the bodies):
 *
 * - `getmeas`     `{userid, timezone, measuregrps}` → a `measuregrp` item per group, the
 *                 answer's timezone copied on (a group has none of its own);
 * - `getactivity` `{userid, activities}` → an `activity` item per day and source;
 * - `getworkouts` `{userid, series}` → a `workout` item per workout;
 * - `getsummary`  `{userid, series}` → a `sleep_summary` item per night;
 * - `intraday`    `{userid, startdate, enddate, timezone, series}` → one `intraday` item (a whole UTC day);
 * - `sleep`       `{userid, startdate, enddate, timezone, series}` → one `sleep_series` item (a whole UTC day);
 * - `getdevice`   `{userid, devices}` → a `device` item per device (no normalizer: stored raw).
 *
 * Total on any body: what is not an object is left out, never an exception.
 */
import type { NotificationItem } from "@wearflow/core/provider"

/** The kinds of page the plugin commits to the inbox. */
export const PAGE_KINDS = ["getmeas", "getactivity", "getworkouts", "getsummary", "intraday", "sleep", "getdevice"] as const
export type PageKind = (typeof PAGE_KINDS)[number]

type Json = Readonly<Record<string, unknown>>

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The user a page names: the connection's provider user id the poll wrote (Withings' ids are
 * numbers, some answers quote them). Pages are written by the plugin itself, so any printable
 * id routes; anything else names no user.
 */
const useridOf = (body: Json): string | undefined => {
  const id = body["userid"]
  if (typeof id === "string" && /^[^\u0000-\u001f\u007f]{1,128}$/.test(id)) return id
  if (typeof id === "number" && Number.isSafeInteger(id) && id >= 0) return String(id)
  return undefined
}

/** The list a page kind holds, and the item key of each entry. */
const LISTS: Readonly<Record<string, readonly [list: string, key: string]>> = {
  getmeas: ["measuregrps", "measuregrp"],
  getactivity: ["activities", "activity"],
  getworkouts: ["series", "workout"],
  getsummary: ["series", "sleep_summary"],
  getdevice: ["devices", "device"]
}

/** The day windows: one item each, the whole window (its records replace the window's earlier ones). */
const WINDOWS: Readonly<Record<string, string>> = { intraday: "intraday", sleep: "sleep_series" }

/** Bounds what a hostile body can make one page cost. */
const MAX_ITEMS = 100_000

export const pageItemsOf = (kind: string, body: unknown): ReadonlyArray<NotificationItem> => {
  if (!isObject(body)) return []
  const userid = useridOf(body)
  if (userid === undefined) return []
  const user = { _tag: "UserId", id: userid } as const
  const windowKey = Object.hasOwn(WINDOWS, kind) ? WINDOWS[kind] : undefined
  if (windowKey !== undefined) {
    const { enddate, series, startdate, timezone } = body
    if (typeof startdate !== "number" || typeof enddate !== "number") return []
    return [{ key: windowKey, index: 0, user, carries: "record", raw: { startdate, enddate, timezone, series } }]
  }
  const list = Object.hasOwn(LISTS, kind) ? LISTS[kind] : undefined
  if (list === undefined) return []
  const [name, key] = list
  const entries = body[name]
  if (!Array.isArray(entries)) return []
  const timezone = body["timezone"]
  const items: Array<NotificationItem> = []
  for (const entry of entries.slice(0, MAX_ITEMS)) {
    if (!isObject(entry)) continue
    const raw = kind === "getmeas" ? { ...entry, timezone: typeof timezone === "string" ? timezone : null } : entry
    items.push({ key, index: items.length, user, carries: "record", raw })
  }
  return items
}

/** The page kind each item key is stored under. */
const KINDS_BY_KEY: Readonly<Record<string, PageKind>> = {
  measuregrp: "getmeas",
  activity: "getactivity",
  workout: "getworkouts",
  sleep_summary: "getsummary",
  device: "getdevice",
  intraday: "intraday",
  sleep_series: "sleep"
}

/**
 * The page the plugin would store for `raws` of item key `key` (what `pageItemsOf` reads back):
 * for tests and tools that store records as the poll does. Measure groups take the first
 * one's timezone as the answer's; a day window holds exactly one item, so other counts have
 * no page.
 */
export const pageOf = (key: string, userid: string, raws: ReadonlyArray<unknown>): { readonly kind: PageKind; readonly body: string } | undefined => {
  const kind = Object.hasOwn(KINDS_BY_KEY, key) ? KINDS_BY_KEY[key] : undefined
  if (kind === undefined) return undefined
  if (kind === "intraday" || kind === "sleep") {
    const [window] = raws
    return raws.length === 1 && isObject(window) ? { kind, body: JSON.stringify({ ...window, userid }) } : undefined
  }
  const [list] = LISTS[kind]!
  const timezone = kind === "getmeas" && isObject(raws[0]) ? raws[0]["timezone"] ?? null : undefined
  return { kind, body: JSON.stringify({ userid, ...(timezone === undefined ? {} : { timezone }), [list]: raws }) }
}
