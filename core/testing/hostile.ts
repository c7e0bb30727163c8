/**
 * Hostile variants of a real-shaped record: each field (nested objects and the first item of
 * arrays included) dropped, or replaced by a value of the wrong kind. A marker string stands
 * for health data: it must never appear in an error message.
 */

export const MARKER = "wf-conformance-marker-7f3a"

const REPLACEMENTS: ReadonlyArray<unknown> = [
  null,
  "",
  MARKER,
  "NaN",
  -1,
  1e308,
  Number.MAX_SAFE_INTEGER,
  true,
  {},
  [],
  [MARKER],
  { nested: MARKER }
]

type Path = ReadonlyArray<string | number>

const pathsOf = (value: unknown, at: Path = [], depth = 0): Array<Path> => {
  if (depth > 4 || value === null || typeof value !== "object") return []
  if (Array.isArray(value)) return value.length === 0 ? [] : [[...at, 0], ...pathsOf(value[0], [...at, 0], depth + 1)]
  return Object.keys(value).flatMap((key) => [[...at, key], ...pathsOf((value as Record<string, unknown>)[key], [...at, key], depth + 1)])
}

const replaced = (value: unknown, path: Path, next: (old: unknown) => unknown | typeof DROP): unknown => {
  if (path.length === 0) return next(value)
  const [head, ...rest] = path
  if (Array.isArray(value)) {
    const copy = [...value]
    const inner = replaced(copy[head as number], rest, next)
    if (inner === DROP) copy.splice(head as number, 1)
    else copy[head as number] = inner
    return copy
  }
  const copy = { ...(value as Record<string, unknown>) }
  const inner = replaced(copy[head as string], rest, next)
  if (inner === DROP) delete copy[head as string]
  else copy[head as string] = inner
  return copy
}

const DROP = Symbol("drop")

/** The record's hostile variants: whole-record ones, then per field (at most `limit`). */
export const hostileVariants = (record: unknown, limit = 2_000): Array<unknown> => {
  const variants: Array<unknown> = [null, undefined, MARKER, 42, [], [record], { unexpected: MARKER }]
  for (const path of pathsOf(record)) {
    variants.push(replaced(record, path, () => DROP))
    for (const value of REPLACEMENTS) variants.push(replaced(record, path, () => value))
    if (variants.length >= limit) break
  }
  return variants.slice(0, limit)
}

/** String values of at least 4 characters in a record: none may reach an error message. */
export const stringsOf = (value: unknown, found: Set<string> = new Set()): Set<string> => {
  if (typeof value === "string" && value.length >= 4) found.add(value)
  else if (Array.isArray(value)) for (const item of value.slice(0, 50)) stringsOf(item, found)
  else if (value !== null && typeof value === "object") for (const item of Object.values(value)) stringsOf(item, found)
  return found
}
