/**
 * Garmin connect flows and token upkeep: OAuth 2.0 PKCE (oauth2Confirm → token endpoint,
 * refresh with rotating refresh tokens) through core's OAuth 2.0 module, OAuth 1.0a
 * three-legged (request token → oauthConfirm → access token), deregistration, and the
 * OAuth 1.0a → 2.0 token exchange.
 * Everything goes through the plugin's sandboxed HttpClient, so only Garmin's configured
 * hosts are reached.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { AuthError, type Connected, type Credentials, type ProviderAuth } from "@wearflow/core/provider"
import { constantTimeEquals } from "@wearflow/core/crypto"
import * as OAuth2 from "@wearflow/core/connections/oauth2"
import { Duration, Effect, Option, Redacted, Schema } from "effect"
import { consumerOf, type GarminConfig } from "./config.ts"
import { authorizationHeader, type OAuth1Key } from "./oauth1.ts"
import { encodeState, OAUTH1, OAUTH2, oauth1Credentials, usableOAuth1 } from "./state.ts"
import type { GarminAuth } from "./upgrade.ts"

const TIMEOUT = Duration.seconds(30)

const UserIdResponse = Schema.Struct({ userId: Schema.String })

/** Garmin's shape for /user/permissions is unverified: a bare list or `{permissions: [...]}`. */
const PermissionsResponse = Schema.Union(
  Schema.Array(Schema.String),
  Schema.Struct({ permissions: Schema.Array(Schema.String) }).pipe(Schema.transform(Schema.Array(Schema.String), {
    strict: true,
    decode: (body) => body.permissions,
    encode: (permissions) => ({ permissions })
  }))
)

/** `path` under a configured base URL (which may carry a path prefix of its own). */
export const endpoint = (base: URL, path: string) => `${base.href.replace(/\/$/, "")}${path}`

const unavailable = (message: string, status?: number) => new AuthError({ message, reason: "unavailable", status })
const denied = (message: string, status?: number) => new AuthError({ message, reason: "denied", status })

/** Signs `request` for the user: Bearer (OAuth 2.0) when there is one, else OAuth 1.0a. */
export const signFor = (config: GarminConfig, request: HttpClientRequest.HttpClientRequest, credentials: Credentials) =>
  Effect.gen(function* () {
    if (credentials.bearer !== undefined) return HttpClientRequest.bearerToken(request, credentials.bearer)
    const oauth1 = usableOAuth1(credentials)
    if (oauth1 === undefined) return yield* denied("no token is stored for this connection")
    const consumer = consumerOf(config)
    if (Option.isNone(consumer)) {
      return yield* new AuthError({ message: "GARMIN_CLIENT_ID and GARMIN_CLIENT_SECRET are needed to sign OAuth 1.0a requests", reason: "misconfigured" })
    }
    return HttpClientRequest.setHeader(
      request,
      "authorization",
      authorizationHeader(consumer.value, { key: oauth1.token, secret: oauth1.secret }, { method: request.method, url: request.url })
    )
  })

export const makeAuth = (client: HttpClient.HttpClient, config: GarminConfig): GarminAuth => {
  const { urls } = config
  const consumer = Option.match(consumerOf(config), {
    onNone: () => Effect.fail(new AuthError({ message: "GARMIN_CLIENT_ID and GARMIN_CLIENT_SECRET must be set to connect Garmin users", reason: "misconfigured" })),
    onSome: Effect.succeed
  })

  /** Sends a request; 2xx answers come back, others become AuthErrors (401/403/400 denied). */
  const send = (request: HttpClientRequest.HttpClientRequest, what: string) =>
    client.execute(request).pipe(
      Effect.timeoutFail({ duration: TIMEOUT, onTimeout: () => unavailable(`Garmin did not answer the ${what} in time`) }),
      Effect.catchTags({
        RequestError: (e) => Effect.fail(unavailable(`could not reach Garmin for the ${what} (${e.reason})`)),
        ResponseError: (e) => Effect.fail(unavailable(`Garmin's answer to the ${what} could not be read (${e.reason})`))
      }),
      Effect.flatMap((response) => {
        if (response.status >= 200 && response.status < 300) return Effect.succeed(response)
        const message = `Garmin answered ${response.status} to the ${what}`
        return Effect.fail(response.status === 429 || response.status >= 500 ? unavailable(message, response.status) : denied(message, response.status))
      })
    )

  const body = <A, I>(schema: Schema.Schema<A, I>, what: string) => (response: HttpClientResponse.HttpClientResponse) =>
    response.json.pipe(
      Effect.flatMap(Schema.decodeUnknown(schema)),
      Effect.mapError(() => unavailable(`Garmin's answer to the ${what} could not be read`))
    )

  const formBody = (what: string) => (response: HttpClientResponse.HttpClientResponse) =>
    response.text.pipe(
      Effect.map((text) => new URLSearchParams(text)),
      Effect.mapError(() => unavailable(`Garmin's answer to the ${what} could not be read`))
    )

  const authorize = (request: HttpClientRequest.HttpClientRequest, credentials: Credentials) => signFor(config, request, credentials)

  /** The Garmin userId and granted permissions behind `credentials`. */
  const identify = (credentials: Credentials, fallbackScopes: ReadonlyArray<string> | undefined) =>
    Effect.gen(function* () {
      const get = (path: string) => authorize(HttpClientRequest.get(endpoint(urls.api, path)).pipe(HttpClientRequest.acceptJson), credentials)
      const { userId } = yield* get("/wellness-api/rest/user/id").pipe(
        Effect.flatMap((request) => send(request, "user id request")),
        Effect.flatMap(body(UserIdResponse, "user id request"))
      )
      const permissions = yield* get("/wellness-api/rest/user/permissions").pipe(
        Effect.flatMap((request) => send(request, "permissions request")),
        Effect.flatMap(body(PermissionsResponse, "permissions request")),
        // Scopes are informative; the token's own scope stands in when this call fails.
        Effect.catchTag("AuthError", (e) =>
          Effect.logWarning("could not read the Garmin user's permissions").pipe(Effect.annotateLogs("reason", e.message), Effect.as(fallbackScopes)))
      )
      return { userId, permissions }
    }).pipe(Effect.scoped)

  /** Garmin's OAuth 2.0: PKCE, client credentials in the form, the user id from the Health API. */
  const oauth2 = OAuth2.make(client, {
    name: "Garmin",
    authorizeUrl: endpoint(urls.connect, "/oauth2Confirm"),
    tokenUrl: endpoint(urls.auth, "/di-oauth2-service/oauth/token"),
    client: Effect.map(consumer, ({ key, secret }) => ({ id: key, secret })),
    pkce: true,
    clientAuth: "body",
    scopeSeparator: " ",
    timeout: TIMEOUT,
    identify: (tokens) =>
      identify({ bearer: tokens.accessToken, state: undefined }, tokens.scopes).pipe(
        Effect.map(({ userId, permissions }) => ({ providerUserId: userId, scopes: permissions }))
      )
  })

  /**
   * POST an OAuth 1.0a request-/access-token call. The protocol parameters (`oauth_callback`,
   * `oauth_verifier`) travel signed in the Authorization header; answers are form-encoded.
   */
  const oauth1Post = (url: string, token: OAuth1Key | undefined, oauthParams: Record<string, string>, what: string) =>
    Effect.gen(function* () {
      const header = authorizationHeader(yield* consumer, token, { method: "POST", url, form: oauthParams })
      const request = HttpClientRequest.post(url).pipe(HttpClientRequest.setHeader("authorization", header))
      return yield* send(request, what).pipe(Effect.flatMap(formBody(what)))
    }).pipe(Effect.scoped)

  const begin: ProviderAuth["begin"] = (version, { callbackUrl, state }) =>
    Effect.gen(function* () {
      if (version === OAUTH2) return yield* oauth2.begin({ callbackUrl, state })
      const answer = yield* oauth1Post(endpoint(urls.connectApi, "/oauth-service/oauth/request_token"), undefined, { oauth_callback: callbackUrl }, "request token call")
      const token = answer.get("oauth_token")
      const secret = answer.get("oauth_token_secret")
      if (!token || !secret) return yield* unavailable("Garmin's request token answer has no token")
      const authorizeUrl = new URL(endpoint(urls.connect, "/oauthConfirm"))
      authorizeUrl.search = new URLSearchParams({ oauth_token: token, oauth_callback: callbackUrl }).toString()
      return { authorizeUrl: authorizeUrl.toString(), pending: { sessionKey: token, secret: Redacted.make(secret) } }
    })

  const complete: ProviderAuth["complete"] = (version, { callbackUrl, pending, query }) =>
    Effect.gen(function* () {
      if (version === OAUTH2) return yield* oauth2.complete({ callbackUrl, pending, query })
      const token = query["oauth_token"]
      const verifier = query["oauth_verifier"]
      if (token === undefined || verifier === undefined || pending.sessionKey === undefined || pending.secret === undefined) {
        return yield* denied("the user did not grant access (no oauth_verifier)")
      }
      if (!constantTimeEquals(token, pending.sessionKey)) return yield* denied("the callback's oauth_token is not this flow's request token")
      const answer = yield* oauth1Post(
        endpoint(urls.connectApi, "/oauth-service/oauth/access_token"),
        { key: Redacted.make(pending.sessionKey), secret: pending.secret },
        { oauth_verifier: verifier },
        "access token call"
      )
      const accessToken = answer.get("oauth_token")
      const tokenSecret = answer.get("oauth_token_secret")
      if (!accessToken || !tokenSecret) return yield* unavailable("Garmin's access token answer has no token")
      const pair = { token: Redacted.make(accessToken), secret: Redacted.make(tokenSecret) }
      const { userId, permissions } = yield* identify(oauth1Credentials(pair), undefined)
      return { providerUserId: userId, tokens: { state: encodeState({ oauth1: pair }), scopes: permissions } } satisfies Connected
    })

  const refresh: ProviderAuth["refresh"] = oauth2.refresh

  const deregister: ProviderAuth["deregister"] = (credentials) =>
    authorize(HttpClientRequest.del(endpoint(urls.api, "/wellness-api/rest/user/registration")), credentials).pipe(
      Effect.flatMap((request) => send(request, "deregistration")),
      Effect.asVoid,
      Effect.scoped
    )

  const upgrade: GarminAuth["upgrade"] = (credentials) =>
    Effect.gen(function* () {
      const oauth1 = usableOAuth1(credentials)
      if (oauth1 === undefined) return yield* denied("not an OAuth 1.0a connection")
      const request = yield* authorize(
        HttpClientRequest.post(endpoint(urls.api, "/partner-gateway/rest/user/token-exchange")).pipe(HttpClientRequest.acceptJson),
        oauth1Credentials(oauth1)
      )
      const tokens = yield* send(request, "token exchange").pipe(Effect.flatMap((response) => oauth2.tokensOf(response, "token exchange")))
      const { userId, permissions } = yield* identify({ bearer: tokens.accessToken, state: undefined }, tokens.scopes)
      return { providerUserId: userId, tokens: { ...tokens, scopes: permissions } } satisfies Connected
    }).pipe(Effect.scoped)

  // An OAuth 1.0a callback carries no `state`: its request token finds the session.
  return { flows: [OAUTH2, OAUTH1], begin, complete, sessionKeyOf: (query) => query["oauth_token"], refresh, deregister, upgrade }
}
