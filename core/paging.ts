/**
 * Cursor pagination: a page is `limit` items after a cursor; the answer's `next_cursor` is the
 * cursor of the page after it (null on the last). A cursor is opaque to callers: the
 * base64url of the last item's sort key (a JSON array of strings). One that does not decode
 * fails with a message that never repeats it.
 */
import { Data, Either, Schema } from "effect"

export class InvalidCursor extends Data.TaggedError("InvalidCursor")<{ readonly message: string }> {}

/** The sort key of the last item of a page, as its cursor. */
export const encodeCursor = (key: ReadonlyArray<string>): string => Buffer.from(JSON.stringify(key), "utf8").toString("base64url")

/** A cursor's sort key of `size` parts, or InvalidCursor. */
export const decodeCursor = (cursor: string, size: number): Either.Either<ReadonlyArray<string>, InvalidCursor> => {
  const invalid = Either.left(new InvalidCursor({ message: "cursor is not one this API gave out" }))
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(cursor)) return invalid
  try {
    const key: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    return Array.isArray(key) && key.length === size && key.every((part) => typeof part === "string" && part.length <= 512) ? Either.right(key) : invalid
  } catch {
    return invalid
  }
}

/** `limit` and `cursor` query parameters; `max` bounds a page. */
export const PageParams = (max: number) => ({
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, max)).annotations({ description: `items per page, 1..${max}` })),
  cursor: Schema.optional(Schema.String.annotations({ description: "`next_cursor` of the previous page" }))
})

/** Of `limit + 1` rows read, the page and the cursor of the next one. */
export const pageOf = <A>(rows: ReadonlyArray<A>, limit: number, keyOf: (row: A) => ReadonlyArray<string>) => {
  const items = rows.slice(0, limit)
  return { items, next: rows.length > limit && items.length > 0 ? encodeCursor(keyOf(items[items.length - 1]!)) : null }
}

const INSTANT = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A timestamptz as Postgres prints it (`::text`), a valid instant: a sort key part that casts back exactly. */
export const isInstantText = (text: string) => INSTANT.test(text) && !Number.isNaN(Date.parse(text.replace(" ", "T").replace(/([+-]\d{2})$/, "$1:00")))

export const isUuidText = (text: string) => UUID.test(text)

/** A sort key of (instant, uuid). */
export const isInstantIdKey = (key: ReadonlyArray<string>) => key.length === 2 && isInstantText(key[0]!) && isUuidText(key[1]!)
