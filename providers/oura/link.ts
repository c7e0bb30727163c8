/**
 * `POST /v2/user/{id}/connections/oura`: an existing Oura account linked with the OAuth 2.0
 * tokens the caller already holds. `provider_user_id` is Oura's user id (`personal_info.id`,
 * the `user_id` of its notifications).
 */
import type { Connected } from "@wearflow/core/provider"
import { ParseResult, Schema } from "effect"

/** Printable text: no control characters (Postgres refuses NUL), no lone surrogates. */
const Id = (max: number) =>
  Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(max),
    Schema.pattern(/^[^\u0000-\u001f\u007f]+$/),
    Schema.filter((s) => s.isWellFormed(), { message: () => "must be well-formed text" })
  )

const Secret = Schema.Redacted(Schema.String.pipe(Schema.minLength(1)))

export const LinkOura = Schema.Struct({
  provider_user_id: Id(128).annotations({ description: "Oura user id (personal_info.id; the user_id of Oura's notifications)" }),
  access_token: Secret,
  refresh_token: Schema.optional(Secret),
  expires_at: Schema.optional(Schema.Date).annotations({ description: "ISO 8601 expiry of the access token" }),
  scopes: Schema.optional(Schema.Array(Id(64))).annotations({ description: "the scopes the user granted (daily, heartrate, workout, spo2, ...)" })
}).annotations({ description: "An existing Oura connection; tokens are stored encrypted." })

const LinkInput = Schema.declare((input: unknown): input is Connected => typeof input === "object" && input !== null && "providerUserId" in input)

/** The payload as the account and tokens to link (decode only: it is never sent anywhere). */
export const linkPayload: Schema.Schema<Connected, typeof LinkOura.Encoded> = Schema.transformOrFail(LinkOura, LinkInput, {
  strict: true,
  decode: (payload) =>
    ParseResult.succeed({
      providerUserId: payload.provider_user_id,
      tokens: {
        accessToken: payload.access_token,
        refreshToken: payload.refresh_token,
        accessTokenExpiresAt: payload.expires_at,
        scopes: payload.scopes
      }
    }),
  encode: (_, __, ast, value) => ParseResult.fail(new ParseResult.Forbidden(ast, value, "a link payload is never encoded"))
})
