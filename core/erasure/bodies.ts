/**
 * A deleted user's items taken out of a raw notification body. Bodies are JSON; an item is an
 * object in an array (a provider batching several users' records under a key) and belongs to
 * the user when one of its own fields is their provider user id. A body shared with other
 * provider users keeps their items; a body with nothing else left, or whose rest still names
 * the user, is the user's alone (erasure errs on the side of erasing).
 */

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

const isObject = (value: Json): value is { readonly [key: string]: Json } => typeof value === "object" && value !== null && !Array.isArray(value)

const names = (value: Json, providerUserId: string) => isObject(value) && Object.values(value).some((v) => v === providerUserId)

const without = (value: Json, providerUserId: string): Json => {
  if (Array.isArray(value)) return value.filter((item) => !names(item, providerUserId)).map((item) => without(item, providerUserId))
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, without(v, providerUserId)]))
  return value
}

const hasItems = (value: Json): boolean =>
  Array.isArray(value) ? value.length > 0 : isObject(value) ? Object.values(value).some(hasItems) : false

/** What is left of a body once the user's items are out. */
export type Stripped = { readonly _tag: "Theirs" } | { readonly _tag: "Shared"; readonly body: string }

/** The body without the items of `providerUserId`, or `Theirs` when nothing of anyone else is left. */
export const stripUser = (body: string, providerUserId: string): Stripped => {
  let parsed: Json
  try {
    parsed = JSON.parse(body) as Json
  } catch {
    return { _tag: "Theirs" }
  }
  // A body that is one item (a single notification object) naming the user is theirs whole.
  if (names(parsed, providerUserId)) return { _tag: "Theirs" }
  const rest = without(parsed, providerUserId)
  const text = JSON.stringify(rest)
  if (!hasItems(rest) || text.includes(JSON.stringify(providerUserId))) return { _tag: "Theirs" }
  return { _tag: "Shared", body: text }
}
