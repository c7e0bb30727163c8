/**
 * The public internet, as the plugin host grants it (host.ts) to plugins whose manifest
 * declares `internet`: hosts that the operator's users choose (customers' webhook URLs), so
 * untrusted. Such a URL must not reach the operator's own network (loopback, private,
 * link-local, metadata services) unless the operator allows it. A URL is checked when a
 * plugin takes it (`checkUrl`) and again on every new connection (`connector`), against the
 * addresses actually connected to: DNS may change in between.
 */
import { Context, Data, Effect, Layer } from "effect"
import { lookup } from "node:dns/promises"
import { isIP } from "node:net"
// The file path, not the bare name: Bun answers a bare "undici" import with its own stand-in.
import { buildConnector } from "undici/index.js"

/** The URL or its host's addresses are not allowed; the message says why, never echoing the URL. */
export class AddressRefused extends Data.TaggedError("AddressRefused")<{ readonly message: string }> {}

/** The host has no address (now): refused for a connection, accepted when an endpoint is saved. */
export class HostUnresolved extends Data.TaggedError("HostUnresolved")<{ readonly message: string }> {}

/** What the operator allows beyond public https hosts (a plugin's own configuration). */
export interface Reach {
  /** Plain http (development only). */
  readonly allowHttp: boolean
  /** Private, loopback and link-local addresses. */
  readonly allowPrivate: boolean
}

const v4 = (address: string): number | undefined => {
  const parts = address.split(".")
  if (parts.length !== 4) return undefined
  let n = 0
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined
    n = n * 256 + Number(part)
  }
  return n
}

const inV4 = (n: number, base: string, bits: number) => {
  const b = v4(base)!
  const size = 2 ** (32 - bits)
  return Math.floor(n / size) === Math.floor(b / size)
}

// Not globally routable (RFC 6890 and successors).
const V4_BLOCKED: ReadonlyArray<readonly [string, number]> = [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12],
  ["192.0.0.0", 24], ["192.0.2.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["198.51.100.0", 24],
  ["192.88.99.0", 24], ["203.0.113.0", 24], ["224.0.0.0", 4], ["240.0.0.0", 4]
]

/** The 8 groups of an IPv6 address, or undefined. */
const v6Groups = (address: string): Array<number> | undefined => {
  let text = address.split("%")[0]!.toLowerCase()
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (tail) {
    const n = v4(tail[1]!)
    if (n === undefined) return undefined
    text = text.slice(0, -tail[1]!.length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`
  }
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN)))
  const head = parse(halves[0]!)
  const rest = halves.length === 2 ? parse(halves[1]!) : []
  if (halves.length === 2 && head.length + rest.length > 7) return undefined
  const groups = halves.length === 2 ? [...head, ...Array(8 - head.length - rest.length).fill(0), ...rest] : head
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0) ? groups : undefined
}

const ipv4Of = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".")

/** The IPv4 address held in two IPv6 groups. */
const v4At = (g: ReadonlyArray<number>, i: number) => ipv4Of((g[i]! * 65536 + g[i + 1]!) >>> 0)

const zeros = (g: ReadonlyArray<number>, from: number, to: number) => g.slice(from, to).every((x) => x === 0)

/**
 * The IPv4 addresses an IPv6 address leads to, for the forms that carry one: a connection to
 * any of them can end at that IPv4 host (translation, tunnels), so each is judged as IPv4.
 */
const embeddedV4 = (g: ReadonlyArray<number>): ReadonlyArray<string> => {
  const out: Array<string> = []
  if (zeros(g, 0, 5) && g[5] === 0xffff) out.push(v4At(g, 6)) // mapped ::ffff:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(g, 2, 6)) out.push(v4At(g, 6)) // NAT64 64:ff9b::/96
  if (g[0] === 0x2002) out.push(v4At(g, 1)) // 6to4 2002:aabb:ccdd::/48
  if ((g[4] === 0 || g[4] === 0x200) && g[5] === 0x5efe) out.push(v4At(g, 6)) // ISATAP interface id
  return out
}

// Not globally routable, or deprecated (RFC 6890, the IANA IPv6 special-purpose registry).
const V6_BLOCKED: ReadonlyArray<(g: ReadonlyArray<number>) => boolean> = [
  (g) => zeros(g, 0, 6), // ::/96: unspecified, loopback, IPv4-compatible ::a.b.c.d (deprecated, any IPv4)
  (g) => zeros(g, 0, 4) && g[4] === 0xffff && g[5] === 0, // ::ffff:0:a.b.c.d IPv4-translated (any IPv4)
  (g) => g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1, // 64:ff9b:1::/48 local-use NAT64
  (g) => g[0] === 0x100 && zeros(g, 1, 4), // 100::/64 discard-only
  (g) => g[0] === 0x2001 && g[1]! < 0x200, // 2001::/23 IETF protocol assignments (Teredo tunnels to any IPv4, benchmarking, ORCHID)
  (g) => g[0] === 0x2001 && g[1] === 0x0db8, // 2001:db8::/32 documentation
  (g) => g[0] === 0x3fff && g[1]! < 0x1000, // 3fff::/20 documentation
  (g) => g[0] === 0x5f00, // 5f00::/16 SRv6 SIDs
  (g) => (g[0]! & 0xfe00) === 0xfc00, // fc00::/7 unique local
  (g) => (g[0]! & 0xffc0) === 0xfe80, // fe80::/10 link-local
  (g) => (g[0]! & 0xffc0) === 0xfec0, // fec0::/10 site-local (deprecated)
  (g) => (g[0]! & 0xff00) === 0xff00 // ff00::/8 multicast
]

/** Whether an IP address is loopback, private, link-local or otherwise not public. */
export const isPrivateAddress = (address: string): boolean => {
  const n = v4(address)
  if (n !== undefined) return V4_BLOCKED.some(([base, bits]) => inV4(n, base, bits))
  const g = v6Groups(address)
  if (!g) return true
  return V6_BLOCKED.some((blocked) => blocked(g)) || embeddedV4(g).some(isPrivateAddress)
}

const checkScheme = (url: URL, reach: Reach): AddressRefused | undefined =>
  url.protocol === "https:" || (url.protocol === "http:" && reach.allowHttp)
    ? undefined
    : new AddressRefused({ message: reach.allowHttp ? "the URL must be http(s)" : "the URL must use https" })

const allowedAddresses = (hostname: string, reach: Reach) =>
  Effect.gen(function* () {
    const host = hostname.replace(/^\[|\]$/g, "")
    const resolved = isIP(host) !== 0
      ? [{ address: host, family: isIP(host) }]
      : yield* Effect.tryPromise({
          try: () => lookup(host, { all: true, verbatim: true }),
          catch: () => new HostUnresolved({ message: "the URL's host does not resolve" })
        })
    const allowed = reach.allowPrivate ? resolved : resolved.filter((a) => !isPrivateAddress(a.address))
    if (allowed.length === 0) {
      return yield* new AddressRefused({ message: "the URL's host is, or resolves to, a private, loopback or link-local address" })
    }
    return allowed
  })

const checkUrl = (text: string, reach: Reach) =>
  Effect.gen(function* () {
    if (!URL.canParse(text)) return yield* new AddressRefused({ message: "the URL is not valid" })
    const url = new URL(text)
    const scheme = checkScheme(url, reach)
    if (scheme) return yield* scheme
    if (url.username || url.password) return yield* new AddressRefused({ message: "the URL must not carry credentials" })
    // A host that does not resolve yet is accepted: every connection is checked again.
    yield* allowedAddresses(url.hostname, reach).pipe(Effect.catchTag("HostUnresolved", () => Effect.void))
    return url
  })

/** The public internet within what the operator allows (`reach`). */
export interface Guard {
  readonly reach: Reach
  /** A URL a user gives: http(s) as allowed, no credentials, its host public (one that does not resolve yet passes). */
  readonly checkUrl: (text: string) => Effect.Effect<URL, AddressRefused>
  /** Whether the URL's scheme is allowed (cheap: no DNS). */
  readonly checkScheme: (url: URL) => AddressRefused | undefined
  /** The addresses `hostname` resolves to that may be connected to; fails if there are none. */
  readonly addresses: (hostname: string) => Effect.Effect<ReadonlyArray<{ readonly address: string; readonly family: number }>, AddressRefused | HostUnresolved>
  /**
   * An undici connector (a Pool's or Agent's `connect`) that resolves each connection's host
   * itself and connects only to an allowed address, keeping the host name for TLS.
   */
  readonly connector: (options?: buildConnector.BuildOptions) => buildConnector.connector
}

export const guard = (reach: Reach): Guard => ({
  reach,
  checkUrl: (text) => checkUrl(text, reach),
  checkScheme: (url) => checkScheme(url, reach),
  addresses: (hostname) => allowedAddresses(hostname, reach),
  connector: (options = {}) => {
    const direct = buildConnector(options)
    return (connectOptions, callback) => {
      const host = connectOptions.hostname
      Effect.runPromise(Effect.either(allowedAddresses(host, reach))).then((found) => {
        if (found._tag === "Left") return callback(found.left, null)
        const name = host.replace(/^\[|\]$/g, "")
        direct(
          { ...connectOptions, hostname: found.right[0]!.address, ...(isIP(name) === 0 ? { servername: name } : {}) },
          callback
        )
      })
    }
  }
})

/**
 * The grant of the `internet` permission: the host provides it only to plugins whose manifest
 * declares `internet: true`. The operator's allowances are the plugin's configuration, passed
 * in as `reach`.
 */
export class PublicInternet extends Context.Tag("wearflow/PublicInternet")<PublicInternet, {
  readonly guard: (reach: Reach) => Guard
}>() {}

export const layer = Layer.succeed(PublicInternet, { guard })
