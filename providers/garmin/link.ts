/**
 * `POST /v2/user/{id}/connections/garmin`: an existing Garmin account linked with the tokens
 * the caller already holds — OAuth 2.0, or the legacy OAuth 1.0a pair.
 */
import { PrintableId } from "@wearflow/core/http"
import type { LinkInput } from "@wearflow/core/provider"
import { ParseResult, Schema } from "effect"
import { encodeState, OAUTH1, OAUTH2 } from "./state.ts"

const Id = PrintableId

const Secret = Schema.Redacted(Schema.String.pipe(Schema.minLength(1)))

export const LinkGarmin = Schema.Struct({
  provider_user_id: Id(128).annotations({ description: "Garmin userId (from GET /wellness-api/rest/user/id)" }),
  oauth2: Schema.optional(
    Schema.Struct({
      access_token: Secret,
      refresh_token: Schema.optional(Secret),
      expires_at: Schema.optional(Schema.Date).annotations({ description: "ISO 8601 expiry of the access token" }),
      scopes: Schema.optional(Schema.Array(Id(64)))
    })
  ),
  oauth1: Schema.optional(Schema.Struct({ token: Secret, token_secret: Secret }))
}).annotations({ description: "An existing Garmin connection; tokens are optional and stored encrypted." })

const Linked = Schema.declare((input: unknown): input is LinkInput => typeof input === "object" && input !== null && "providerUserId" in input)

/** The payload as the account and tokens to link (decode only: it is never sent anywhere). */
export const linkPayload: Schema.Schema<LinkInput, typeof LinkGarmin.Encoded> = Schema.transformOrFail(LinkGarmin, Linked, {
  strict: true,
  decode: ({ oauth1, oauth2, provider_user_id }) =>
    ParseResult.succeed(
      oauth2 !== undefined
        ? {
          providerUserId: provider_user_id,
          flow: OAUTH2,
          tokens: { accessToken: oauth2.access_token, refreshToken: oauth2.refresh_token, accessTokenExpiresAt: oauth2.expires_at, scopes: oauth2.scopes }
        }
        : oauth1 !== undefined
        ? { providerUserId: provider_user_id, flow: OAUTH1, tokens: { state: encodeState({ oauth1: { token: oauth1.token, secret: oauth1.token_secret } }) } }
        : { providerUserId: provider_user_id, tokens: {} }
    ),
  encode: (_, __, ast, value) => ParseResult.fail(new ParseResult.Forbidden(ast, value, "a link payload is never encoded"))
})
