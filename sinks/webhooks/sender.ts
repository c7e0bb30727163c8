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

/** An attempt in flight: when it times out, and how. */
interface InFlight {
  readonly deadline: number
  readonly timeOut: () => void
}

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

    /**
     * Attempts in flight, each with its deadline: one sweep a tick aborts those past theirs,
     * rather than a timer and an AbortController per attempt (thousands a second). A deadline
     * may overrun by up to one tick (a tenth of the timeout, at most a second).
     */
    const inFlight = new Set<InFlight>()
    const tick = Math.max(10, Math.min(1000, options.timeoutMs / 10))
    const sweep = setInterval(() => {
      const now = performance.now()
      for (const attempt of inFlight) if (now >= attempt.deadline) attempt.timeOut()
    }, tick)
    sweep.unref?.()
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(sweep)))

    /**
     * POSTs `body`; never fails: the outcome is in the result. Dispatched with a handler of its
     * own (no response stream, no abort signal): the status and the start of the body are all
     * an attempt keeps.
     */
    const attempt = (endpointId: string, url: URL, headers: Record<string, string>, body: string): Promise<AttemptResult> =>
      new Promise((resolve) => {
        const attemptedAt = new Date()
        const started = performance.now()
        let status = 0
        let size = 0
        let excerpt = ""
        let decoder: StringDecoder | undefined
        let abort: ((reason: Error) => void) | undefined
        let timedOut: Error | undefined
        let settled = false
        const settle = (fields: Omit<AttemptResult, "attemptedAt" | "latencyMs">) => {
          if (settled) return
          settled = true
          inFlight.delete(flight)
          resolve({ ...fields, attemptedAt, latencyMs: Math.round(performance.now() - started) })
        }
        const answered = () => {
          const ok = status >= 200 && status < 300
          const error = ok ? null : status >= 300 && status < 400 ? `redirect (${status}) not followed` : `HTTP ${status}`
          settle({ ok, status, excerpt: excerpt.length > 0 ? excerpt : null, error })
        }
        const flight: InFlight = {
          deadline: started + options.timeoutMs,
          timeOut: () => {
            inFlight.delete(flight)
            timedOut = new DOMException("the attempt timed out", "TimeoutError")
            // Not yet on a connection: aborted as soon as it gets one.
            abort?.(timedOut)
          }
        }
        inFlight.add(flight)
        try {
          poolFor(endpointId, url).dispatch(
            {
              method: "POST",
              path: url.pathname + url.search,
              headers: { ...headers, "content-type": "application/json", "user-agent": "Wearflow-Webhooks/1" },
              body
            },
            {
              onConnect: (abortRequest: (reason: Error) => void) => {
                abort = abortRequest
                if (timedOut) abortRequest(timedOut)
              },
              onHeaders: (statusCode: number) => {
                status = statusCode
                return true
              },
              onData: (chunk: Buffer) => {
                if (size < EXCERPT_BYTES) {
                  // Decoded as a stream, so a character split across chunks or by the cut stays whole or is left out.
                  decoder ??= new StringDecoder("utf8")
                  excerpt += decoder.write(chunk.subarray(0, EXCERPT_BYTES - size))
                }
                size += chunk.length
                if (size > DRAIN_BYTES) {
                  // Enough read: the outcome is known, the connection is dropped rather than drained.
                  answered()
                  abort?.(new Error("response body not drained"))
                }
                return true
              },
              onComplete: answered,
              onError: (error: Error) => settle({ ok: false, status: null, excerpt: null, error: describe(error) })
            }
          )
        } catch (error) {
          settle({ ok: false, status: null, excerpt: null, error: describe(error) })
        }
      })

    /** Drops an endpoint's connections (deleted or moved). */
    const forget = (endpointId: string) => {
      const existing = pools.get(endpointId)
      pools.delete(endpointId)
      if (existing) void existing.pool.close()
    }

    return { attempt, forget } as const
  })

export type Sender = Effect.Effect.Success<ReturnType<typeof make>>
