/**
 * The Postgres sink's net permission: the host of SINK_POSTGRES_URL is declared, and a URL
 * whose host is not declared is refused before any connection. (Writing through a declared
 * URL: test/pipeline.test.ts.)
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import * as Host from "@wearflow/core/host"
import { Cause, Config, ConfigProvider, Effect, Exit, Layer } from "effect"
import { createServer } from "node:net"
import { layerDeclaring, manifest, PostgresSink } from "./mod.ts"

const env = (url: string) => ConfigProvider.fromMap(new Map([["SINK_POSTGRES_URL", url]]))

/** A TCP listener that counts connections: nothing may reach it. */
const listener = Effect.acquireRelease(
  Effect.async<{ port: number; connections: () => number; close: () => void }>((resume) => {
    let connections = 0
    const server = createServer((socket) => {
      connections++
      socket.destroy()
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ port: (server.address() as { port: number }).port, connections: () => connections, close: () => server.close() }))
    )
  }),
  ({ close }) => Effect.sync(close)
)

describe("Postgres sink net permission", () => {
  it.effect("declares the host of SINK_POSTGRES_URL, and nothing on the app's own database", () =>
    Effect.gen(function* () {
      expect(yield* Effect.withConfigProvider(manifest.permissions.net, env("postgres://u:secret@db.example.com:5433/app"))).toEqual(["db.example.com:5433"])
      expect(yield* Effect.withConfigProvider(manifest.permissions.net, env("postgres:///app?host=/var/run/postgresql"))).toEqual(["/var/run/postgresql"])
      expect(yield* Effect.withConfigProvider(manifest.permissions.net, ConfigProvider.fromMap(new Map()))).toEqual([])
    }))

  it.scoped("a URL whose host is not declared fails the layer, naming plugin and host, before connecting", () =>
    Effect.gen(function* () {
      const target = yield* listener
      for (const url of [`postgres://u:secret@127.0.0.1:${target.port}/app`, `postgres://u:secret@db.example.com/app?host=127.0.0.1&port=${target.port}`]) {
        const plugin = { manifest, layer: layerDeclaring(Config.succeed(["db.example.com"])) }
        const loaded = Host.load(plugin, env(url)).pipe(
          // The app's database is not used: the URL names another.
          Layer.provide(Layer.merge(FetchHttpClient.layer, Layer.succeed(SqlClient.SqlClient, undefined as never)))
        )
        const exit = yield* Effect.exit(Effect.provide(PostgresSink, loaded))
        expect(Exit.isFailure(exit)).toBe(true)
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
        expect(failure?._tag === "Some" && failure.value).toMatchObject({ _tag: "NetPermissionDenied", plugin: "postgres" })
        const message = Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
        expect(message).toContain("plugin postgres may not connect to 127.0.0.1")
        expect(message).not.toContain("secret")
      }
      expect(target.connections()).toBe(0)
    }))
})
