/**
 * Withings' signed requests: the calls that act for the application rather than a user
 * (revoke, getdemoaccess, ...) carry a single-use nonce and an HMAC signature instead of a
 * Bearer token or the client secret. A nonce comes from `POST /v2/signature action=getnonce`,
 * itself signed over a timestamp (reference: "Signed requests").
 */
import { Effect, Redacted, Schema } from "effect"
import { createHmac } from "node:crypto"
import { type Call, type CallRequest, WithingsError } from "./rpc.ts"

/** The application's client id and secret (the secret is the signing key). */
export interface SigningClient {
  readonly id: Redacted.Redacted<string>
  readonly secret: Redacted.Redacted<string>
}

/**
 * hex HMAC-SHA256 keyed with the client secret over the values of `fields` ordered by field
 * name and joined with `,` — for getnonce `getnonce,<client_id>,<timestamp>`, for a signed
 * call `<action>,<client_id>,<nonce>`.
 */
export const signatureOf = (secret: Redacted.Redacted<string>, fields: Readonly<Record<string, string>>): string =>
  createHmac("sha256", Redacted.value(secret))
    .update(
      Object.keys(fields)
        .sort()
        .map((name) => fields[name])
        .join(",")
    )
    .digest("hex")

/** Withings' nonces are opaque printable tokens; anything else is not a nonce. */
const NonceBody = Schema.Struct({ nonce: Schema.String.pipe(Schema.pattern(/^[\x21-\x7e]{1,256}$/)) })

/** A fresh single-use nonce: getnonce signed over the current time (unix seconds). */
export const nonceOf = (call: Call, client: SigningClient, now: () => number = Date.now): Effect.Effect<string, WithingsError> =>
  Effect.gen(function* () {
    const clientId = Redacted.value(client.id)
    const timestamp = String(Math.floor(now() / 1000))
    const answer = yield* call({
      path: "/v2/signature",
      action: "getnonce",
      fields: { client_id: clientId, timestamp, signature: signatureOf(client.secret, { action: "getnonce", client_id: clientId, timestamp }) }
    })
    const { nonce } = yield* Schema.decodeUnknown(NonceBody)(answer).pipe(
      Effect.mapError(() => new WithingsError({ outcome: "unavailable", message: "Withings' answer to getnonce holds no nonce" }))
    )
    return nonce
  })

/** `request` signed with `nonce`: `client_id`, `nonce` and the signature over (action, client_id, nonce) added to its fields. */
export const signed = (client: SigningClient, nonce: string, request: Omit<CallRequest, "bearer">): CallRequest => {
  const clientId = Redacted.value(client.id)
  return {
    ...request,
    fields: { ...request.fields, client_id: clientId, nonce, signature: signatureOf(client.secret, { action: request.action, client_id: clientId, nonce }) }
  }
}
