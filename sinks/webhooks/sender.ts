/**
 * One HTTP attempt of one message. Each endpoint has its own undici pool of keep-alive
 * connections, whose connector is the host's public-internet guard: it resolves the host
 * itself and connects only to addresses the operator allows, so the check holds for every
 * connection, not just at set-up. Redirects are never followed; the whole attempt has one deadline.
 */
import type { Guard } from "@wearflow/core/public-internet"
import { Effect } from "effect"
import { StringDecoder } from "node:string_decoder"
// The file path, not the bare name: Bun answers a bare "undici" import with its own stand-in.
import { Pool } from "undici/index.js"

export interface AttemptResult {
  readonly ok: boolean
  readonly attemptedAt: Date
  readonly status: number | null
  readonly latencyMs: number
  /** The start of the response body, for the attempt log. */
  readonly excerpt: string | null
  readonly error: string | null
}

export interface SenderOptions {
  /** Deadline for a whole attempt, in ms (Svix: 15 s). */
  readonly timeoutMs: number
  /** Keep-alive connections per endpoint. */
  readonly connections: number
}

const EXCERPT_BYTES = 1024
/** Past this much response body the connection is dropped rather than drained. */
const DRAIN_BYTES = 64 * 1024

const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return "request failed"
  const code = (error as { code?: string }).code
  if (error.name === "TimeoutError" || code === "UND_ERR_ABORTED" || error.name === "AbortError") return "timed out"
  return code ? `${code}: ${error.message}` : error.message
}

/** A sender whose connections go through `guard` (the host's grant of the public internet). */
export const make = (guard: Guard, options: SenderOptions) =>
  Effect.gen(function* () {
    const pools = new Map<string, { readonly origin: string; readonly pool: Pool }>()
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.allSettled([...pools.values()].map((p) => p.pool.destroy()))))

    const guarded = guard.connector({ timeout: Math.min(options.timeoutMs, 10_000) })

    const poolFor = (endpointId: string, url: URL) => {
      const existing = pools.get(endpointId)
      if (existing?.origin === url.origin) return existing.pool
      if (existing) void existing.pool.close()
      const pool = new Pool(url.origin, {
        connections: options.connections,
        connect: guarded,
        keepAliveTimeout: 30_000,
        // Past the attempt's own deadline (the signal below), so that one decides.
        headersTimeout: options.timeoutMs + 1000,
        bodyTimeout: options.timeoutMs + 1000
      })
      pools.set(endpointId, { origin: url.origin, pool })
      return pool
    }

    /** POSTs `body`; never fails: the outcome is in the result. */
    const attempt = (endpointId: string, url: URL, headers: Record<string, string>, body: string): Promise<AttemptResult> => {
      const attemptedAt = new Date()
      const started = performance.now()
      const done = (fields: Omit<AttemptResult, "attemptedAt" | "latencyMs">): AttemptResult => ({
        ...fields,
        attemptedAt,
        latencyMs: Math.round(performance.now() - started)
      })
      // The attempt's one deadline, cleared as soon as it ends: AbortSignal.timeout's timer and
      // signal would each live out the whole timeout (15 s of them, thousands a second, held).
      const deadline = new AbortController()
      const timer = setTimeout(() => deadline.abort(new DOMException("the attempt timed out", "TimeoutError")), options.timeoutMs)
      timer.unref?.()
      return poolFor(endpointId, url)
        .request({
          method: "POST",
          path: url.pathname + url.search,
          headers: { ...headers, "content-type": "application/json", "user-agent": "Wearflow-Webhooks/1" },
          body,
          signal: deadline.signal
        })
        .then(async (response) => {
          let excerpt = ""
          if (response.statusCode === 204 || response.headers["content-length"] === "0") {
            // Nothing to read (most receivers): skip the stream's iterator.
            await response.body.dump()
          } else {
            // Decoded as a stream, so a character split across chunks or by the cut stays whole or is left out.
            const decoder = new StringDecoder("utf8")
            let size = 0
            for await (const chunk of response.body) {
              if (size < EXCERPT_BYTES) excerpt += decoder.write(Buffer.from(chunk).subarray(0, EXCERPT_BYTES - size))
              size += chunk.length
              if (size > DRAIN_BYTES) break
            }
          }
          const status = response.statusCode
          const ok = status >= 200 && status < 300
          const error = ok ? null : status >= 300 && status < 400 ? `redirect (${status}) not followed` : `HTTP ${status}`
          return done({ ok, status, excerpt: excerpt.length > 0 ? excerpt : null, error })
        })
        .catch((error: unknown) => done({ ok: false, status: null, excerpt: null, error: describe(error) }))
        .finally(() => clearTimeout(timer))
    }

    /** Drops an endpoint's connections (deleted or moved). */
    const forget = (endpointId: string) => {
      const existing = pools.get(endpointId)
      pools.delete(endpointId)
      if (existing) void existing.pool.close()
    }

    return { attempt, forget } as const
  })

export type Sender = Effect.Effect.Success<ReturnType<typeof make>>
