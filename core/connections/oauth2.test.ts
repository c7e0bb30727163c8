import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"
import { createHash } from "node:crypto"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import * as OAuth2 from "./oauth2.ts"
import { AuthError } from "../provider.ts"

const CLIENT_ID = "client-id-1"
const CLIENT_SECRET = "s3cret/with:odd&chars"

interface Received {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly form: URLSearchParams
  readonly authorization: string | undefined
}

type Answer = { readonly status: number; readonly body: unknown }

/**
 * A tiny OAuth 2.0 server on loopback: it records each request and answers with what the
 * test queued for its path (or 404).
 */
const oauthServer = Effect.acquireRelease(
  Effect.async<{ base: string; received: Array<Received>; answer: (path: string, ...answers: Array<Answer>) => void; close: () => Promise<void> }>((resume) => {
    const received: Array<Received> = []
    const queued = new Map<string, Array<Answer>>()
    const read = (req: IncomingMessage) =>
      new Promise<string>((done) => {
        let text = ""
        req.on("data", (chunk) => (text += chunk))
        req.on("end", () => done(text))
      })
    const server = createServer(async (req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost")
      const body = await read(req)
      received.push({ method: req.method ?? "", path: url.pathname, query: url.searchParams, form: new URLSearchParams(body), authorization: req.headers.authorization })
      const answer = queued.get(url.pathname)?.shift() ?? { status: 404, body: { error: "not_found" } }
      res.writeHead(answer.status, { "content-type": "application/json" })
      res.end(answer.body === undefined ? "" : JSON.stringify(answer.body))
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        received,
        answer: (path: string, ...answers: Array<Answer>) => queued.set(path, [...(queued.get(path) ?? []), ...answers]),
        close: () => new Promise<void>((done) => server.close(() => done()))
      }))
    )
  }),
  (server) => Effect.promise(server.close)
)

const tokenAnswer = (extra: Record<string, unknown> = {}): Answer => ({
  status: 200,
  body: { access_token: "access-1", token_type: "bearer", expires_in: 3600, refresh_token: "refresh-1", scope: "daily heartrate", ...extra }
})

const setup = (options: Partial<OAuth2.OAuth2Provider> = {}) =>
  Effect.gen(function* () {
    const server = yield* oauthServer
    const client = yield* HttpClient.HttpClient
    const identified: Array<string> = []
    const oauth2 = OAuth2.make(client, {
      name: "Acme",
      authorizeUrl: `${server.base}/authorize`,
      tokenUrl: `${server.base}/token`,
      revoke: { url: `${server.base}/revoke`, method: "POST" },
      client: Effect.succeed({ id: Redacted.make(CLIENT_ID), secret: Redacted.make(CLIENT_SECRET) }),
      scopes: ["daily", "heartrate"],
      pkce: true,
      clientAuth: "body",
      identify: (tokens) => {
        identified.push(Redacted.value(tokens.accessToken!))
        return Effect.succeed({ providerUserId: "user-42" })
      },
      ...options
    })
    return { server, oauth2, identified }
  })

const failureOf = <A>(result: Either.Either<A, AuthError>) => {
  if (Either.isRight(result)) throw new Error("expected a failure")
  return result.left
}

describe("core OAuth 2.0", () => {
  it.scoped("begin sends a PKCE S256 challenge of the kept verifier, and complete exchanges the code with it", () =>
    Effect.gen(function* () {
      const { server, oauth2, identified } = yield* setup()
      const { authorizeUrl, pending } = yield* oauth2.begin({ callbackUrl: "http://app.test/callback", state: "st-1" })
      const url = new URL(authorizeUrl)
      expect(url.origin + url.pathname).toBe(`${server.base}/authorize`)
      expect(url.searchParams.get("response_type")).toBe("code")
      expect(url.searchParams.get("client_id")).toBe(CLIENT_ID)
      expect(url.searchParams.get("state")).toBe("st-1")
      expect(url.searchParams.get("redirect_uri")).toBe("http://app.test/callback")
      expect(url.searchParams.get("scope")).toBe("daily heartrate")
      expect(url.searchParams.get("code_challenge_method")).toBe("S256")
      const verifier = Redacted.value(pending.codeVerifier!)
      expect(verifier).toMatch(/^[A-Za-z0-9_-]{43,128}$/)
      // RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), no padding.
      const expected = createHash("sha256").update(verifier, "ascii").digest("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
      expect(url.searchParams.get("code_challenge")).toBe(expected)
      expect(authorizeUrl).not.toContain(CLIENT_SECRET)

      server.answer("/token", tokenAnswer())
      const before = Date.now()
      const connected = yield* oauth2.complete({ callbackUrl: "http://app.test/callback", pending, query: { code: "code-1", state: "st-1" } })
      expect(connected.providerUserId).toBe("user-42")
      expect(identified).toEqual(["access-1"])
      expect(Redacted.value(connected.tokens.accessToken!)).toBe("access-1")
      expect(Redacted.value(connected.tokens.refreshToken!)).toBe("refresh-1")
      expect(connected.tokens.scopes).toEqual(["daily", "heartrate"])
      expect(connected.tokens.accessTokenExpiresAt!.getTime()).toBeGreaterThanOrEqual(before + 3600_000)
      const [exchange] = server.received
      expect(exchange!.method).toBe("POST")
      expect(exchange!.form.get("grant_type")).toBe("authorization_code")
      expect(exchange!.form.get("code")).toBe("code-1")
      expect(exchange!.form.get("redirect_uri")).toBe("http://app.test/callback")
      expect(exchange!.form.get("code_verifier")).toBe(verifier)
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("without PKCE no challenge is sent, and a provider's own scope separator is used both ways", () =>
    Effect.gen(function* () {
      const { server, oauth2 } = yield* setup({ pkce: false, scopeSeparator: "," })
      const { authorizeUrl, pending } = yield* oauth2.begin({ callbackUrl: "http://app.test/cb", state: "s" })
      const url = new URL(authorizeUrl)
      expect(url.searchParams.has("code_challenge")).toBe(false)
      expect(url.searchParams.get("scope")).toBe("daily,heartrate")
      expect(pending.codeVerifier).toBeUndefined()
      server.answer("/token", tokenAnswer({ scope: "daily,spo2" }))
      const connected = yield* oauth2.complete({ callbackUrl: "http://app.test/cb", pending, query: { code: "c" } })
      expect(connected.tokens.scopes).toEqual(["daily", "spo2"])
      expect(server.received[0]!.form.has("code_verifier")).toBe(false)
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("client credentials go in the form, or as HTTP Basic (form-encoded, then base64) with none in the form", () =>
    Effect.gen(function* () {
      const body = yield* setup({ clientAuth: "body" })
      body.server.answer("/token", tokenAnswer())
      yield* body.oauth2.refresh(Redacted.make("r0"))
      expect(body.server.received[0]!.form.get("client_id")).toBe(CLIENT_ID)
      expect(body.server.received[0]!.form.get("client_secret")).toBe(CLIENT_SECRET)
      expect(body.server.received[0]!.authorization).toBeUndefined()

      const basic = yield* setup({ clientAuth: "basic" })
      basic.server.answer("/token", tokenAnswer())
      yield* basic.oauth2.refresh(Redacted.make("r0"))
      const request = basic.server.received[0]!
      expect(request.form.has("client_id")).toBe(false)
      expect(request.form.has("client_secret")).toBe(false)
      const [scheme, encoded] = request.authorization!.split(" ")
      expect(scheme).toBe("Basic")
      const [id, secret] = Buffer.from(encoded!, "base64").toString().split(":").map(decodeURIComponent)
      expect([id, secret]).toEqual([CLIENT_ID, CLIENT_SECRET])
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("refresh returns a rotated refresh token, and keeps the old one when the provider leaves it out", () =>
    Effect.gen(function* () {
      const { server, oauth2 } = yield* setup()
      server.answer("/token", tokenAnswer({ access_token: "access-2", refresh_token: "refresh-2" }), tokenAnswer({ access_token: "access-3", refresh_token: undefined }))
      const rotated = yield* oauth2.refresh(Redacted.make("refresh-1"))
      expect(server.received[0]!.form.get("grant_type")).toBe("refresh_token")
      expect(server.received[0]!.form.get("refresh_token")).toBe("refresh-1")
      expect(Redacted.value(rotated.accessToken!)).toBe("access-2")
      expect(Redacted.value(rotated.refreshToken!)).toBe("refresh-2")
      const kept = yield* oauth2.refresh(rotated.refreshToken!)
      expect(Redacted.value(kept.accessToken!)).toBe("access-3")
      expect(Redacted.value(kept.refreshToken!)).toBe("refresh-2")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("provider errors map to reasons: invalid_grant denied, 503 and 429 unavailable, invalid_client misconfigured; no secret in any message", () =>
    Effect.gen(function* () {
      const { server, oauth2 } = yield* setup()
      const refreshToken = Redacted.make("refresh-secret-value")
      server.answer(
        "/token",
        { status: 400, body: { error: "invalid_grant", error_description: `token ${CLIENT_SECRET} refresh-secret-value` } },
        { status: 503, body: undefined },
        { status: 429, body: { error: "slow_down" } },
        { status: 401, body: { error: "invalid_client" } },
        { status: 200, body: { nothing: "useful" } }
      )
      const errors: Array<AuthError> = []
      for (let i = 0; i < 5; i++) errors.push(failureOf(yield* Effect.either(oauth2.refresh(refreshToken))))
      expect(errors.map((e) => e.reason)).toEqual(["denied", "unavailable", "unavailable", "misconfigured", "unavailable"])
      expect(errors.map((e) => e.status)).toEqual([400, 503, 429, 401, 200])
      expect(errors[0]!.message).toContain("invalid_grant")

      // Nothing listens there any more: a network failure.
      const closed = yield* setup({ tokenUrl: "http://127.0.0.1:1/token" })
      errors.push(failureOf(yield* Effect.either(closed.oauth2.refresh(refreshToken))))
      expect(errors.at(-1)!.reason).toBe("unavailable")

      const pending = { codeVerifier: Redacted.make("verifier-secret") }
      server.answer("/token", { status: 400, body: { error: "invalid_grant" } })
      errors.push(failureOf(yield* Effect.either(oauth2.complete({ callbackUrl: "http://app.test/cb", pending, query: { code: "code-secret" } }))))
      expect(errors.at(-1)!.reason).toBe("denied")
      errors.push(failureOf(yield* Effect.either(oauth2.complete({ callbackUrl: "http://app.test/cb", pending, query: { error: "access_denied" } }))))
      expect(errors.at(-1)!.reason).toBe("denied")

      for (const e of errors) {
        for (const secret of [CLIENT_SECRET, CLIENT_ID, "refresh-secret-value", "verifier-secret", "code-secret"]) {
          expect(e.message).not.toContain(secret)
          expect(JSON.stringify(e)).not.toContain(secret)
        }
      }
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("a decode hook reads answers wrapped as {status, body} in an HTTP 200", () =>
    Effect.gen(function* () {
      // A provider that answers everything with HTTP 200: `status` 0 is success, anything else an error.
      const decode = ({ status, body }: OAuth2.TokenAnswer): OAuth2.TokenAnswer => {
        const wrapped = body as { status?: number; body?: unknown; error?: string }
        if (status !== 200 || typeof wrapped?.status !== "number") return { status, body }
        if (wrapped.status === 0) return { status: 200, body: wrapped.body }
        return { status: wrapped.status === 601 ? 429 : 400, body: { error: wrapped.status === 503 ? "invalid_grant" : "invalid_request" } }
      }
      const { server, oauth2 } = yield* setup({ decode })
      server.answer(
        "/token",
        { status: 200, body: { status: 0, body: { access_token: "w-access", refresh_token: "w-refresh", expires_in: 10800, scope: "user.metrics" } } },
        { status: 200, body: { status: 503, error: "Invalid refresh token" } },
        { status: 200, body: { status: 601, error: "Too many requests" } }
      )
      const tokens = yield* oauth2.refresh(Redacted.make("old"))
      expect(Redacted.value(tokens.accessToken!)).toBe("w-access")
      expect(Redacted.value(tokens.refreshToken!)).toBe("w-refresh")
      expect(failureOf(yield* Effect.either(oauth2.refresh(Redacted.make("old")))).reason).toBe("denied")
      expect(failureOf(yield* Effect.either(oauth2.refresh(Redacted.make("old")))).reason).toBe("unavailable")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("identify reads the user from the token answer's body, as the decode hook left it", () =>
    Effect.gen(function* () {
      const decode = ({ status, body }: OAuth2.TokenAnswer): OAuth2.TokenAnswer => ({ status, body: (body as { body?: unknown }).body })
      const { server, oauth2 } = yield* setup({
        pkce: false,
        decode,
        identify: (_, answer) => {
          const userid = (answer as { userid?: unknown }).userid
          return typeof userid === "string" ? Effect.succeed({ providerUserId: userid }) : Effect.fail(new AuthError({ message: "no userid", reason: "unavailable" }))
        }
      })
      server.answer("/token", { status: 200, body: { status: 0, body: { userid: "363", access_token: "w-access", refresh_token: "w-refresh", expires_in: 10800 } } })
      const connected = yield* oauth2.complete({ callbackUrl: "http://app.test/callback", pending: {}, query: { code: "code-1" } })
      expect(connected.providerUserId).toBe("363")
      expect(Redacted.value(connected.tokens.accessToken!)).toBe("w-access")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("stateOf makes the connection's state from each token answer, and leaves it undefined (kept) when it says nothing", () =>
    Effect.gen(function* () {
      const { server, oauth2 } = yield* setup({
        pkce: false,
        stateOf: (answer) => {
          const userid = (answer as { userid?: unknown }).userid
          return typeof userid === "string" ? { userid } : undefined
        }
      })
      server.answer(
        "/token",
        { status: 200, body: { userid: "363", access_token: "a-1", refresh_token: "r-1", expires_in: 10800 } },
        { status: 200, body: { userid: "363", access_token: "a-2", refresh_token: "r-2", expires_in: 10800 } },
        { status: 200, body: { access_token: "a-3", refresh_token: "r-3", expires_in: 10800 } }
      )
      const connected = yield* oauth2.complete({ callbackUrl: "http://app.test/callback", pending: {}, query: { code: "code-1" } })
      expect(connected.tokens.state).toEqual({ userid: "363" })
      expect((yield* oauth2.refresh(Redacted.make("r-1"))).state).toEqual({ userid: "363" })
      expect((yield* oauth2.refresh(Redacted.make("r-2"))).state).toBeUndefined()
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it.scoped("revoke posts the token per RFC 7009 with client credentials, or in the query string as a provider wants it", () =>
    Effect.gen(function* () {
      const post = yield* setup()
      post.server.answer("/revoke", { status: 200, body: undefined })
      yield* post.oauth2.revoke(Redacted.make("access-9"), "access_token")
      const posted = post.server.received[0]!
      expect(posted.method).toBe("POST")
      expect(posted.form.get("token")).toBe("access-9")
      expect(posted.form.get("token_type_hint")).toBe("access_token")
      expect(posted.form.get("client_secret")).toBe(CLIENT_SECRET)
      post.server.answer("/revoke", { status: 503, body: undefined })
      expect(failureOf(yield* Effect.either(post.oauth2.revoke(Redacted.make("access-9")))).reason).toBe("unavailable")

      const get = yield* setup()
      const byGet = OAuth2.make(yield* HttpClient.HttpClient, {
        name: "Ring",
        authorizeUrl: `${get.server.base}/authorize`,
        tokenUrl: `${get.server.base}/token`,
        revoke: { url: `${get.server.base}/oauth/revoke`, method: "GET", tokenParam: "access_token" },
        client: Effect.succeed({ id: Redacted.make(CLIENT_ID), secret: Redacted.make(CLIENT_SECRET) }),
        pkce: false,
        clientAuth: "basic",
        identify: () => Effect.succeed({ providerUserId: "u" })
      })
      get.server.answer("/oauth/revoke", { status: 200, body: undefined })
      yield* byGet.revoke(Redacted.make("access-10"))
      const got = get.server.received[0]!
      expect(got.method).toBe("GET")
      expect(got.query.get("access_token")).toBe("access-10")
      expect(got.authorization).toBeUndefined()

      // POST with the access token in the query string, no client credentials.
      const query = yield* setup({ revoke: { url: `${get.server.base}/oauth/revoke`, method: "POST", tokenParam: "access_token", tokenIn: "query", clientAuth: false } })
      get.server.answer("/oauth/revoke", { status: 200, body: undefined })
      yield* query.oauth2.revoke(Redacted.make("access-11"))
      const posted2 = get.server.received[1]!
      expect(posted2.method).toBe("POST")
      expect(posted2.query.get("access_token")).toBe("access-11")
      expect(posted2.form.has("access_token")).toBe(false)
      expect(posted2.form.has("client_secret")).toBe(false)
      expect(posted2.authorization).toBeUndefined()
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
