/**
 * One attempt of one message (sender.ts), through the host's public-internet guard, and how
 * messages are signed (signing.ts): real loopback sockets, real DNS (/etc/hosts) and the real
 * `svix` and `standardwebhooks` verifiers.
 */
import { describe, expect, it } from "@effect/vitest"
import { guard } from "@wearflow/core/public-internet"
import { Effect, Redacted } from "effect"
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Webhook as StandardWebhook } from "standardwebhooks"
import { Webhook as SvixWebhook } from "svix"
import * as Sender from "./sender.ts"
import { isSecret, keyOf, newSecret, sign, signedHeaders } from "./signing.ts"

interface Seen { readonly url: string; readonly headers: IncomingHttpHeaders; readonly body: string }

/** A loopback HTTP server that records each request, then lets `answer` respond (or not). */
const server = (answer: (res: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.async<{ close: () => Promise<void>; port: number; seen: Array<Seen> }>((resume) => {
      const seen: Array<Seen> = []
      const http = createServer((req, res) => {
        let body = ""
        req.setEncoding("utf8").on("data", (chunk: string) => (body += chunk)).on("end", () => {
          seen.push({ url: req.url ?? "", headers: req.headers, body })
          answer(res)
        })
      })
      const close = () => new Promise<void>((done) => {
        http.closeAllConnections() // a hanging response would otherwise keep close() waiting
        http.close(() => done())
      })
      http.listen(0, "127.0.0.1", () => resume(Effect.succeed({ close, port: (http.address() as AddressInfo).port, seen })))
    }),
    ({ close }) => Effect.promise(close)
  )

const options = { allowHttp: true, allowPrivate: false, timeoutMs: 2_000, connections: 1 }
const make = ({ allowHttp, allowPrivate, ...rest }: typeof options) => Sender.make(guard({ allowHttp, allowPrivate }), rest)
const body = JSON.stringify({ type: "daily.data.created", data: { steps: 1234 } })

describe("sender", () => {
  it.scoped("refuses loopback at connect time: nothing reaches the server", () =>
    Effect.gen(function* () {
      const target = yield* server((res) => res.writeHead(204).end())
      const sender = yield* make(options)
      for (const host of ["127.0.0.1", "localhost"]) {
        const result = yield* Effect.promise(() => sender.attempt(`ep-${host}`, new URL(`http://${host}:${target.port}/hook`), {}, body))
        expect(result).toMatchObject({ ok: false, status: null, excerpt: null })
        expect(result.error).toMatch(/private/)
      }
      expect(target.seen).toHaveLength(0)
    }))

  it.scoped("refuses loopback spelled as IPv6 at connect time", () =>
    Effect.gen(function* () {
      const target = yield* server((res) => res.writeHead(204).end())
      const sender = yield* make(options)
      for (const host of ["[::ffff:127.0.0.1]", "[::127.0.0.1]", "[::ffff:0:127.0.0.1]", "[2002:7f00:1::]", "[64:ff9b::127.0.0.1]"]) {
        const result = yield* Effect.promise(() => sender.attempt(`ep-${host}`, new URL(`http://${host}:${target.port}/hook`), {}, body))
        expect(result).toMatchObject({ ok: false, status: null, excerpt: null })
        expect(result.error).toMatch(/private/)
      }
      expect(target.seen).toHaveLength(0)
    }))

  it.scoped("with allowPrivate, POSTs the body and headers", () =>
    Effect.gen(function* () {
      const target = yield* server((res) => res.writeHead(204).end())
      const sender = yield* make({ ...options, allowPrivate: true })
      for (const host of ["127.0.0.1", "localhost"]) {
        const result = yield* Effect.promise(() =>
          sender.attempt(`ep-${host}`, new URL(`http://${host}:${target.port}/hook?x=1`), { "x-custom": "yes" }, body)
        )
        expect(result).toMatchObject({ ok: true, status: 204, excerpt: null, error: null })
      }
      expect(target.seen).toHaveLength(2)
      for (const seen of target.seen) {
        expect(seen.url).toBe("/hook?x=1")
        expect(seen.body).toBe(body)
        expect(seen.headers).toMatchObject({ "x-custom": "yes", "content-type": "application/json", "user-agent": "Wearflow-Webhooks/1" })
      }
    }))

  it.scoped("does not follow a redirect", () =>
    Effect.gen(function* () {
      const elsewhere = yield* server((res) => res.writeHead(204).end())
      const redirector = yield* server((res) => res.writeHead(302, { location: `http://127.0.0.1:${elsewhere.port}/` }).end())
      const sender = yield* make({ ...options, allowPrivate: true })
      const result = yield* Effect.promise(() => sender.attempt("ep", new URL(`http://127.0.0.1:${redirector.port}/`), {}, body))
      expect(result).toMatchObject({ ok: false, status: 302 })
      expect(result.error).toMatch(/redirect/)
      expect(redirector.seen).toHaveLength(1)
      expect(elsewhere.seen).toHaveLength(0)
    }))

  it.scoped("gives up on a receiver that does not answer in time", () =>
    Effect.gen(function* () {
      const hanging = yield* server(() => {})
      const sender = yield* make({ ...options, allowPrivate: true, timeoutMs: 300 })
      const result = yield* Effect.promise(() => sender.attempt("ep", new URL(`http://127.0.0.1:${hanging.port}/`), {}, body))
      expect(result).toMatchObject({ ok: false, status: null, excerpt: null, error: "timed out" })
      expect(result.latencyMs).toBeLessThan(2_000)
      expect(hanging.seen).toHaveLength(1)
    }))

  it.scoped("keeps only the first 1024 bytes of an error response", () =>
    Effect.gen(function* () {
      const failing = yield* server((res) => res.writeHead(500, { "content-type": "text/plain" }).end("x".repeat(5_000)))
      const sender = yield* make({ ...options, allowPrivate: true })
      const result = yield* Effect.promise(() => sender.attempt("ep", new URL(`http://127.0.0.1:${failing.port}/`), {}, body))
      expect(result).toMatchObject({ ok: false, status: 500, error: "HTTP 500", excerpt: "x".repeat(1_024) })
    }))
})

describe("signing", () => {
  const id = "msg_2ZvJmzXxA9"
  const now = () => Math.floor(Date.now() / 1000)

  it("svix verifies svix-* headers", () => {
    const secret = newSecret()
    const ts = now()
    const headers = signedHeaders("svix", id, ts, sign([keyOf(secret)], id, ts, body))
    expect(Object.keys(headers).sort()).toEqual(["svix-id", "svix-signature", "svix-timestamp"])
    expect(new SvixWebhook(Redacted.value(secret)).verify(body, headers)).toEqual(JSON.parse(body))
    // A changed body or another secret does not verify
    expect(() => new SvixWebhook(Redacted.value(secret)).verify(body + " ", headers)).toThrow()
    expect(() => new SvixWebhook(Redacted.value(newSecret())).verify(body, headers)).toThrow()
  })

  it("standardwebhooks verifies webhook-* headers", () => {
    const secret = newSecret()
    const ts = now()
    const headers = signedHeaders("webhook", id, ts, sign([keyOf(secret)], id, ts, body))
    expect(Object.keys(headers).sort()).toEqual(["webhook-id", "webhook-signature", "webhook-timestamp"])
    expect(new StandardWebhook(Redacted.value(secret)).verify(body, headers)).toEqual(JSON.parse(body))
    expect(() => new StandardWebhook(Redacted.value(secret)).verify(body, { ...headers, "webhook-id": "msg_other" })).toThrow()
  })

  it("signs with every key during a rotation, and each secret alone verifies", () => {
    const [old, current] = [newSecret(), newSecret()]
    const ts = now()
    const signature = sign([keyOf(old), keyOf(current)], id, ts, body)
    const entries = signature.split(" ")
    expect(entries).toHaveLength(2)
    for (const entry of entries) expect(entry).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/)
    const headers = signedHeaders("svix", id, ts, signature)
    for (const secret of [old, current]) expect(new SvixWebhook(Redacted.value(secret)).verify(body, headers)).toEqual(JSON.parse(body))
  })

  it("isSecret accepts whsec_ plus 24–64 bytes of base64 only", () => {
    for (let i = 0; i < 20; i++) expect(isSecret(Redacted.value(newSecret()))).toBe(true)
    const b64 = (bytes: number) => Buffer.alloc(bytes, 7).toString("base64")
    expect(isSecret("whsec_" + b64(24))).toBe(true)
    expect(isSecret("whsec_" + b64(64))).toBe(true)
    expect(isSecret("whsec_short")).toBe(false)
    expect(isSecret("whsec_" + b64(23))).toBe(false)
    expect(isSecret("whsec_" + b64(65))).toBe(false)
    expect(isSecret(b64(32))).toBe(false) // no prefix
    expect(isSecret("whsec_" + "!".repeat(44))).toBe(false) // not base64
    expect(isSecret("whsec_")).toBe(false)
  })
})
