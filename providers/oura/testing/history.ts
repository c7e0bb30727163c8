/**
 * Recent history for a fake Oura user: the recorded fixtures moved forward in time, so that
 * a backfill of the last weeks finds them. Every date and date-time in a document moves by
 * the same whole number of days (offsets and times of day stay), so the documents keep
 * their shapes and relations; ids get a suffix so that a second copy is a second document.
 */
import { readFileSync } from "node:fs"
import { collectionOf, type FakeOura, type OuraDocument } from "./fake-oura.ts"

const DAY_MS = 86_400_000
const DATE_PREFIX = /^(\d{4}-\d{2}-\d{2})(.*)$/

const fixture = (collection: string): Array<OuraDocument> => {
  const name = collection === "vO2_max" ? "vo2_max" : collection
  return (JSON.parse(readFileSync(new URL(`./fixtures/${name}.list.200.json`, import.meta.url), "utf8")) as { data: Array<OuraDocument> }).data
}

const shiftDate = (text: string, days: number): string => {
  const match = DATE_PREFIX.exec(text)
  if (match === null) return text
  const moved = new Date(Date.parse(`${match[1]}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10)
  return `${moved}${match[2]}`
}

/** Every date-like string in `value` moved by `days`. */
export const shiftDays = <A>(value: A, days: number): A => {
  if (typeof value === "string") return shiftDate(value, days) as A
  if (Array.isArray(value)) return value.map((item) => shiftDays(item, days)) as A
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, key === "id" ? item : shiftDays(item, days)])) as A
  }
  return value
}

/** The latest UTC day a collection's fixture documents name (`day`, else the timestamp's date). */
const latestDay = (docs: ReadonlyArray<OuraDocument>): number =>
  Math.max(...docs.map((doc) => Date.parse(`${String(doc["day"] ?? doc["timestamp"]).slice(0, 10)}T00:00:00Z`)))

/**
 * Gives `userId` the fixtures of `collections`, their newest day moved to `daysAgo` days
 * before today (UTC); answers the documents added, by collection.
 */
export const seedRecent = (fake: FakeOura, userId: string, collections: ReadonlyArray<string>, daysAgo = 2): Record<string, Array<OuraDocument>> => {
  const user = fake.state.users.get(userId) ?? fake.addUser(userId)
  const today = Math.floor(Date.now() / DAY_MS) * DAY_MS
  const added: Record<string, Array<OuraDocument>> = {}
  for (const name of collections) {
    const collection = collectionOf(name) ?? name
    const docs = fixture(collection)
    const days = Math.round((today - daysAgo * DAY_MS - latestDay(docs)) / DAY_MS)
    const moved = docs.map((doc) => {
      const shifted = shiftDays(doc, days)
      return typeof doc["id"] === "string" ? { ...shifted, id: `${doc["id"]}-recent` } : shifted
    })
    ;(user.documents[collection] ??= []).push(...moved)
    added[collection] = moved
  }
  return added
}
