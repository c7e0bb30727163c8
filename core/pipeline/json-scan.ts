/**
 * Reads the outline of a JSON object body without building its object graph: each top-level
 * key, where its value lies in the text, and for array values where each item lies. A large
 * notification body is then checked item by item (JSON.parse of one item's text at a time)
 * and split into parts, so memory stays near the size of the text however big it is.
 *
 * The scanner checks the object's own punctuation; the text of each value or item is checked
 * by JSON.parse when it is read (`parseSpan`). A body whose every value parses is valid JSON.
 */
import { Either } from "effect"

export interface TopLevelEntry {
  readonly key: string
  /** The value's text is `text.slice(start, end)`. */
  readonly start: number
  readonly end: number
  /** For an array value: its items' offsets, as [start, end) pairs one after another. */
  readonly items: ReadonlyArray<number> | undefined
}

/** Why the text is not a JSON object; says where, never quotes the text. */
export class JsonScanError {
  readonly _tag = "JsonScanError"
  constructor(readonly message: string) {}
}

const QUOTE = 34
const BACKSLASH = 92
const COMMA = 44
const COLON = 58
const OPEN_BRACE = 123
const CLOSE_BRACE = 125
const OPEN_BRACKET = 91
const CLOSE_BRACKET = 93

const isSpace = (c: number) => c === 32 || c === 10 || c === 13 || c === 9

class Scanner {
  constructor(readonly text: string, public i = 0) {}

  fail(what: string): never {
    throw new JsonScanError(`${what} at character ${this.i}`)
  }

  space() {
    const t = this.text
    while (this.i < t.length && isSpace(t.charCodeAt(this.i))) this.i++
  }

  expect(c: number, what: string) {
    this.space()
    if (this.text.charCodeAt(this.i) !== c) this.fail(`expected ${what}`)
    this.i++
  }

  /** Past the string that starts at `i` (its closing quote). */
  string() {
    const t = this.text
    let i = this.i + 1
    for (;;) {
      const quote = t.indexOf('"', i)
      if (quote < 0) {
        this.i = t.length
        this.fail("unterminated string")
      }
      // A quote preceded by an odd number of backslashes is escaped.
      let slashes = 0
      while (t.charCodeAt(quote - 1 - slashes) === BACKSLASH) slashes++
      i = quote + 1
      if (slashes % 2 === 0) break
    }
    this.i = i
  }

  /** Past the value starting at `i`: strings, nested containers and bare words (numbers, literals). */
  value() {
    const t = this.text
    this.space()
    const c = t.charCodeAt(this.i)
    if (c === QUOTE) return this.string()
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      let depth = 0
      while (this.i < t.length) {
        const d = t.charCodeAt(this.i)
        if (d === QUOTE) {
          this.string()
          continue
        }
        if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++
        else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
          depth--
          if (depth === 0) {
            this.i++
            return
          }
        }
        this.i++
      }
      this.fail("unterminated object or array")
    }
    const start = this.i
    while (this.i < t.length) {
      const d = t.charCodeAt(this.i)
      if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isSpace(d)) break
      this.i++
    }
    if (this.i === start) this.fail("expected a value")
  }

  /** The items of the array starting at `i`, as offset pairs. */
  array(): Array<number> {
    const t = this.text
    const items: Array<number> = []
    this.i++
    this.space()
    if (t.charCodeAt(this.i) === CLOSE_BRACKET) {
      this.i++
      return items
    }
    for (;;) {
      this.space()
      const start = this.i
      this.value()
      items.push(start, this.i)
      this.space()
      const c = t.charCodeAt(this.i)
      this.i++
      if (c === CLOSE_BRACKET) return items
      if (c !== COMMA) {
        this.i--
        this.fail("expected , or ] in a list")
      }
    }
  }
}

/**
 * The top-level entries of a JSON object text, in order. Fails when the text is not an
 * object or its outline is broken; the values themselves are checked by `parseSpan`.
 */
export const scanObject = (text: string): Either.Either<ReadonlyArray<TopLevelEntry>, JsonScanError> => {
  const s = new Scanner(text)
  try {
    s.space()
    if (text.charCodeAt(s.i) !== OPEN_BRACE) return Either.left(new JsonScanError("body must be a JSON object"))
    s.i++
    const entries: Array<TopLevelEntry> = []
    s.space()
    if (text.charCodeAt(s.i) === CLOSE_BRACE) s.i++
    else {
      for (;;) {
        s.space()
        if (text.charCodeAt(s.i) !== QUOTE) s.fail("expected a key")
        const keyStart = s.i
        s.string()
        const key = JSON.parse(text.slice(keyStart, s.i)) as string
        s.expect(COLON, ":")
        s.space()
        const start = s.i
        const items = text.charCodeAt(s.i) === OPEN_BRACKET ? s.array() : (s.value(), undefined)
        entries.push({ key, start, end: s.i, items })
        s.space()
        const c = text.charCodeAt(s.i)
        if (c === CLOSE_BRACE) {
          s.i++
          break
        }
        if (c !== COMMA) s.fail("expected , or }")
        s.i++
      }
    }
    s.space()
    if (s.i !== text.length) s.fail("unexpected text after the object")
    return Either.right(entries)
  } catch (e) {
    if (e instanceof JsonScanError) return Either.left(e)
    // JSON.parse of a key: the scanner found its end, so only bad escapes or control characters get here.
    return Either.left(new JsonScanError("a key is not a valid JSON string"))
  }
}

/**
 * Reading a large body item by item makes garbage faster than Bun's collector reclaims it on
 * its own: a 100 MB body's request path peaked at +418 MB over the idle server, and at +206 MB
 * with a collection asked for every 8 MiB of items read (bench/large-body.ts). Where the
 * runtime has no such hook (Node without --expose-gc) this does nothing.
 */
const COLLECT_EVERY_CHARS = 8 * 1024 * 1024
let charsSinceCollection = 0
const collectGarbage: (() => void) | undefined = (() => {
  const bun = (globalThis as { Bun?: { gc?: (force: boolean) => void } }).Bun
  if (typeof bun?.gc === "function") return () => bun.gc!(false)
  const gc = (globalThis as { gc?: () => void }).gc
  return typeof gc === "function" ? gc : undefined
})()

/** The value whose text is `text.slice(start, end)`, or undefined when that is not valid JSON. */
export const parseSpan = (text: string, start: number, end: number): { readonly value: unknown } | undefined => {
  charsSinceCollection += end - start
  if (charsSinceCollection >= COLLECT_EVERY_CHARS) {
    charsSinceCollection = 0
    collectGarbage?.()
  }
  try {
    return { value: JSON.parse(text.slice(start, end)) }
  } catch {
    return undefined
  }
}
