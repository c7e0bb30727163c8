/**
 * Linking an existing Withings account: the payload decodes to the account, its tokens and
 * the state the connect flow would have written; a bad payload is refused by field names
 * only, never repeating what was sent.
 */
import { describe, expect, it } from "@effect/vitest"
import { describeParseError } from "@wearflow/core/normalizer"
import { Either, Redacted, Schema } from "effect"
import { linkPayload } from "./link.ts"
import { allows, stateOf } from "./state.ts"

/** As the server decodes it (apps/server/handlers.ts). */
const decode = Schema.decodeUnknownEither(linkPayload, { errors: "all", onExcessProperty: "ignore" })

const valid = {
  provider_user_id: "30000042",
  access_token: "access-secret-1",
  refresh_token: "refresh-secret-1",
  expires_at: "2026-12-07T06:00:00Z",
  scopes: ["user.metrics", "user.activity"]
}

describe("Withings link payload", () => {
  it("decodes to the account, its tokens and the state {userid, scopes}", () => {
    const input = Either.getOrThrow(decode(valid))
    expect(input.providerUserId).toBe("30000042")
    expect(Redacted.value(input.tokens.accessToken!)).toBe("access-secret-1")
    expect(Redacted.value(input.tokens.refreshToken!)).toBe("refresh-secret-1")
    expect(input.tokens.accessTokenExpiresAt).toEqual(new Date("2026-12-07T06:00:00Z"))
    expect(input.tokens.scopes).toEqual(["user.metrics", "user.activity"])
    expect(input.tokens.state).toEqual({ userid: "30000042", scopes: ["user.metrics", "user.activity"] })
    // What the plugin reads back from core's stored state.
    const credentials = { bearer: input.tokens.accessToken, state: JSON.parse(JSON.stringify(input.tokens.state)) }
    expect(stateOf(credentials)).toEqual({ userid: "30000042", scopes: ["user.metrics", "user.activity"] })
    expect(allows(credentials, "user.sleepevents")).toBe(false)
  })

  it("takes only the access token and user; a numeric userid is kept as its decimal string; unknown scopes stay unknown", () => {
    const input = Either.getOrThrow(decode({ provider_user_id: 30000043, access_token: "access-secret-2" }))
    expect(input.providerUserId).toBe("30000043")
    expect(input.tokens.refreshToken).toBeUndefined()
    expect(input.tokens.state).toEqual({ userid: "30000043" })
    expect(allows({ bearer: input.tokens.accessToken, state: input.tokens.state }, "user.activity")).toBe(true)
  })

  it("refuses bad payloads by field name, never echoing the values", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...valid, provider_user_id: "user-abc-secret" }, "provider_user_id"],
      [{ ...valid, provider_user_id: "1".repeat(21) }, "provider_user_id"],
      [{ ...valid, provider_user_id: -5 }, "provider_user_id"],
      [{ ...valid, provider_user_id: 1.5 }, "provider_user_id"],
      [{ ...valid, provider_user_id: "" }, "provider_user_id"],
      [{ ...valid, access_token: "" }, "access_token"],
      [{ ...valid, access_token: undefined }, "access_token"],
      [{ ...valid, expires_at: "tomorrow-secret" }, "expires_at"],
      [{ ...valid, scopes: ["user.metrics", "user.everything-secret"] }, "scopes"],
      [{ ...valid, scopes: "user.metrics,user.activity" }, "scopes"]
    ]
    for (const [payload, field] of cases) {
      const result = decode(payload)
      if (Either.isRight(result)) throw new Error(`accepted a payload with a bad ${field}`)
      const message = describeParseError(result.left)
      expect(message).toContain(field)
      for (const value of ["user-abc-secret", "tomorrow-secret", "everything-secret", "access-secret-1", "refresh-secret-1", "1".repeat(21)]) {
        expect(message).not.toContain(value)
      }
    }
    expect(Either.isLeft(decode(null))).toBe(true)
    expect(Either.isLeft(decode("text"))).toBe(true)
  })
})
