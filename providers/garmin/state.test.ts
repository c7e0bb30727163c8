/**
 * Garmin's connection state: the OAuth 1.0a pair and its grace after the move to OAuth 2.0 are
 * Garmin's to read (core stores the state encrypted and never looks inside).
 */
import { describe, expect, it } from "@effect/vitest"
import { AuthError } from "@wearflow/core/provider"
import { Duration, Effect, Either, Redacted } from "effect"
import { aliasesOf, encodeState, legacyState, OAUTH1, OAUTH1_GRACE, OAUTH2, usableOAuth1 } from "./state.ts"
import { upgradeOne } from "./upgrade.ts"

const pair = { token: Redacted.make("token-1"), secret: Redacted.make("secret-1") }
const NOW = Date.UTC(2026, 0, 1)
/** The state as core hands it back: JSON text parsed again. */
const stored = (state: unknown) => ({ bearer: undefined, state: JSON.parse(JSON.stringify(state)) as unknown })

describe("Garmin connection state", () => {
  it("keeps the pair as JSON without the secrets' Redacted wrapper, and reads it back", () => {
    const state = encodeState({ oauth1: pair })
    expect(state).toEqual({ oauth1: { token: "token-1", secret: "secret-1" } })
    expect(usableOAuth1(stored(state), NOW)).toEqual(pair)
  })

  it("honours a moved connection's pair until its grace ends, then no longer (it stays its alias)", () => {
    const state = stored(encodeState({ oauth1: pair, oauth1ValidUntil: new Date(NOW + 1000) }))
    expect(usableOAuth1(state, NOW)).toEqual(pair)
    expect(usableOAuth1(state, NOW + 1000)).toBeUndefined()
    expect(aliasesOf(state).map(Redacted.value)).toEqual(["token-1"])
  })

  it("reads no pair from no state or a state it cannot decode", () => {
    expect(usableOAuth1(undefined)).toBeUndefined()
    expect(usableOAuth1({ state: { oauth1: { token: 1 } } })).toBeUndefined()
    expect(aliasesOf({ bearer: undefined, state: undefined })).toEqual([])
  })

  it("builds its state from core's old columns: an OAuth 1.0a pair, or a moved pair with its end", () => {
    const made = legacyState({ flow: OAUTH1, pair, previous: undefined })
    expect(made.flow).toBe(OAUTH1)
    expect(usableOAuth1(stored(made.state), NOW)).toEqual(pair)
    const validUntil = new Date(NOW + 5000)
    const moved = legacyState({ flow: OAUTH2, pair: undefined, previous: { ...pair, validUntil } })
    expect(moved.flow).toBe(OAUTH2)
    expect(usableOAuth1(stored(moved.state), NOW)).toEqual(pair)
    expect(usableOAuth1(stored(moved.state), NOW + 5000)).toBeUndefined()
    expect(legacyState({ flow: OAUTH2, pair: undefined, previous: undefined })).toEqual({ state: undefined, flow: OAUTH2 })
  })

  it.effect("the OAuth 2.0 upgrade keeps the pair for 30 days and refuses tokens of another account", () =>
    Effect.gen(function* () {
      const credentials = stored(encodeState({ oauth1: pair }))
      const exchange = (providerUserId: string) => () =>
        Effect.succeed({ providerUserId, tokens: { accessToken: Redacted.make("bearer"), refreshToken: Redacted.make("refresh") } })
      const replacement = yield* upgradeOne(exchange("garmin-1"), credentials, "garmin-1", NOW)
      expect(replacement.flow).toBe(OAUTH2)
      expect(Redacted.value(replacement.tokens.accessToken!)).toBe("bearer")
      const after = stored(replacement.tokens.state)
      expect(usableOAuth1(after, NOW + Duration.toMillis(OAUTH1_GRACE) - 1)).toEqual(pair)
      expect(usableOAuth1(after, NOW + Duration.toMillis(OAUTH1_GRACE))).toBeUndefined()
      const mismatch = yield* Effect.either(upgradeOne(exchange("someone-else"), credentials, "garmin-1", NOW))
      expect(Either.isLeft(mismatch) && mismatch.left._tag).toBe("AccountMismatch")
      const refused = yield* Effect.either(upgradeOne(() => Effect.fail(new AuthError({ message: "no", reason: "denied" })), credentials, "garmin-1", NOW))
      expect(Either.isLeft(refused) && refused.left._tag).toBe("AuthError")
    }))
})
