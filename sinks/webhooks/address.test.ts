/**
 * Where webhooks may go (address.ts), enforced again when the sender connects (sender.ts),
 * and how they are signed (signing.ts): real loopback sockets, real DNS (/etc/hosts) and the
 * real `svix` and `standardwebhooks` verifiers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Webhook as StandardWebhook } from "standardwebhooks"
import { Webhook as SvixWebhook } from "svix"
import { checkUrl, EndpointRefused, isPrivateAddress, type Reach } from "./address.ts"
import { make } from "./sender.ts"
import { isSecret, keyOf, newSecret, sign, signedHeaders } from "./signing.ts"

describe("isPrivateAddress", () => {
  it.each<[string, boolean]>([
    // IPv4: loopback, RFC 1918, link-local / metadata, CGNAT, "this network", multicast, broadcast
    ["127.0.0.1", true], ["127.255.0.1", true], ["10.1.2.3", true], ["172.16.0.1", true], ["172.31.255.255", true],
    ["172.32.0.1", false], ["192.168.1.1", true], ["169.254.169.254", true], ["100.64.0.1", true], ["0.0.0.0", true],
    ["224.0.0.1", true], ["255.255.255.255", true],
    ["8.8.8.8", false], ["1.1.1.1", false], ["93.184.216.34", false],
    // IPv6: loopback, unspecified, link-local (also with a zone id), unique local, multicast, documentation
    ["::1", true], ["::", true], ["fe80::1", true], ["fe80::1%eth0", true], ["FE80::1", true], ["fc00::1", true],
    ["fd12:3456::1", true], ["ff02::1", true], ["2001:db8::1", true], ["2606:4700:4700::1111", false],
    // IPv4 inside IPv6 is judged by the IPv4 address: mapped (both spellings) and NAT64
    ["::ffff:127.0.0.1", true], ["::ffff:7f00:1", true], ["::ffff:8.8.8.8", false], ["64:ff9b::a00:1", true],
    ["64:ff9b::808:808", false],
    // Every other form that carries an IPv4 address: IPv4-compatible (deprecated: refused whatever
    // it holds), translated, 6to4 (judged by its IPv4), ISATAP, Teredo and local-use NAT64 (refused)
    ["::127.0.0.1", true], ["::7f00:1", true], ["::10.0.0.1", true], ["::8.8.8.8", true], ["::ffff:0:127.0.0.1", true],
    ["::ffff:0:808:808", true], ["2002:7f00:1::1", true], ["2002:a00:1::", true], ["2002:c0a8:101::1", true],
    ["2002:a9fe:a9fe::1", true], ["2002:808:808::1", false], ["2600:1f00::5efe:10.0.0.1", true],
    ["2600:1f00::200:5efe:127.0.0.1", true], ["2600:1f00::5efe:8.8.8.8", false], ["2001:0:4136:e378:8000:63bf:80ff:fffe", true],
    ["64:ff9b:1::a00:1", true], ["64:ff9b::a9fe:a9fe", true], ["::ffff:169.254.169.254", true], ["::ffff:100.64.0.1", true],
    // Other ranges that are not public: site-local, discard-only, benchmarking, documentation, SRv6
    ["fec0::1", true], ["100::1", true], ["2001:2::1", true], ["3fff::1", true], ["3fff:fff::1", true], ["3fff:1000::1", false],
    ["5f00::1", true], ["192.88.99.1", true],
    // Whatever does not parse is refused
    ["", true], ["localhost", true], ["1.2.3", true], ["256.1.1.1", true], ["1:2:3:4:5:6:7:8:9", true], [":::1", true]
  ])("%j → private: %s", (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected)
  })
})

const strict: Reach = { allowHttp: false, allowPrivate: false }
const devHttp: Reach = { allowHttp: true, allowPrivate: false }
const devPrivate: Reach = { allowHttp: false, allowPrivate: true }

/** checkUrl's verdict as one comparable string. */
const verdict = (text: string, reach: Reach) =>
  checkUrl(text, reach).pipe(Effect.match({ onFailure: (e) => `refused: ${e.message}`, onSuccess: (url) => `accepted: ${url.href}` }))

describe("checkUrl", () => {
  it.effect.each<[string, Reach, RegExp]>([
    // An IP literal needs no DNS
    ["https://8.8.8.8/hook", strict, /^accepted: https:\/\/8\.8\.8\.8\/hook$/],
    ["http://8.8.8.8/", strict, /^refused: the URL must use https$/],
    ["http://8.8.8.8/", devHttp, /^accepted/],
    ["ftp://8.8.8.8/", devHttp, /^refused: the URL must be http\(s\)$/],
    ["https://127.0.0.1/", strict, /^refused: .*private/],
    ["https://127.0.0.1/", devPrivate, /^accepted/],
    ["https://[::1]/", strict, /^refused: .*private/],
    ["https://169.254.169.254/latest/meta-data/", strict, /^refused: .*private/],
    // The WHATWG parser normalises these to 127.0.0.1 / ::ffff:7f00:1 before the check sees them
    ["https://2130706433/", strict, /^refused: .*private/],
    ["https://[::ffff:127.0.0.1]/", strict, /^refused: .*private/],
    ["http://[::127.0.0.1]/", devHttp, /^refused: .*private/],
    ["https://[::127.0.0.1]/", strict, /^refused: .*private/],
    ["https://[::ffff:0:127.0.0.1]/", strict, /^refused: .*private/],
    ["https://[64:ff9b::127.0.0.1]/", strict, /^refused: .*private/],
    ["https://[2002:7f00:1::]/", strict, /^refused: .*private/],
    ["https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", strict, /^refused: .*private/],
    ["https://[2606:4700:4700::1111]/", strict, /^accepted/],
    ["https://user:pw@8.8.8.8/", strict, /^refused: .*credentials/],
    ["not a url", strict, /^refused: the URL is not valid$/],
    // localhost resolves to loopback through /etc/hosts
    ["https://localhost/", strict, /^refused: the URL's host is, or resolves to, a private/],
    ["https://localhost/", devPrivate, /^accepted/],
    // Does not resolve now: accepted, and checked again on every connection
    ["https://does-not-exist.invalid/", strict, /^accepted/]
  ])("%s %j", ([text, reach, expected]) =>
    Effect.gen(function* () {
      expect(yield* verdict(text, reach)).toMatch(expected)
    }))

  it.effect("fails with an EndpointRefused", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(checkUrl("https://10.0.0.1/", strict))
      expect(error).toBeInstanceOf(EndpointRefused)
      expect(error._tag).toBe("EndpointRefused")
    }))
})

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
