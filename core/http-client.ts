/**
 * Outbound HTTP for plugins: Effect's HttpClient over undici, with pooled keep-alive
 * connections and bounded waits. Redirects are not followed, so the plugin host's host check
 * (host.ts) is the last word on where a request goes.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Effect, Layer } from "effect"
// The file path, not the bare name: Bun answers a bare "undici" import with its own partial
// stand-in, which ignores the dispatcher (no pool, no timeouts).
import { Agent, fetch as undiciFetch } from "undici/index.js"

export interface OutboundOptions {
  /** Time to connect and to receive response headers, in ms. */
  readonly headersTimeout?: number
  /** Longest pause while the body streams in, in ms. */
  readonly bodyTimeout?: number
  readonly connectionsPerOrigin?: number
}

export const layer = (options: OutboundOptions = {}) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const agent = yield* Effect.acquireRelease(
        Effect.sync(
          () =>
            new Agent({
              keepAliveTimeout: 30_000,
              connect: { timeout: options.headersTimeout ?? 30_000 },
              headersTimeout: options.headersTimeout ?? 30_000,
              bodyTimeout: options.bodyTimeout ?? 60_000,
              connections: options.connectionsPerOrigin ?? 32
            })
        ),
        (agent) => Effect.promise(() => agent.destroy())
      )
      const fetch = ((input: string | URL | Request, init?: RequestInit) =>
        undiciFetch(input as never, { ...(init as object), dispatcher: agent } as never)) as unknown as typeof globalThis.fetch
      return FetchHttpClient.layer.pipe(
        Layer.provide(Layer.succeed(FetchHttpClient.Fetch, fetch)),
        Layer.provide(Layer.succeed(FetchHttpClient.RequestInit, { redirect: "manual" }))
      )
    })
  )
