import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Config, ConfigError, ConfigProvider, Context, Effect, Either, Exit, Layer } from "effect"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { load } from "./host.ts"
import type { Manifest } from "./plugin.ts"
import { PublicInternet } from "./public-internet.ts"

/** A loopback HTTP server that counts the requests that reached it. */
const countingServer = Effect.acquireRelease(
  Effect.async<{ server: Server; port: number; hits: () => number }>((resume) => {
    let hits = 0
    const server = createServer((_, res) => {
      hits++
      res.end("ok")
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ server, port: (server.address() as AddressInfo).port, hits: () => hits }))
    )
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

class Probe extends Context.Tag("test/Probe")<
  Probe,
  { readonly get: (url: string) => Effect.Effect<number, HttpClientError.HttpClientError>; readonly secret: Either.Either<string, ConfigError.ConfigError> }
>() {}

const manifest = (net: ReadonlyArray<string>): Manifest => ({
  id: "probe",
  kind: "provider",
  version: "0.0.0",
  permissions: { net: Config.succeed(net), env: ["PROBE_*", "SHARED_NAME"] },
  config: Config.string("PROBE_TOKEN")
})

/** A plugin layer that reads config at construction and exposes its HttpClient. */
const probePlugin = (net: ReadonlyArray<string>) => ({
  manifest: manifest(net),
  layer: Layer.effect(
    Probe,
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      const secret = yield* Effect.either(Config.string("OTHER_SECRET"))
      yield* Config.string("PROBE_TOKEN")
      return { get: (url: string) => client.get(url).pipe(Effect.map((r) => r.status)), secret }
    })
  )
})

const env = ConfigProvider.fromMap(new Map([["PROBE_TOKEN", "t"], ["OTHER_SECRET", "s3cret"], ["SHARED_NAME", "x"]]))

describe("plugin host", () => {
  it.scoped("lets a plugin call a declared host", () =>
    Effect.gen(function* () {
      const { port, hits } = yield* countingServer
      const probe = yield* Effect.provide(Probe, load(probePlugin([`127.0.0.1:${port}`]), env).pipe(Layer.provide(FetchHttpClient.layer)))
      expect(yield* probe.get(`http://127.0.0.1:${port}/x`)).toBe(200)
      expect(hits()).toBe(1)
    })
  )

  it.scoped("refuses an undeclared host with a typed error, before connecting", () =>
    Effect.gen(function* () {
      const { port, hits } = yield* countingServer
      const probe = yield* Effect.provide(Probe, load(probePlugin(["api.provider.example"]), env).pipe(Layer.provide(FetchHttpClient.layer)))
      const error = yield* Effect.flip(probe.get(`http://127.0.0.1:${port}/x`))
      expect(error._tag).toBe("RequestError")
      expect(error.reason).toBe("InvalidUrl")
      expect((error.cause as { _tag: string })._tag).toBe("NetPermissionDenied")
      expect(error.message).toContain(`127.0.0.1:${port}`)
      expect(hits()).toBe(0)
    })
  )

  it.scoped("refuses undeclared environment names with a typed error, and still reads declared ones", () =>
    Effect.gen(function* () {
      const probe = yield* Effect.provide(Probe, load(probePlugin([]), env).pipe(Layer.provide(FetchHttpClient.layer)))
      const error = Either.getLeft(probe.secret)
      expect(error._tag).toBe("Some")
      const configError = (error as { value: ConfigError.ConfigError }).value
      expect(ConfigError.isUnsupported(configError)).toBe(true)
      expect(String(configError)).toContain("OTHER_SECRET")
      expect(String(configError)).not.toContain("s3cret")
    })
  )

  it.effect("a missing declared variable fails construction as missing data", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.provide(Probe, load(probePlugin([]), ConfigProvider.fromMap(new Map())).pipe(Layer.provide(FetchHttpClient.layer)))
      )
      expect(exit._tag).toBe("Failure")
      expect(String(exit)).toContain("PROBE_TOKEN")
    })
  )

  it.scoped("checks the final URL: a plugin cannot rewrite a request past the guard, and relative URLs work", () =>
    Effect.gen(function* () {
      const { port, hits } = yield* countingServer
      const sneaky = {
        manifest: manifest(["api.provider.example"]),
        layer: Layer.effect(
          Probe,
          Effect.map(HttpClient.HttpClient, (client) => ({
            get: (url: string) =>
              client.pipe(HttpClient.mapRequest(HttpClientRequest.setUrl(url))).get("https://api.provider.example/ok").pipe(Effect.map((r) => r.status)),
            secret: Either.right("")
          }))
        )
      }
      const probe = yield* Effect.provide(Probe, load(sneaky, env).pipe(Layer.provide(FetchHttpClient.layer)))
      const error = yield* Effect.flip(probe.get(`http://127.0.0.1:${port}/x`))
      expect((error.cause as { _tag: string })._tag).toBe("NetPermissionDenied")
      expect(hits()).toBe(0)

      const based = {
        manifest: manifest([`127.0.0.1:${port}`]),
        layer: Layer.effect(
          Probe,
          Effect.map(HttpClient.HttpClient, (client) => ({
            get: (path: string) =>
              client.pipe(HttpClient.mapRequest(HttpClientRequest.prependUrl(`http://127.0.0.1:${port}`))).get(path).pipe(Effect.map((r) => r.status)),
            secret: Either.right("")
          }))
        )
      }
      const relative = yield* Effect.provide(Probe, load(based, env).pipe(Layer.provide(FetchHttpClient.layer)))
      expect(yield* relative.get("/x")).toBe(200)
      expect(hits()).toBe(1)
    }))

  it.effect("the restricted configuration does not leak to layers built beside the plugin", () =>
    Effect.gen(function* () {
      class Sibling extends Context.Tag("test/Sibling")<Sibling, string>() {}
      const sibling = Layer.effect(Sibling, Config.string("OTHER_SECRET"))
      const both = Layer.merge(load(probePlugin([]), env), sibling).pipe(Layer.provide(FetchHttpClient.layer))
      const value = yield* Effect.provide(Sibling, both).pipe(Effect.withConfigProvider(env))
      expect(value).toBe("s3cret")
    }))

  describe("the internet permission", () => {
    class Reacher extends Context.Tag("test/Reacher")<Reacher, { readonly check: (url: string) => Effect.Effect<string> }>() {}

    /** A plugin that takes the public-internet guard when built, with private addresses refused. */
    const reacher = (internet: boolean) => ({
      manifest: { ...manifest([]), id: "reacher", permissions: { net: Config.succeed([]), internet, env: [] } },
      layer: Layer.effect(
        Reacher,
        Effect.map(PublicInternet, ({ guard }) => {
          const internetGuard = guard({ allowHttp: true, allowPrivate: false })
          return {
            check: (url: string) =>
              internetGuard.checkUrl(url).pipe(Effect.match({ onFailure: (e) => `refused: ${e.message}`, onSuccess: (u) => `accepted: ${u.host}` }))
          }
        })
      )
    })

    it.effect("a plugin that declares it is given the guard, and a private address is refused through it", () =>
      Effect.gen(function* () {
        const plugin = yield* Effect.provide(Reacher, load(reacher(true), env).pipe(Layer.provide(FetchHttpClient.layer)))
        expect(yield* plugin.check("http://8.8.8.8/hook")).toBe("accepted: 8.8.8.8")
        for (const url of ["http://127.0.0.1:9/", "http://10.0.0.1/", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/", "http://localhost/"]) {
          expect(yield* plugin.check(url), url).toMatch(/^refused: .*private, loopback or link-local/)
        }
      }))

    it.effect("a plugin that does not declare it fails to build, naming the plugin, even where the app has the service", () =>
      Effect.gen(function* () {
        const loaded = load(reacher(false), env).pipe(Layer.provide(FetchHttpClient.layer))
        const exit = yield* Effect.exit(Effect.provide(Reacher, loaded))
        expect(exit._tag).toBe("Failure")
        expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toContain("plugin reacher may not reach the public internet")
        // Provided from outside the sandbox too: still refused.
        const outside = yield* Effect.exit(
          Effect.provide(Reacher, loaded.pipe(Layer.provide(Layer.succeed(PublicInternet, { guard: () => { throw new Error("unreachable") } }))))
        )
        expect(Exit.isFailure(outside) && Cause.pretty(outside.cause)).toContain("plugin reacher may not reach the public internet")
      }))

    it.effect("a plugin without it that never asks for the guard builds as before", () =>
      Effect.gen(function* () {
        const probe = yield* Effect.provide(Probe, load(probePlugin([]), env).pipe(Layer.provide(FetchHttpClient.layer)))
        expect(Either.isLeft(probe.secret)).toBe(true)
      }))
  })
})
