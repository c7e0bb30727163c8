/**
 * Withings' request signing: the HMAC over the signed fields' values in field-name order, and
 * the getnonce → signed call sequence against the fake Withings.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Redacted } from "effect"
import * as Budget from "./budget.ts"
import { WithingsConfig } from "./config.ts"
import { makeCall } from "./rpc.ts"
import { nonceOf, signatureOf, signed } from "./signature.ts"
import { startFakeWithings, withingsSignature } from "./testing/fake-withings.ts"

const SECRET = Redacted.make("secret-1")

describe("Withings signatures", () => {
  it("signs the values ordered by field name, joined with commas (HMAC-SHA256, hex)", () => {
    // Expected values from `printf 'getnonce,client-1,1700000000' | openssl dgst -sha256 -hmac secret-1`.
    expect(signatureOf(SECRET, { timestamp: "1700000000", client_id: "client-1", action: "getnonce" })).toBe(
      "5ba947ec04289fe8da958c638e526e006cc35bbe334dcb005021690d6d088e6c"
    )
    expect(signatureOf(SECRET, { nonce: "nonce-abc", action: "revoke", client_id: "client-1" })).toBe(
      "16b511aa95132bc04ae5be49b07d0314f29091f251ac6e1101d3f1a83a6e02ca"
    )
    // The same as the fake Withings computes, whatever order the fields come in.
    expect(signatureOf(SECRET, { b: "2", a: "1", c: "3" })).toBe(withingsSignature("secret-1", { c: "3", a: "1", b: "2" }))
  })

  it("a signed call adds client_id, nonce and the signature over (action, client_id, nonce), keeping its fields", () => {
    const request = signed({ id: Redacted.make("client-1"), secret: SECRET }, "nonce-abc", { path: "/v2/oauth2", action: "revoke", fields: { userid: "42" } })
    expect(request.fields).toEqual({
      userid: "42",
      client_id: "client-1",
      nonce: "nonce-abc",
      signature: "16b511aa95132bc04ae5be49b07d0314f29091f251ac6e1101d3f1a83a6e02ca"
    })
  })

  it.scoped("the fake gives a nonce for a well-signed getnonce and refuses one signed with another secret", () =>
    Effect.gen(function* () {
      const fake = yield* Effect.acquireRelease(
        Effect.promise(() => startFakeWithings({ clientId: "client-1", clientSecret: "secret-1" })),
        (fake) => Effect.promise(() => fake.close())
      )
      const config = yield* Effect.withConfigProvider(WithingsConfig, ConfigProvider.fromMap(new Map([["WITHINGS_API_URL", fake.url]])))
      const call = makeCall(yield* HttpClient.HttpClient, config, Budget.unlimited)
      const nonce = yield* nonceOf(call, { id: Redacted.make("client-1"), secret: SECRET })
      expect(fake.state.nonces.has(nonce)).toBe(true)
      const refused = yield* Effect.either(nonceOf(call, { id: Redacted.make("client-1"), secret: Redacted.make("not-the-secret") }))
      expect(Either.isLeft(refused) && refused.left.outcome).toBe("invalid")
      expect(fake.state.nonces.size).toBe(1)
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
