/**
 * Withings' RPC convention in one place: every call is a form POST naming an `action`, with
 * the user's Bearer token, and every answer is HTTP 200 with the outcome in `status` (0 is
 * success). `call` draws each request from the shared budget, sends it, and turns the status
 * into a WithingsError whose `outcome` says what the caller should do. Messages name the
 * action and the status code only: Withings' free-text `error` may repeat anything.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Data, Duration, Effect, Redacted, Schema } from "effect"
import { type RequestBudget } from "./budget.ts"
import { apiUrlOf, type WithingsConfig } from "./config.ts"

/**
 * - `invalid_token`: authentication failed (the token is expired, revoked or unknown);
 * - `unauthorized`: the grant does not cover this call (a scope the user did not give);
 * - `rate_limited`: over the application's limit (status 601, or our own budget): wait;
 * - `unavailable`: timeout, network, 5xx, unknown status: retry later;
 * - `invalid`: the request was refused as malformed (a bug or a bad parameter): retrying the same will not help.
 */
export type Outcome = "invalid_token" | "unauthorized" | "rate_limited" | "unavailable" | "invalid"

export class WithingsError extends Data.TaggedError("WithingsError")<{
  readonly outcome: Outcome
  readonly message: string
  /** Withings' status code, when it answered one. */
  readonly status?: number | undefined
  /** How long to wait before asking again (rate limits). */
  readonly retryAfter?: Duration.Duration | undefined
}> {}

/** Status codes to outcomes (the reference's "Status families"). */
export const outcomeOf = (status: number): Outcome => {
  if (status === 401 || status === 100 || status === 101 || status === 102 || status === 200) return "invalid_token"
  if (status === 214 || status === 277 || status === 2553 || status === 2555) return "unauthorized"
  if (status === 601) return "rate_limited"
  if (status === 522) return "unavailable"
  if (status === 503 || status === 2554 || (status >= 201 && status <= 213) || (status >= 215 && status <= 276)) return "invalid"
  return "unavailable"
}

const Answer = Schema.Struct({ status: Schema.Number, body: Schema.optional(Schema.Unknown) })

export interface CallRequest {
  /** e.g. `/measure`, `/v2/sleep`. */
  readonly path: string
  readonly action: string
  readonly fields?: Readonly<Record<string, string | number>> | undefined
  readonly bearer?: Redacted.Redacted<string> | undefined
  /** The Withings user the call is for, for the per-user budget. */
  readonly user?: string | undefined
}

/** A call's answer body (status 0). */
export type Call = (request: CallRequest) => Effect.Effect<Readonly<Record<string, unknown>>, WithingsError>

/**
 * A budget wait up to one window is waited out where the call is made: a poll round that gave
 * up half-way would spend its requests again when tried later. Longer waits are handed back.
 */
const maxInlineWait = (config: WithingsConfig) => Duration.min(config.rateLimit.window, Duration.seconds(65))

const TIMEOUT = Duration.seconds(30)

export const makeCall = (client: HttpClient.HttpClient, config: WithingsConfig, budget: RequestBudget): Call => (request) => {
  const what = request.action
  const unavailable = (message: string, status?: number) => new WithingsError({ outcome: "unavailable", message, status })
  const turn: Effect.Effect<void, WithingsError> = Effect.gen(function* () {
    for (;;) {
      const next = yield* budget.take(request.user)
      if (next._tag === "Go") return
      if (Duration.greaterThan(next.after, maxInlineWait(config))) {
        return yield* new WithingsError({ outcome: "rate_limited", message: "Withings' shared request budget is used up for now", retryAfter: next.after })
      }
      yield* Effect.sleep(next.after)
    }
  })
  const fields: Record<string, string> = { action: request.action }
  for (const [name, value] of Object.entries(request.fields ?? {})) fields[name] = String(value)
  let http = HttpClientRequest.post(apiUrlOf(config.apiUrl, request.path)).pipe(HttpClientRequest.acceptJson, HttpClientRequest.bodyUrlParams(fields))
  if (request.bearer !== undefined) http = HttpClientRequest.bearerToken(http, Redacted.value(request.bearer))
  const send = client.execute(http).pipe(
    Effect.flatMap((response) => {
      if (response.status === 429) return Effect.fail(new WithingsError({ outcome: "rate_limited", message: `Withings answered HTTP 429 to ${what}`, retryAfter: config.rateLimit.backoff }))
      if (response.status !== 200) return Effect.fail(unavailable(`Withings answered HTTP ${response.status} to ${what}`))
      return response.json.pipe(Effect.mapError(() => unavailable(`Withings' answer to ${what} is not JSON`)))
    }),
    Effect.flatMap((json) => Schema.decodeUnknown(Answer)(json).pipe(Effect.mapError(() => unavailable(`Withings' answer to ${what} has no status`)))),
    Effect.flatMap(({ body, status }) => {
      if (status === 0) {
        return typeof body === "object" && body !== null && !Array.isArray(body)
          ? Effect.succeed(body as Readonly<Record<string, unknown>>)
          : Effect.succeed({})
      }
      const outcome = outcomeOf(status)
      return Effect.fail(new WithingsError({ outcome, status, message: `Withings answered status ${status} to ${what}`, retryAfter: outcome === "rate_limited" ? config.rateLimit.backoff : undefined }))
    }),
    Effect.timeoutFail({ duration: TIMEOUT, onTimeout: () => unavailable(`Withings did not answer ${what} in time`) }),
    Effect.catchTags({
      RequestError: (e) => Effect.fail(unavailable(`could not reach Withings for ${what} (${e.reason})`)),
      ResponseError: (e) => Effect.fail(unavailable(`Withings' answer to ${what} could not be read (${e.reason})`))
    }),
    Effect.scoped
  )
  return Effect.zipRight(turn, send)
}
