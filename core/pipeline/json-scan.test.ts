import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { parseSpan, scanObject } from "./json-scan.ts"

/** What the scanner reads, rebuilt as JSON.parse would: every value parsed from its span. */
const rebuilt = (text: string) =>
  Either.map(scanObject(text), (entries) => {
    const out: Record<string, unknown> = {}
    for (const e of entries) {
      out[e.key] = e.items
        ? Array.from({ length: e.items.length / 2 }, (_, i) => parseSpan(text, e.items![2 * i]!, e.items![2 * i + 1]!)?.value)
        : parseSpan(text, e.start, e.end)?.value
    }
    return out
  })

describe("scanObject", () => {
  it.each([
    "{}",
    " { } ",
    '{"a":[]}',
    '{"a":[1, -2.5e3, true, false, null, "x\\"]y", {"b":[{"c":"}"}]}, [[]]], "b": {"k": "v"}, "c": 3}',
    '{\n  "dailies" : [ {"s": "\\\\"} ,\t{"t":"\\u005d"} ]\n}',
    '{"\\u0041key": "value", "": []}'
  ])("reads %j as JSON.parse does", (text) => {
    expect(Either.getOrThrow(rebuilt(text))).toEqual(JSON.parse(text))
  })

  it("reads random documents as JSON.parse does", () => {
    let seed = 7
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647)
    const value = (depth: number): unknown => {
      const r = random()
      if (depth > 3 || r < 0.3) return [1.5, -3, "s\"\\]}{[", true, null, "ü😀"][Math.floor(random() * 6)]
      if (r < 0.65) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1))
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, (_, i) => [`k${i}"]`, value(depth + 1)]))
    }
    for (let n = 0; n < 300; n++) {
      const doc = Object.fromEntries(Array.from({ length: 1 + Math.floor(random() * 4) }, (_, i) => [`key${i}`, value(0)]))
      const text = JSON.stringify(doc, null, n % 2 === 0 ? 0 : 2)
      expect(Either.getOrThrow(rebuilt(text))).toEqual(doc)
    }
  })

  it.each(["", "[]", "1", '{"a" 1}', '{"a":1,}', '{"a":[1,]}', '{"a":[1 2]}', '{"a":"x}', '{"a":1} x', '{a:1}', '{"a":[1}'])(
    "refuses %j, or leaves a value that does not parse",
    (text) => {
      const result = rebuilt(text)
      const broken = Either.isLeft(result) || Object.values(result.right).some((v) => v === undefined || (Array.isArray(v) && v.includes(undefined)))
      expect(broken).toBe(true)
    }
  )
})
