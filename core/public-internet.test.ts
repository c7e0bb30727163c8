/**
 * The public-internet guard: which addresses are private, which URLs a plugin may take, and
 * the connector that checks every connection again. Real loopback sockets, real DNS (/etc/hosts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
// The file path, not the bare name: Bun answers a bare "undici" import with its own stand-in.
import { Pool } from "undici/index.js"
import { AddressRefused, guard, isPrivateAddress, type Reach } from "./public-internet.ts"

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
  guard(reach).checkUrl(text).pipe(Effect.match({ onFailure: (e) => `refused: ${e.message}`, onSuccess: (url) => `accepted: ${url.href}` }))

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

  it.effect("fails with an AddressRefused", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(guard(strict).checkUrl("https://10.0.0.1/"))
      expect(error).toBeInstanceOf(AddressRefused)
      expect(error._tag).toBe("AddressRefused")
    }))
})

/** A loopback HTTP server that counts the requests that reached it. */
const counting = Effect.acquireRelease(
  Effect.async<{ close: () => Promise<void>; port: number; hits: () => number }>((resume) => {
    let hits = 0
    const http = createServer((_, res) => {
      hits++
      res.writeHead(204).end()
    })
    const close = () => new Promise<void>((done) => {
      http.closeAllConnections()
      http.close(() => done())
    })
    http.listen(0, "127.0.0.1", () => resume(Effect.succeed({ close, port: (http.address() as AddressInfo).port, hits: () => hits })))
  }),
  ({ close }) => Effect.promise(close)
)

/** A GET through a pool whose connections go through `reach`'s connector: the status, or the connection's error. */
const through = (reach: Reach, url: URL) =>
  Effect.acquireRelease(
    Effect.sync(() => new Pool(url.origin, { connect: guard(reach).connector({ timeout: 2_000 }) })),
    (pool) => Effect.promise(() => pool.destroy())
  ).pipe(
    Effect.flatMap((pool) =>
      Effect.promise(() =>
        pool.request({ method: "GET", path: url.pathname }).then(
          async (response) => {
            await response.body.dump()
            return `status ${response.statusCode}`
          },
          (error: unknown) => `error: ${error instanceof Error ? error.message : String(error)}`
        )
      )
    )
  )

describe("connector", () => {
  it.scoped("refuses loopback however it is spelled, at connect time: nothing reaches the server", () =>
    Effect.gen(function* () {
      const target = yield* counting
      for (const host of ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "[::127.0.0.1]", "[::ffff:0:127.0.0.1]", "[2002:7f00:1::]", "[64:ff9b::127.0.0.1]"]) {
        expect(yield* through(devHttp, new URL(`http://${host}:${target.port}/`)), host).toMatch(/^error: .*private/)
      }
      expect(target.hits()).toBe(0)
    }))

  it.scoped("connects when the operator allows private addresses", () =>
    Effect.gen(function* () {
      const target = yield* counting
      for (const host of ["127.0.0.1", "localhost"]) {
        expect(yield* through({ allowHttp: true, allowPrivate: true }, new URL(`http://${host}:${target.port}/`))).toBe("status 204")
      }
      expect(target.hits()).toBe(2)
    }))
})
