import { aliasDigest } from "@wearflow/core/crypto"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { inspect, problemsOf } from "./notifications.ts"

const limits = { partBytes: 10_000, partItems: 10 }

describe("inspect (what the request path checks)", () => {
  it("parses a body stored whole once, and reads no item offsets for it", () => {
    const body = inspect(JSON.stringify({ dailies: [{ a: 1 }, "not-an-object"], later: 1, sleeps: {} }), limits)
    expect(Either.getOrThrow(body)).toEqual({
      accepted: { dailies: 2 },
      ignoredKeys: ["later"],
      ignoredKeysOmitted: 0,
      itemCount: 2,
      items: undefined,
      redacted: undefined
    })
  })

  it("reads where the items lie for a body stored in parts (too long, or too many items)", () => {
    const many = JSON.stringify({ epochs: Array.from({ length: 11 }, (_, i) => ({ i })) })
    expect(Either.getOrThrow(inspect(many, limits)).items).toEqual([{ key: "epochs", spans: expect.any(Array) }])
    const long = JSON.stringify({ epochs: [{ filler: "x".repeat(limits.partBytes) }] })
    expect(Either.getOrThrow(inspect(long, limits))).toMatchObject({ accepted: { epochs: 1 }, items: [{ key: "epochs" }] })
  })

  it("replaces OAuth 1.0a tokens with their hash, even under an escaped key", () => {
    const text = `{"dailies":[{"userAccess\\u0054oken":"secret-token","summaryId":"s"}]}`
    const body = Either.getOrThrow(inspect(text, limits))
    expect([...body.redacted!.values()]).toEqual([JSON.stringify({ userAccessTokenHash: aliasDigest("secret-token"), summaryId: "s" })])
  })

  it("refuses text that is not JSON, or not an object, without quoting it", () => {
    for (const text of ['{"dailies": [{"steps": 918273645}', "[1]", "", '{"a": [1,]}'.repeat(1000)]) {
      const refused = inspect(text, limits)
      expect(Either.isLeft(refused)).toBe(true)
      expect(JSON.stringify(refused)).not.toContain("918273645")
    }
  })
})

describe("problemsOf (what the ingest worker records)", () => {
  it("lists each malformed item by key and index, and a known key that is not a list", () => {
    expect(problemsOf("push", { dailies: [{ userId: "u", summaryId: "s" }, { userId: "u" }, 7], sleeps: {}, unknown: [1] })).toEqual([
      { key: "dailies", index: 1, message: "summaryId is missing" },
      { key: "dailies", index: 2, message: "item is not an object" },
      { key: "sleeps", index: -1, message: "sleeps must be a list" }
    ])
    expect(problemsOf("ping", { dailies: [{ userId: "u" }] })).toEqual([{ key: "dailies", index: 0, message: "callbackURL is missing" }])
  })
})
