/**
 * Withings' OAuth 2.0 through core's OAuth module, against the fake Withings over loopback:
 * the authorize URL, the code flow with its `userid` and granted scopes, rotating refresh
 * tokens, status-in-200 failures mapped to reasons, and the signed revoke.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Host from "@wearflow/core/host"
import { AuthError, type ConnectionTokens, type Credentials, type ProviderAuth } from "@wearflow/core/provider"
import { ConfigProvider, Effect, Either, Layer, Redacted } from "effect"
import { decodeTokenAnswer, makeAuth, OAUTH2 } from "./auth.ts"
import * as Budget from "./budget.ts"
import { WithingsConfig } from "./config.ts"
import { manifest } from "./mod.ts"
import { layerProviderOn, WithingsProvider } from "./provider.ts"
import { makeCall } from "./rpc.ts"
import { startFakeWithings, type FakeWithings } from "./testing/fake-withings.ts"

const CALLBACK = "https://wearflow.example/api/v1/connect/withings/callback"

interface Setup {
  readonly fake: FakeWithings
  readonly auth: ProviderAuth
  /** A Withings data call with a Bearer token: the token's status (0 when it works). */
  readonly use: (accessToken: Redacted.Redacted<string> | string) => Effect.Effect<number>
}

/** The fake Withings and the plugin's auth pointed at it; `env` overrides the settings. */
const setup = (env: Record<string, string | undefined> = {}) =>
  Effect.gen(function* () {
    const fake = yield* Effect.acquireRelease(
      Effect.promise(() => startFakeWithings({ clientId: "client-1", clientSecret: "secret-1", redirectUris: [CALLBACK] })),
      (fake) => Effect.promise(() => fake.close())
    )
    const settings: Record<string, string | undefined> = {
      WITHINGS_CLIENT_ID: "client-1",
      WITHINGS_CLIENT_SECRET: "secret-1",
      WITHINGS_API_URL: fake.url,
      WITHINGS_AUTH_URL: `${fake.url}/oauth2_user/authorize2`,
      WITHINGS_SCOPES: "user.metrics,user.activity",
      ...env
    }
    const defined = Object.entries(settings).filter((entry): entry is [string, string] => entry[1] !== undefined)
    const config = yield* Effect.withConfigProvider(WithingsConfig, ConfigProvider.fromMap(new Map(defined)))
    const client = yield* HttpClient.HttpClient
    const call = makeCall(client, config, Budget.unlimited)
    const use: Setup["use"] = (accessToken) =>
      call({ path: "/v2/user", action: "getdevice", bearer: typeof accessToken === "string" ? Redacted.make(accessToken) : accessToken }).pipe(
        Effect.as(0),
        Effect.catchAll((error) => Effect.succeed(error.status ?? -1))
      )
    return { fake, auth: makeAuth(client, config, call), use } satisfies Setup
  })

/** Sends the "browser" to the authorize URL and returns the callback's query. */
const consent = (authorizeUrl: string) =>
  Effect.promise(async () => {
    const response = await fetch(authorizeUrl, { redirect: "manual" })
    const location = response.headers.get("location")
    if (response.status !== 302 || location === null) throw new Error(`the authorize page answered ${response.status}`)
    return Object.fromEntries(new URL(location).searchParams)
  })

/** The whole code flow: begin, consent at the fake, complete. */
const connect = ({ auth }: Setup) =>
  Effect.gen(function* () {
    const { authorizeUrl, pending } = yield* auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-1" })
    const query = yield* consent(authorizeUrl)
    return yield* auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending, query })
  })

/** Credentials as core hands them back: the state through its JSON storage. */
const credentialsOf = (tokens: ConnectionTokens): Credentials => ({
  bearer: tokens.accessToken,
  state: tokens.state === undefined ? undefined : JSON.parse(JSON.stringify(tokens.state))
})

const failureOf = <A>(result: Either.Either<A, AuthError>): AuthError => {
  if (Either.isRight(result)) throw new Error("expected a failure")
  return result.left
}

const grantsOf = (fake: FakeWithings, userId: string) => [...fake.state.grants.values()].filter((grant) => grant.userId === userId)

describe("Withings token answers", () => {
  it("read as standard answers: status 0 is the inner body, other statuses the error they stand for, Withings' text dropped", () => {
    const withings = (status: number, body: unknown = {}) => decodeTokenAnswer({ status: 200, body: { status, body, error: "free text 10.1.2.3" } })
    expect(withings(0, { access_token: "a", userid: "1" })).toEqual({ status: 200, body: { access_token: "a", userid: "1" } })
    expect(withings(503)).toEqual({ status: 400, body: { error: "invalid_grant" } })
    expect(withings(601)).toEqual({ status: 429, body: { error: "temporarily_unavailable" } })
    expect(withings(522)).toEqual({ status: 503, body: { error: "temporarily_unavailable" } })
    expect(withings(9999)).toEqual({ status: 503, body: { error: "temporarily_unavailable" } })
    expect(withings(401)).toEqual({ status: 401, body: { error: "invalid_client" } })
    expect(withings(214)).toEqual({ status: 400, body: { error: "unauthorized_client" } })
    // Not Withings' shape: unreadable. Not HTTP 200 (a proxy): as HTTP says.
    expect(decodeTokenAnswer({ status: 200, body: { access_token: "a" } })).toEqual({ status: 200, body: undefined })
    expect(decodeTokenAnswer({ status: 200, body: undefined })).toEqual({ status: 200, body: undefined })
    expect(decodeTokenAnswer({ status: 502, body: undefined })).toEqual({ status: 502, body: undefined })
  })
})

describe("Withings OAuth 2.0", () => {
  it.scoped("the authorize URL asks for comma-separated scopes with state, redirect_uri and client_id, never the secret", () =>
    Effect.gen(function* () {
      const { auth, fake } = yield* setup()
      const { authorizeUrl, pending } = yield* auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-1" })
      const url = new URL(authorizeUrl)
      expect(`${url.origin}${url.pathname}`).toBe(`${fake.url}/oauth2_user/authorize2`)
      expect(Object.fromEntries(url.searchParams)).toEqual({
        response_type: "code",
        client_id: "client-1",
        redirect_uri: CALLBACK,
        state: "state-1",
        scope: "user.metrics,user.activity"
      })
      expect(authorizeUrl).not.toContain("secret-1")
      // No PKCE: nothing is kept for the callback.
      expect(pending).toEqual({})
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("the code flow names the user by the token answer's userid (a string) and keeps it with the granted scopes as the state", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const { fake, use } = setupped
      fake.addUser("30000042")
      fake.state.nextConsent = "30000042"
      const connected = yield* connect(setupped)
      expect(connected.providerUserId).toBe("30000042")
      expect(connected.tokens.scopes).toEqual(["user.metrics", "user.activity"])
      expect(connected.tokens.state).toEqual({ userid: "30000042", scopes: ["user.metrics", "user.activity"] })
      expect(connected.tokens.refreshToken).toBeDefined()
      expect(connected.tokens.accessTokenExpiresAt!.getTime()).toBeGreaterThan(Date.now() + 3 * 3600_000 - 60_000)
      expect(yield* use(connected.tokens.accessToken!)).toBe(0)
      // The token request was Withings' RPC, credentials in the form.
      const exchange = fake.requests.find((request) => request.path === "/v2/oauth2")
      expect(exchange?.params).toMatchObject({ action: "requesttoken", grant_type: "authorization_code", client_id: "client-1", client_secret: "secret-1", redirect_uri: CALLBACK })
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a scope the user unticked is missing from the state", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      setupped.fake.addUser("30000043", { approvedScopes: ["user.activity"] })
      setupped.fake.state.nextConsent = "30000043"
      const connected = yield* connect(setupped)
      expect(connected.tokens.state).toEqual({ userid: "30000043", scopes: ["user.activity"] })
      expect(connected.tokens.scopes).toEqual(["user.activity"])
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a userid answered as a number (as the spec draws it) is kept as its decimal string", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      setupped.fake.state.oauth.useridType = "number"
      setupped.fake.state.nextConsent = "30000044"
      const connected = yield* connect(setupped)
      expect(connected.providerUserId).toBe("30000044")
      expect(connected.tokens.state).toEqual({ userid: "30000044", scopes: ["user.metrics", "user.activity"] })
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a declined consent, a dead code and a used code are denied", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const { auth, fake } = setupped
      fake.addUser("30000045", { deniesConsent: true })
      fake.state.nextConsent = "30000045"
      const { authorizeUrl, pending } = yield* auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-1" })
      const declined = failureOf(yield* Effect.either(auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending, query: yield* consent(authorizeUrl) })))
      expect(declined.reason).toBe("denied")

      const unknown = failureOf(yield* Effect.either(auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending: {}, query: { code: "no-such-code", state: "state-1" } })))
      expect(unknown.reason).toBe("denied")
      // Withings' free-text error ("Invalid Params: invalid code") is not repeated.
      expect(unknown.message).not.toMatch(/Invalid Params|invalid code/)

      fake.state.nextConsent = undefined
      const again = yield* auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-2" })
      const query = yield* consent(again.authorizeUrl)
      yield* auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending: again.pending, query })
      const reused = failureOf(yield* Effect.either(auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending: again.pending, query })))
      expect(reused.reason).toBe("denied")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("refresh answers a new pair; the old refresh token dies once the new access token is used", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const { auth, fake, use } = setupped
      const connected = yield* connect(setupped)
      const first = connected.tokens.refreshToken!
      const refreshed = yield* auth.refresh(first)
      expect(Redacted.value(refreshed.refreshToken!)).not.toBe(Redacted.value(first))
      expect(Redacted.value(refreshed.accessToken!)).not.toBe(Redacted.value(connected.tokens.accessToken!))
      // Withings' refresh answer leaves userid out: the stored state stays.
      expect(refreshed.state).toBeUndefined()
      expect(refreshed.scopes).toEqual(["user.metrics", "user.activity"])
      expect(fake.state.counters.refreshes).toBe(1)

      expect(yield* use(refreshed.accessToken!)).toBe(0)
      const stale = failureOf(yield* Effect.either(auth.refresh(first)))
      expect(stale.reason).toBe("denied")
      expect(stale.message).not.toContain(Redacted.value(first))

      const next = yield* auth.refresh(refreshed.refreshToken!)
      expect(yield* use(next.accessToken!)).toBe(0)
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a refresh answer that names the user and scopes gives the state", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      setupped.fake.state.oauth.refreshIncludesUserid = true
      setupped.fake.state.oauth.useridType = "number"
      setupped.fake.addUser("30000046", { approvedScopes: ["user.metrics"] })
      setupped.fake.state.nextConsent = "30000046"
      const connected = yield* connect(setupped)
      const refreshed = yield* setupped.auth.refresh(connected.tokens.refreshToken!)
      expect(refreshed.state).toEqual({ userid: "30000046", scopes: ["user.metrics"] })
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a refresh token of a revoked grant is denied", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const connected = yield* connect(setupped)
      yield* setupped.auth.deregister(credentialsOf(connected.tokens))
      const dead = failureOf(yield* Effect.either(setupped.auth.refresh(connected.tokens.refreshToken!)))
      expect(dead.reason).toBe("denied")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("status 601 (too many requests) and unknown statuses are unavailable, without Withings' text", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const { auth, fake } = setupped
      const connected = yield* connect(setupped)
      fake.inject({ path: "/v2/oauth2", action: "requesttoken", withingsStatus: 601, error: "Too many requests from 10.1.2.3" })
      const limited = failureOf(yield* Effect.either(auth.refresh(connected.tokens.refreshToken!)))
      expect(limited).toMatchObject({ reason: "unavailable", status: 429 })
      expect(limited.message).not.toContain("10.1.2.3")

      fake.inject({ path: "/v2/oauth2", action: "requesttoken", withingsStatus: 9999, error: "Something odd" })
      const odd = failureOf(yield* Effect.either(auth.refresh(connected.tokens.refreshToken!)))
      expect(odd.reason).toBe("unavailable")
      expect(odd.message).not.toContain("Something odd")

      fake.inject({ path: "/v2/oauth2", action: "requesttoken", httpStatus: 502, body: "bad gateway" })
      expect(failureOf(yield* Effect.either(auth.refresh(connected.tokens.refreshToken!))).reason).toBe("unavailable")

      // Rate-limited during the code exchange too.
      const { authorizeUrl, pending } = yield* auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-1" })
      const query = yield* consent(authorizeUrl)
      fake.inject({ path: "/v2/oauth2", action: "requesttoken", withingsStatus: 601 })
      expect(failureOf(yield* Effect.either(auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending, query }))).reason).toBe("unavailable")

      // The refresh token survived all of it.
      yield* auth.refresh(connected.tokens.refreshToken!)
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("authentication failures at the token endpoint are the client's: misconfigured", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const connected = yield* connect(setupped)
      setupped.fake.inject({ path: "/v2/oauth2", action: "requesttoken", withingsStatus: 401, error: "invalid_token: nope" })
      expect(failureOf(yield* Effect.either(setupped.auth.refresh(connected.tokens.refreshToken!))).reason).toBe("misconfigured")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("without client credentials every step is misconfigured, naming the settings", () =>
    Effect.gen(function* () {
      const { auth } = yield* setup({ WITHINGS_CLIENT_SECRET: undefined })
      const begun = failureOf(yield* Effect.either(auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-1" })))
      expect(begun.reason).toBe("misconfigured")
      expect(begun.message).toContain("WITHINGS_CLIENT_ID")
      expect(begun.message).toContain("WITHINGS_CLIENT_SECRET")
      expect(failureOf(yield* Effect.either(auth.refresh(Redacted.make("r")))).reason).toBe("misconfigured")
      expect(failureOf(yield* Effect.either(auth.deregister({ bearer: Redacted.make("a"), state: { userid: "1" } }))).reason).toBe("misconfigured")
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})

describe("Withings auth in the plugin host", () => {
  it.scoped("connects, refreshes and revokes through the plugin's sandboxed HttpClient (only the declared API host)", () =>
    Effect.gen(function* () {
      const fake = yield* Effect.acquireRelease(
        Effect.promise(() => startFakeWithings({ clientId: "client-1", clientSecret: "secret-1" })),
        (fake) => Effect.promise(() => fake.close())
      )
      const env = new Map([
        ["WITHINGS_CLIENT_ID", "client-1"],
        ["WITHINGS_CLIENT_SECRET", "secret-1"],
        ["WITHINGS_API_URL", fake.url],
        ["WITHINGS_AUTH_URL", `${fake.url}/oauth2_user/authorize2`]
      ])
      const unmetered = layerProviderOn.pipe(Layer.provide(Layer.succeed(Budget.WithingsBudget, Budget.unlimited)))
      const provider = yield* Effect.provide(WithingsProvider, Host.load({ manifest, layer: unmetered }, ConfigProvider.fromMap(env)))
      const auth = provider.auth!
      expect(auth.flows).toEqual([OAUTH2])
      fake.state.nextConsent = "30000060"
      const { authorizeUrl, pending } = yield* auth.begin(OAUTH2, { callbackUrl: CALLBACK, state: "state-1" })
      // The configured default scopes.
      expect(new URL(authorizeUrl).searchParams.get("scope")).toBe("user.metrics,user.activity")
      const connected = yield* auth.complete(OAUTH2, { callbackUrl: CALLBACK, pending, query: yield* consent(authorizeUrl) })
      expect(connected.tokens.state).toEqual({ userid: "30000060", scopes: ["user.metrics", "user.activity"] })
      const refreshed = yield* auth.refresh(connected.tokens.refreshToken!)
      yield* auth.deregister(credentialsOf({ ...refreshed, state: connected.tokens.state }))
      expect(grantsOf(fake, "30000060").every((grant) => grant.revoked)).toBe(true)
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})

describe("Withings deregistration (signed revoke)", () => {
  it.scoped("revokes the grant and drops the user's notification subscriptions; revoking again still succeeds", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const { auth, fake, use } = setupped
      fake.state.nextConsent = "30000050"
      const connected = yield* connect(setupped)
      const other = fake.connect("30000051")
      const subscription = (userId: string, appli: number) => ({ userId, appli, callbackurl: "https://wearflow.example/api/v1/webhooks/withings/s", comment: "", expires: 2_147_483_647 })
      fake.state.subscriptions.push(subscription("30000050", 1), subscription("30000050", 16), subscription("30000051", 1))

      yield* auth.deregister(credentialsOf(connected.tokens))
      expect(grantsOf(fake, "30000050").every((grant) => grant.revoked)).toBe(true)
      expect(yield* use(connected.tokens.accessToken!)).toBe(401)
      expect(fake.state.subscriptions.map((sub) => sub.userId)).toEqual(["30000051"])
      // Another user's grant is untouched.
      expect(yield* use(other.access_token)).toBe(0)

      // The calls were signed: getnonce, then revoke with the nonce; no secret, no Bearer.
      const signedCalls = fake.requests.filter((request) => request.path === "/v2/signature" || request.params["action"] === "revoke")
      expect(signedCalls.map((request) => request.params["action"])).toEqual(["getnonce", "revoke"])
      for (const request of signedCalls) {
        expect(request.params["client_secret"]).toBeUndefined()
        expect(request.headers["authorization"]).toBeUndefined()
      }
      expect(signedCalls[1]?.params).toMatchObject({ client_id: "client-1", userid: "30000050" })

      // Already revoked, and a user Withings no longer knows: the grant is gone either way.
      yield* auth.deregister(credentialsOf(connected.tokens))
      yield* auth.deregister({ bearer: undefined, state: { userid: "99999999" } })
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a client secret that signs wrongly is refused by Withings: misconfigured, and the grant stays", () =>
    Effect.gen(function* () {
      const setupped = yield* setup({ WITHINGS_CLIENT_SECRET: "not-the-secret" })
      const grant = setupped.fake.connect("30000052")
      const refused = failureOf(yield* Effect.either(setupped.auth.deregister({ bearer: Redacted.make(grant.access_token), state: { userid: "30000052" } })))
      expect(refused.reason).toBe("misconfigured")
      expect(refused.message).toContain("WITHINGS_CLIENT_SECRET")
      expect(refused.message).not.toContain("not-the-secret")
      expect(grantsOf(setupped.fake, "30000052").every((g) => !g.revoked)).toBe(true)
      expect(yield* setupped.use(grant.access_token)).toBe(0)
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a rate-limited or unreachable revoke is unavailable (core retries), a refused one denied; neither revokes anything", () =>
    Effect.gen(function* () {
      const setupped = yield* setup()
      const { auth, fake, use } = setupped
      const grant = fake.connect("30000053")
      const credentials = { bearer: Redacted.make(grant.access_token), state: { userid: "30000053" } }
      fake.inject({ path: "/v2/oauth2", action: "revoke", withingsStatus: 601 })
      expect(failureOf(yield* Effect.either(auth.deregister(credentials)))).toMatchObject({ reason: "unavailable", status: 601 })
      fake.inject({ path: "/v2/signature", action: "getnonce", withingsStatus: 601 })
      expect(failureOf(yield* Effect.either(auth.deregister(credentials))).reason).toBe("unavailable")
      fake.inject({ path: "/v2/oauth2", action: "revoke", httpStatus: 502 })
      expect(failureOf(yield* Effect.either(auth.deregister(credentials))).reason).toBe("unavailable")
      // Withings refusing the revoke outright (an "unauthorized" status): denied, core disconnects and logs it.
      fake.inject({ path: "/v2/oauth2", action: "revoke", withingsStatus: 214, error: "Unauthorized for 10.1.2.3" })
      const unauthorized = failureOf(yield* Effect.either(auth.deregister(credentials)))
      expect(unauthorized.reason).toBe("denied")
      expect(unauthorized.message).not.toContain("10.1.2.3")
      expect(yield* use(grant.access_token)).toBe(0)
      yield* auth.deregister(credentials)
      expect(yield* use(grant.access_token)).toBe(401)
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a connection that names no Withings user cannot be revoked: denied (core disconnects anyway)", () =>
    Effect.gen(function* () {
      const { auth, fake } = yield* setup()
      const refused = failureOf(yield* Effect.either(auth.deregister({ bearer: Redacted.make("a"), state: undefined })))
      expect(refused.reason).toBe("denied")
      expect(fake.requests).toEqual([])
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
