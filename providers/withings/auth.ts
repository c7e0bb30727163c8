/**
 * Withings' connect flow and token upkeep through core's OAuth 2.0 module. Withings' quirks
 * are data and hooks: comma-separated scopes, no PKCE, client credentials in the form, the
 * token endpoint is the RPC `POST /v2/oauth2 action=requesttoken`, and its answers are HTTP
 * 200 with the outcome in `status` (`decodeTokenAnswer` makes them standard). The user is
 * named in the token answer (`userid`), and refresh tokens rotate (core stores each new pair
 * under the connection's row lock). Disconnecting is Withings' signed `revoke`, which also
 * drops the user's notification subscriptions.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as OAuth2 from "@wearflow/core/connections/oauth2"
import { AuthError, type ConnectionTokens, type ProviderAuth } from "@wearflow/core/provider"
import { Duration, Effect, Option, Schema } from "effect"
import { apiUrlOf, clientOf, type WithingsConfig } from "./config.ts"
import { type Call, outcomeOf, type WithingsError } from "./rpc.ts"
import { nonceOf, signed } from "./signature.ts"
import { stateOf, type WithingsState } from "./state.ts"

/** The one connect flow Withings offers. */
export const OAUTH2 = "oauth2"

const TIMEOUT = Duration.seconds(30)

/**
 * Withings' user id: digits, a string in real answers and a number in the spec; kept as a
 * decimal string (notifications carry it as text).
 */
export const UserId = Schema.Union(
  Schema.String.pipe(Schema.pattern(/^\d{1,20}$/)),
  Schema.Number.pipe(Schema.int(), Schema.nonNegative(), Schema.filter(Number.isSafeInteger))
).pipe(
  Schema.transform(Schema.String, { strict: true, decode: String, encode: (id) => id })
)

const WithingsAnswer = Schema.Struct({ status: Schema.Number, body: Schema.optional(Schema.Unknown) })
const decodeWithingsAnswer = Schema.decodeUnknownOption(WithingsAnswer)

/** The standard error answer (RFC 6749 §5.2) a Withings status stands for at the token endpoint. */
const standardFailureOf = (status: number): OAuth2.TokenAnswer => {
  switch (outcomeOf(status)) {
    case "rate_limited":
      return { status: 429, body: { error: "temporarily_unavailable" } }
    case "unavailable":
      return { status: 503, body: { error: "temporarily_unavailable" } }
    // Invalid params: the code or refresh token is unknown, used or dead (503 "Invalid Params").
    case "invalid":
      return { status: 400, body: { error: "invalid_grant" } }
    // Authentication failed at the token endpoint: the client's credentials.
    case "invalid_token":
      return { status: 401, body: { error: "invalid_client" } }
    case "unauthorized":
      return { status: 400, body: { error: "unauthorized_client" } }
  }
}

/**
 * Withings' token answer (always HTTP 200, `{status, body, error?}`) as a standard one: status
 * 0 is the inner body; any other status the standard error it stands for. Withings' free-text
 * `error` is dropped: it may repeat anything. A non-200 (a proxy's) is read as HTTP says.
 */
export const decodeTokenAnswer = (answer: OAuth2.TokenAnswer): OAuth2.TokenAnswer => {
  if (answer.status !== 200) return answer
  return Option.match(decodeWithingsAnswer(answer.body), {
    onNone: () => ({ status: 200, body: undefined }),
    onSome: ({ body, status }) => (status === 0 ? { status: 200, body } : standardFailureOf(status))
  })
}

/** The parts of a (decoded) token answer that name the user. */
const Identified = Schema.Struct({ userid: UserId })
const identifiedOf = Schema.decodeUnknownOption(Identified)

/** The connection's state: the Withings user and, when known, the scopes granted. */
const stateFor = (userid: string, scopes: ReadonlyArray<string> | undefined): WithingsState =>
  scopes === undefined ? { userid } : { userid, scopes: [...scopes] }

export const makeAuth = (client: HttpClient.HttpClient, config: WithingsConfig, call: Call): ProviderAuth => {
  const credentials = Option.match(clientOf(config), {
    onNone: () =>
      Effect.fail(new AuthError({ message: "WITHINGS_CLIENT_ID and WITHINGS_CLIENT_SECRET must be set to connect Withings users", reason: "misconfigured" })),
    onSome: Effect.succeed
  })

  /** Withings names the user in the token answer itself; `scope` (comma-separated) is read by the module. */
  const identify: OAuth2.OAuth2Provider["identify"] = (_tokens, answer) =>
    Option.match(identifiedOf(answer), {
      onNone: () => Effect.fail(new AuthError({ message: "Withings' token answer names no valid userid", reason: "unavailable" })),
      onSome: ({ userid }) => Effect.succeed({ providerUserId: userid })
    })

  /**
   * The state is the user and the scopes the answer names, on a refresh too (a connection
   * linked without scopes learns them). Withings may leave `userid` or `scope` out of a
   * refresh answer: then there is no new state and core keeps the stored one.
   */
  const stateOfAnswer = (answer: unknown, tokens: ConnectionTokens): WithingsState | undefined => {
    const userid = Option.getOrUndefined(identifiedOf(answer))?.userid
    return userid === undefined || tokens.scopes === undefined ? undefined : stateFor(userid, tokens.scopes)
  }

  const oauth2 = OAuth2.make(client, {
    name: "Withings",
    authorizeUrl: config.authorizeUrl,
    tokenUrl: apiUrlOf(config.apiUrl, "/v2/oauth2").href,
    client: credentials,
    scopes: config.scopes,
    scopeSeparator: ",",
    pkce: false,
    clientAuth: "body",
    tokenParams: { action: "requesttoken" },
    decode: decodeTokenAnswer,
    stateOf: stateOfAnswer,
    timeout: TIMEOUT,
    identify
  })

  const unavailable = (error: WithingsError) => new AuthError({ message: error.message, reason: "unavailable", status: error.status })
  const transient = (error: WithingsError) => error.outcome === "rate_limited" || error.outcome === "unavailable"

  /**
   * Withings' signed revoke: it ends the grant (every token of it) and drops the user's
   * notification subscriptions. A refused nonce means our client id or secret is wrong.
   * A revoke refused as invalid (an unknown user or a grant already gone) has what it
   * wanted: the grant is gone either way.
   */
  const deregister: ProviderAuth["deregister"] = (connection) =>
    Effect.gen(function* () {
      const userid = stateOf(connection)?.userid
      if (userid === undefined) {
        return yield* new AuthError({ message: "the connection names no Withings user: there is nothing to revoke", reason: "denied" })
      }
      const signing = yield* credentials
      const nonce = yield* nonceOf(call, signing).pipe(
        Effect.mapError((error) =>
          transient(error)
            ? unavailable(error)
            : new AuthError({ message: `${error.message}: check WITHINGS_CLIENT_ID and WITHINGS_CLIENT_SECRET`, reason: "misconfigured", status: error.status })
        )
      )
      yield* call(signed(signing, nonce, { path: "/v2/oauth2", action: "revoke", fields: { userid }, user: userid })).pipe(
        Effect.asVoid,
        Effect.catchAll((error) => {
          if (transient(error)) return Effect.fail(unavailable(error))
          if (error.outcome === "invalid" || error.outcome === "invalid_token") return Effect.void
          return Effect.fail(new AuthError({ message: error.message, reason: "denied", status: error.status }))
        })
      )
    })

  return {
    flows: [OAUTH2],
    begin: (_flow, input) => oauth2.begin(input),
    // An exchange answer without `scope` still names the user: the state keeps them, scopes unknown.
    complete: (_flow, input) =>
      Effect.map(oauth2.complete(input), (connected) =>
        connected.tokens.state === undefined ? { ...connected, tokens: { ...connected.tokens, state: stateFor(connected.providerUserId, undefined) } } : connected),
    // A refresh token works until the new access token is used: core stores each new pair whole.
    refresh: oauth2.refresh,
    deregister
  }
}
