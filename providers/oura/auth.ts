/**
 * Oura's connect flow and token upkeep through core's OAuth 2.0 module: the authorization
 * code flow (no PKCE: Oura documents none), client credentials in the token request's body,
 * single-use refresh tokens (each refresh answers a new pair, stored whole), and revocation
 * by `POST /oauth/revoke?access_token=`. The authorize URL (cloud.ouraring.com) is only ever
 * opened by the user's browser; every call the plugin makes goes to Oura's API host through
 * its sandboxed HttpClient.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as OAuth2 from "@wearflow/core/connections/oauth2"
import { AuthError, type ProviderAuth } from "@wearflow/core/provider"
import { Duration, Effect, Option, Schema } from "effect"
import { apiUrlOf, clientOf, type OuraConfig } from "./config.ts"

/** The one connect flow Oura offers. */
export const OAUTH2 = "oauth2"

const TIMEOUT = Duration.seconds(30)

/** personal_info's `id` is readable with any token, whatever scopes the user left ticked. */
const PersonalInfo = Schema.Struct({ id: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128), Schema.pattern(/^[^\u0000-\u001f\u007f]+$/)) })

const unavailable = (message: string, status?: number) => new AuthError({ message, reason: "unavailable", status })

export const makeAuth = (client: HttpClient.HttpClient, config: OuraConfig): ProviderAuth => {
  const credentials = Option.match(clientOf(config), {
    onNone: () => Effect.fail(new AuthError({ message: "OURA_CLIENT_ID and OURA_CLIENT_SECRET must be set to connect Oura users", reason: "misconfigured" })),
    onSome: Effect.succeed
  })

  /** The Oura user behind an access token. */
  const identify: OAuth2.OAuth2Provider["identify"] = (tokens) =>
    Effect.gen(function* () {
      if (tokens.accessToken === undefined) return yield* unavailable("Oura's token answer has no access token")
      const request = HttpClientRequest.get(apiUrlOf(config.apiUrl, "/v2/usercollection/personal_info")).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.bearerToken(tokens.accessToken)
      )
      const response = yield* client.execute(request).pipe(
        Effect.timeoutFail({ duration: TIMEOUT, onTimeout: () => unavailable("Oura did not answer the personal_info request in time") }),
        Effect.catchTags({
          RequestError: (e) => Effect.fail(unavailable(`could not reach Oura for the personal_info request (${e.reason})`)),
          ResponseError: (e) => Effect.fail(unavailable(`Oura's answer to the personal_info request could not be read (${e.reason})`))
        })
      )
      if (response.status !== 200) {
        const message = `Oura answered ${response.status} to the personal_info request`
        return yield* (response.status === 429 || response.status >= 500 ? unavailable(message, response.status) : new AuthError({ message, reason: "denied", status: response.status }))
      }
      const { id } = yield* response.json.pipe(
        Effect.flatMap(Schema.decodeUnknown(PersonalInfo)),
        Effect.mapError(() => unavailable("Oura's answer to the personal_info request could not be read"))
      )
      // The granted scopes are the token answer's `scope`; without it they are unknown.
      return { providerUserId: id }
    }).pipe(Effect.scoped)

  const oauth2 = OAuth2.make(client, {
    name: "Oura",
    authorizeUrl: config.authorizeUrl,
    tokenUrl: apiUrlOf(config.apiUrl, "/oauth/token").href,
    revoke: { url: apiUrlOf(config.apiUrl, "/oauth/revoke").href, method: "POST", tokenParam: "access_token", tokenIn: "query", clientAuth: false },
    client: credentials,
    scopes: config.scopes,
    scopeSeparator: " ",
    pkce: false,
    clientAuth: "body",
    timeout: TIMEOUT,
    identify
  })

  const deregister: ProviderAuth["deregister"] = (connection) => {
    if (connection.bearer === undefined) return Effect.void
    // Revoking kills the whole grant. A token Oura no longer knows (revoked by the user, or
    // already by us) is answered 4xx by some servers: the grant is gone either way.
    return oauth2.revoke(connection.bearer).pipe(
      Effect.catchIf((error) => error.status !== undefined && error.status >= 400 && error.status < 500 && error.status !== 429, () => Effect.void)
    )
  }

  return {
    flows: [OAUTH2],
    begin: (_flow, input) => oauth2.begin(input),
    complete: (_flow, input) => oauth2.complete(input),
    // A refresh token works once: Oura answers a new pair, and core stores both together.
    refresh: oauth2.refresh,
    deregister
  }
}
