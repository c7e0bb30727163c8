/**
 * Generic OAuth 2.0 for providers: authorization code (with PKCE where the provider takes
 * it), token refresh with rotation, and revocation. A provider describes its endpoints and
 * quirks as data and hooks (OAuth2Provider); `make` returns the ProviderAuth pieces built on
 * them. Every call goes through the HttpClient handed in — the plugin's sandboxed one — so
 * only the provider's declared hosts are reached.
 *
 * Errors name what failed and the provider's standard error code, never a token, a secret,
 * or the provider's free-text description.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Duration, Effect, Redacted, Schema } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { AuthError, type Connected, type ConnectionTokens, type PendingAuth } from "../provider.ts"

/** The app's client credentials at the provider. */
export interface OAuth2Client {
  readonly id: Redacted.Redacted<string>
  readonly secret: Redacted.Redacted<string>
}

/** A token endpoint's answer as received: HTTP status and parsed JSON body (undefined when not JSON). */
export interface TokenAnswer {
  readonly status: number
  readonly body: unknown
}

/** An OAuth error answer, as far as it could be read. */
export interface OAuth2Failure {
  readonly status: number
  /** The RFC 6749 `error` code, when the answer had one. */
  readonly error: string | undefined
}

/** Who the tokens belong to, and the permissions they carry when the provider says so. */
export interface Identity {
  readonly providerUserId: string
  readonly scopes?: ReadonlyArray<string> | undefined
}

export interface OAuth2Provider {
  /** Display name for error messages. */
  readonly name: string
  /** Where users approve access. */
  readonly authorizeUrl: string
  readonly tokenUrl: string
  /**
   * Token revocation: RFC 7009 (`POST` form `token`, client credentials as for the token
   * endpoint), or a provider's own shape (e.g. `POST ?access_token=`).
   */
  readonly revoke?: {
    readonly url: string
    readonly method: "POST" | "GET"
    /** The parameter carrying the token; `token` by default. */
    readonly tokenParam?: string | undefined
    /** Where the token goes: the form (the default for POST) or the query string (always for GET). */
    readonly tokenIn?: "body" | "query" | undefined
    /** Whether a POST authenticates the client as at the token endpoint (RFC 7009 asks it to; the default). */
    readonly clientAuth?: boolean | undefined
  } | undefined
  /** The client credentials, or why they are missing (reason `misconfigured`). */
  readonly client: Effect.Effect<OAuth2Client, AuthError>
  readonly scopes?: ReadonlyArray<string> | undefined
  /** How scopes are joined in the authorize URL and split in token answers; a space by default. */
  readonly scopeSeparator?: string | undefined
  /** Send a PKCE S256 challenge and verifier. */
  readonly pkce: boolean
  /** Where the client id and secret go at the token endpoint: form fields, or HTTP Basic. */
  readonly clientAuth: "body" | "basic"
  readonly authorizeParams?: Readonly<Record<string, string>> | undefined
  readonly tokenParams?: Readonly<Record<string, string>> | undefined
  /**
   * Turns a token answer that is not standard into a standard one (e.g. an error wrapped in
   * an HTTP 200 as `{status, body}`): its result is read as RFC 6749 says.
   */
  readonly decode?: ((answer: TokenAnswer) => TokenAnswer) | undefined
  /**
   * The provider's state for the connection (ConnectionTokens.state) from a successful token
   * answer's body, as decoded, on a code exchange and on every refresh; undefined keeps the
   * stored state (e.g. a refresh answer that leaves the user out).
   */
  readonly stateOf?: ((answer: unknown, tokens: ConnectionTokens) => unknown) | undefined
  /** Overrides how an error answer maps to a reason; undefined falls back to the default mapping. */
  readonly classify?: ((failure: OAuth2Failure) => AuthError["reason"] | undefined) | undefined
  /**
   * Learns whose tokens these are, called once a code is exchanged: from a user id endpoint,
   * or from the token answer's own body (as decoded), where providers put the user's id.
   */
  readonly identify: (tokens: ConnectionTokens, answer: unknown) => Effect.Effect<Identity, AuthError>
  /** How long to wait for an answer; 30 seconds by default. */
  readonly timeout?: Duration.DurationInput | undefined
}

export interface OAuth2 {
  /** The authorize URL to send the user to, and what to keep for the callback (the PKCE verifier). */
  readonly begin: (input: { readonly callbackUrl: string; readonly state: string }) => Effect.Effect<{ readonly authorizeUrl: string; readonly pending: PendingAuth }, AuthError>
  /** Exchanges the callback's code for tokens and learns the provider user they belong to. */
  readonly complete: (input: {
    readonly callbackUrl: string
    readonly pending: PendingAuth
    readonly query: Readonly<Record<string, string>>
  }) => Effect.Effect<Connected, AuthError>
  /** A new token pair; the old refresh token is kept when the provider does not rotate it. */
  readonly refresh: (refreshToken: Redacted.Redacted<string>) => Effect.Effect<ConnectionTokens, AuthError>
  /** Revokes a token at the provider; fails `misconfigured` when the provider has no revocation. */
  readonly revoke: (token: Redacted.Redacted<string>, hint?: "access_token" | "refresh_token") => Effect.Effect<void, AuthError>
  /** Reads a token answer (of a provider's own token endpoint, e.g. a token exchange) as this module does. */
  readonly tokensOf: (response: HttpClientResponse.HttpClientResponse, what: string) => Effect.Effect<ConnectionTokens, AuthError>
}

const TokenBody = Schema.Struct({
  access_token: Schema.String,
  refresh_token: Schema.optional(Schema.String),
  expires_in: Schema.optional(Schema.Number),
  refresh_token_expires_in: Schema.optional(Schema.Number),
  scope: Schema.optional(Schema.String)
})

/** Only a standard-looking code is repeated in a message: the rest of an answer may hold anything. */
const errorCodeOf = (body: unknown): string | undefined => {
  const error = typeof body === "object" && body !== null ? (body as { error?: unknown }).error : undefined
  return typeof error === "string" && /^[a-z_]{1,40}$/.test(error) ? error : undefined
}

/** RFC 6749 §5.2 codes to reasons: a bad grant is the user's to fix, a bad client the operator's. */
export const defaultClassify = ({ error, status }: OAuth2Failure): AuthError["reason"] => {
  if (status === 429 || status >= 500) return "unavailable"
  switch (error) {
    case "invalid_grant":
    case "access_denied":
      return "denied"
    case "invalid_client":
    case "unauthorized_client":
    case "unsupported_grant_type":
    case "invalid_scope":
    case "invalid_request":
    case "invalid_redirect_uri":
    case "redirect_uri_mismatch":
      return "misconfigured"
    case "temporarily_unavailable":
    case "server_error":
      return "unavailable"
  }
  return status === 401 ? "misconfigured" : "denied"
}

/** PKCE S256: the challenge is the verifier's SHA-256, base64url without padding. */
export const pkceChallenge = (verifier: string) => createHash("sha256").update(verifier).digest("base64url")

export const make = (client: HttpClient.HttpClient, provider: OAuth2Provider): OAuth2 => {
  const separator = provider.scopeSeparator ?? " "
  const timeout = provider.timeout ?? Duration.seconds(30)
  const unavailable = (message: string, status?: number) => new AuthError({ message, reason: "unavailable", status })

  /** Sends a request and reads its answer as JSON (undefined when it is not JSON); no status check. */
  const send = (request: HttpClientRequest.HttpClientRequest, what: string) =>
    client.execute(request).pipe(
      Effect.flatMap((response) =>
        response.text.pipe(
          Effect.map((text): TokenAnswer => {
            try {
              return { status: response.status, body: text.length === 0 ? undefined : JSON.parse(text) }
            } catch {
              return { status: response.status, body: undefined }
            }
          })
        )
      ),
      Effect.timeoutFail({ duration: timeout, onTimeout: () => unavailable(`${provider.name} did not answer the ${what} in time`) }),
      Effect.catchTags({
        RequestError: (e) => Effect.fail(unavailable(`could not reach ${provider.name} for the ${what} (${e.reason})`)),
        ResponseError: (e) => Effect.fail(unavailable(`${provider.name}'s answer to the ${what} could not be read (${e.reason})`))
      }),
      Effect.scoped
    )

  const failure = (answer: TokenAnswer, what: string) => {
    const error = errorCodeOf(answer.body)
    const reason = provider.classify?.({ status: answer.status, error }) ?? defaultClassify({ status: answer.status, error })
    const message = `${provider.name} answered ${answer.status}${error ? ` (${error})` : ""} to the ${what}`
    return new AuthError({ message, reason, status: answer.status })
  }

  /**
   * A (decoded) token answer as tokens, with the decoded body; `previous` stands in for a
   * refresh token the answer leaves out.
   */
  const readAnswer = (raw: TokenAnswer, what: string, previous?: Redacted.Redacted<string>) =>
    Effect.gen(function* () {
      const answer = provider.decode ? provider.decode(raw) : raw
      if (answer.status < 200 || answer.status >= 300 || errorCodeOf(answer.body) !== undefined) return yield* failure(answer, what)
      const body = yield* Schema.decodeUnknown(TokenBody)(answer.body).pipe(
        Effect.mapError(() => unavailable(`${provider.name}'s answer to the ${what} could not be read`, answer.status))
      )
      const now = Date.now()
      const refreshToken = body.refresh_token === undefined ? previous : Redacted.make(body.refresh_token)
      const tokens: ConnectionTokens = {
        accessToken: Redacted.make(body.access_token),
        refreshToken,
        accessTokenExpiresAt: body.expires_in === undefined ? undefined : new Date(now + body.expires_in * 1000),
        refreshTokenExpiresAt: body.refresh_token_expires_in === undefined ? undefined : new Date(now + body.refresh_token_expires_in * 1000),
        scopes: body.scope?.split(separator).map((s) => s.trim()).filter((s) => s.length > 0)
      }
      const state = provider.stateOf?.(answer.body, tokens)
      return { tokens: state === undefined ? tokens : { ...tokens, state }, answer: answer.body }
    })

  const readTokens = (raw: TokenAnswer, what: string, previous?: Redacted.Redacted<string>) =>
    Effect.map(readAnswer(raw, what, previous), ({ tokens }) => tokens)

  /** Client credentials on a request, where the provider wants them. */
  const authenticate = (request: HttpClientRequest.HttpClientRequest, fields: Record<string, string>) =>
    Effect.map(provider.client, ({ id, secret }) => {
      if (provider.clientAuth === "basic") {
        // RFC 6749 §2.3.1: each part form-encoded before the Basic encoding.
        const pair = `${encodeURIComponent(Redacted.value(id))}:${encodeURIComponent(Redacted.value(secret))}`
        return HttpClientRequest.bodyUrlParams(
          HttpClientRequest.setHeader(request, "authorization", `Basic ${Buffer.from(pair).toString("base64")}`),
          fields
        )
      }
      return HttpClientRequest.bodyUrlParams(request, { ...fields, client_id: Redacted.value(id), client_secret: Redacted.value(secret) })
    })

  const grant = (fields: Record<string, string>, what: string, previous?: Redacted.Redacted<string>) =>
    Effect.gen(function* () {
      const request = yield* authenticate(
        HttpClientRequest.post(provider.tokenUrl).pipe(HttpClientRequest.acceptJson),
        { ...provider.tokenParams, ...fields }
      )
      return yield* readAnswer(yield* send(request, what), what, previous)
    })

  const begin: OAuth2["begin"] = ({ callbackUrl, state }) =>
    Effect.gen(function* () {
      const { id } = yield* provider.client
      const params: Record<string, string> = { ...provider.authorizeParams, response_type: "code", client_id: Redacted.value(id), redirect_uri: callbackUrl, state }
      if (provider.scopes !== undefined && provider.scopes.length > 0) params["scope"] = provider.scopes.join(separator)
      let pending: PendingAuth = {}
      if (provider.pkce) {
        const verifier = randomBytes(48).toString("base64url")
        params["code_challenge"] = pkceChallenge(verifier)
        params["code_challenge_method"] = "S256"
        pending = { codeVerifier: Redacted.make(verifier) }
      }
      const url = new URL(provider.authorizeUrl)
      for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value)
      return { authorizeUrl: url.toString(), pending }
    })

  const complete: OAuth2["complete"] = ({ callbackUrl, pending, query }) =>
    Effect.gen(function* () {
      if (query["error"] !== undefined) {
        const code = errorCodeOf({ error: query["error"] })
        return yield* new AuthError({ message: `the user did not grant access${code ? ` (${code})` : ""}`, reason: "denied" })
      }
      const code = query["code"]
      if (code === undefined) return yield* new AuthError({ message: "the callback carries no authorization code", reason: "denied" })
      if (provider.pkce && pending.codeVerifier === undefined) {
        return yield* new AuthError({ message: "the flow kept no PKCE verifier", reason: "denied" })
      }
      const fields: Record<string, string> = { grant_type: "authorization_code", code, redirect_uri: callbackUrl }
      if (provider.pkce) fields["code_verifier"] = Redacted.value(pending.codeVerifier!)
      const { answer, tokens } = yield* grant(fields, "token exchange")
      const identity = yield* provider.identify(tokens, answer)
      return { providerUserId: identity.providerUserId, tokens: { ...tokens, scopes: identity.scopes ?? tokens.scopes } } satisfies Connected
    })

  const refresh: OAuth2["refresh"] = (refreshToken) =>
    Effect.map(grant({ grant_type: "refresh_token", refresh_token: Redacted.value(refreshToken) }, "token refresh", refreshToken), ({ tokens }) => tokens)

  const revoke: OAuth2["revoke"] = (token, hint) =>
    Effect.gen(function* () {
      const spec = provider.revoke
      if (spec === undefined) return yield* new AuthError({ message: `${provider.name} offers no token revocation`, reason: "misconfigured" })
      const fields: Record<string, string> = { [spec.tokenParam ?? "token"]: Redacted.value(token) }
      if (hint !== undefined && spec.method === "POST") fields["token_type_hint"] = hint
      const inQuery = spec.method === "GET" || spec.tokenIn === "query"
      const base = (spec.method === "GET" ? HttpClientRequest.get(spec.url) : HttpClientRequest.post(spec.url)).pipe(
        HttpClientRequest.acceptJson,
        inQuery ? HttpClientRequest.setUrlParams(fields) : (request) => request
      )
      const form = inQuery ? {} : fields
      const request = spec.method === "GET"
        ? base
        : spec.clientAuth === false
        ? HttpClientRequest.bodyUrlParams(base, form)
        : yield* authenticate(base, form)
      const answer = yield* send(request, "token revocation")
      // RFC 7009 §2.2: an unknown or already revoked token is answered 200 too.
      if (answer.status < 200 || answer.status >= 300) return yield* failure(answer, "token revocation")
    })

  const tokensOf: OAuth2["tokensOf"] = (response, what) =>
    response.json.pipe(
      Effect.map((body): TokenAnswer => ({ status: response.status, body })),
      Effect.catchAll(() => Effect.succeed<TokenAnswer>({ status: response.status, body: undefined })),
      Effect.flatMap((answer) => readTokens(answer, what))
    )

  return { begin, complete, refresh, revoke, tokensOf }
}
