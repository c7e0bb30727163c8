/**
 * `POST /v2/user/{id}/connections/withings`: an existing Withings account linked with the
 * OAuth 2.0 tokens the caller already holds. `provider_user_id` is Withings' `userid` (the
 * token answer's, and the one its notifications carry); the connection's state is built from
 * it and the granted scopes, as the connect flow builds it.
 */
import type { LinkInput } from "@wearflow/core/provider"
import { ParseResult, Schema } from "effect"
import { UserId } from "./auth.ts"
import { KNOWN_SCOPES } from "./config.ts"
import type { WithingsState } from "./state.ts"

const Secret = Schema.Redacted(Schema.String.pipe(Schema.minLength(1)))

export const LinkWithings = Schema.Struct({
  provider_user_id: UserId.annotations({ description: "Withings userid (digits; the userid of the token answer and of Withings' notifications)" }),
  access_token: Secret,
  refresh_token: Schema.optional(Secret),
  expires_at: Schema.optional(Schema.Date).annotations({ description: "ISO 8601 expiry of the access token" }),
  scopes: Schema.optional(Schema.Array(Schema.Literal(...KNOWN_SCOPES))).annotations({
    description: "the scopes the user granted (the token answer's scope: user.metrics, user.activity, ...); absent: unknown, Withings' answers decide"
  })
}).annotations({ description: "An existing Withings connection; tokens are stored encrypted." })

const Linked = Schema.declare((input: unknown): input is LinkInput => typeof input === "object" && input !== null && "providerUserId" in input)

/** The payload as the account and tokens to link (decode only: it is never sent anywhere). */
export const linkPayload: Schema.Schema<LinkInput, typeof LinkWithings.Encoded> = Schema.transformOrFail(LinkWithings, Linked, {
  strict: true,
  decode: (payload) => {
    const state: WithingsState = payload.scopes === undefined ? { userid: payload.provider_user_id } : { userid: payload.provider_user_id, scopes: [...payload.scopes] }
    return ParseResult.succeed({
      providerUserId: payload.provider_user_id,
      tokens: {
        accessToken: payload.access_token,
        refreshToken: payload.refresh_token,
        accessTokenExpiresAt: payload.expires_at,
        scopes: payload.scopes,
        state
      }
    })
  },
  encode: (_, __, ast, value) => ParseResult.fail(new ParseResult.Forbidden(ast, value, "a link payload is never encoded"))
})
