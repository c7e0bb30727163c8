/**
 * The AWS SDK's requests sent through the plugin's own HttpClient: the one the plugin host
 * gives it, which refuses hosts outside the manifest's `net`. So the bucket is reached only
 * as declared, like every other plugin request (undici, pooled, no redirects followed).
 *
 * Bodies are whole byte arrays (the sink uploads buffers; multipart parts are buffers too)
 * and responses are read whole: S3's answers to puts, deletes and multipart steps are small.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Runtime } from "effect"

/** The part of a Smithy request the handler reads. */
interface SdkRequest {
  readonly protocol: string
  readonly hostname: string
  readonly port?: number
  readonly method: string
  readonly path: string
  readonly query?: Record<string, string | Array<string> | null>
  readonly headers: Record<string, string>
  readonly body?: unknown
}

// S3 keys and parameters are escaped as RFC 3986 wants: encodeURIComponent leaves these.
const escape = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

const queryString = (query: SdkRequest["query"] = {}) =>
  Object.keys(query)
    .sort()
    .flatMap((key) => {
      const value = query[key]
      if (value === null || value === undefined) return [escape(key)]
      return (Array.isArray(value) ? value : [value]).map((v) => `${escape(key)}=${escape(v)}`)
    })
    .join("&")

// fetch sets these itself from the URL and the body, and refuses `expect`.
const SKIPPED = new Set(["host", "content-length", "expect", "transfer-encoding", "connection"])

const bodyOf = (body: unknown): Uint8Array | string | undefined => {
  if (body === undefined || body === null) return undefined
  if (typeof body === "string" || body instanceof Uint8Array) return body
  throw new Error("the ETL sink sends whole byte arrays only; a streamed body reached its HTTP handler")
}

/** A Smithy `HttpHandler` (duck-typed: the SDK checks for `handle`) over `client`. */
export const make = Effect.gen(function* () {
  const client = yield* HttpClient.HttpClient
  const runtime = yield* Effect.runtime<never>()
  const run = Runtime.runPromise(runtime)
  return {
    handle: (request: SdkRequest, options?: { readonly abortSignal?: AbortSignal }) => {
      const query = queryString(request.query)
      const url = `${request.protocol}//${request.hostname}${request.port ? `:${request.port}` : ""}${request.path}${query ? `?${query}` : ""}`
      const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => !SKIPPED.has(name.toLowerCase())))
      const body = bodyOf(request.body)
      const outgoing = HttpClientRequest.make(request.method as "GET")(url).pipe(
        HttpClientRequest.setHeaders(headers),
        body === undefined ? (r) => r : typeof body === "string" ? HttpClientRequest.bodyText(body) : HttpClientRequest.bodyUint8Array(body)
      )
      const exchange = Effect.gen(function* () {
        const response = yield* client.execute(outgoing)
        const bytes = new Uint8Array(yield* response.arrayBuffer)
        return {
          response: {
            statusCode: response.status,
            reason: undefined,
            headers: { ...response.headers } as Record<string, string>,
            body: bytes
          }
        }
      }).pipe(Effect.scoped)
      return run(exchange, options?.abortSignal ? { signal: options.abortSignal } : undefined)
    },
    updateHttpClientConfig: () => undefined,
    httpHandlerConfigs: () => ({}),
    destroy: () => undefined
  }
})
