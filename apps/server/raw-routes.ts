/**
 * The plugins' raw webhook routes (`RawRoute`), as Bun.serve `routes`: Bun matches them before
 * the fetch handler the HttpApi app is served through, so a provider's hottest POSTs skip the
 * router, the middleware and the request's own fiber setup. Each runs on the runtime captured
 * when the server starts (its logger included). A large body's answer is followed by a full
 * collection (large-body-garbage.ts).
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import type { RawRoute } from "@wearflow/core/http"
import { Cause, Effect, Option, Runtime } from "effect"
import { COLLECT_AFTER_BYTES, collectAfterAnswer } from "./large-body-garbage.ts"

type BunRoutes = Record<string, { readonly POST: (request: Request) => Promise<Response> }>

/** A handler that dies answers 500 with no body, as the HttpApi app does; the cause is logged, never sent. */
const orServerError = (effect: Effect.Effect<Response>) =>
  effect.pipe(
    Effect.catchAllCause((cause) =>
      Effect.as(Effect.logError("webhook route failed; answering 500", Cause.squash(cause)), new Response(null, { status: 500 })))
  )

/**
 * The request's server span, when traces are exported: in the caller's trace if it sent a
 * `traceparent`. The inbox stores its context with the body (core/tracing.ts).
 */
const serverSpan = (route: RawRoute, request: Request) => (effect: Effect.Effect<Response>) => {
  const parent = HttpTraceContext.fromHeaders(Headers.fromInput(request.headers))
  return effect.pipe(
    Effect.tap((response) => Effect.annotateCurrentSpan("http.response.status_code", response.status)),
    Effect.withSpan(`${route.method} ${route.path}`, {
      kind: "server",
      attributes: { "http.request.method": route.method, "http.route": route.path },
      ...(Option.isSome(parent) ? { parent: parent.value } : {})
    })
  )
}

const isLarge = (request: Request) => Number(request.headers.get("content-length")) >= COLLECT_AFTER_BYTES

export const bunRoutes = (routes: ReadonlyArray<RawRoute>, runtime: Runtime.Runtime<never>, traced = false): BunRoutes => {
  const run = Runtime.runPromise(runtime)
  const table: BunRoutes = {}
  for (const route of routes) {
    const answer = traced
      ? (request: Request) => run(orServerError(route.handle(request).pipe(serverSpan(route, request))))
      : (request: Request) => run(orServerError(route.handle(request)))
    const handle = (request: Request) => {
      const answered = answer(request)
      if (isLarge(request)) void answered.then(collectAfterAnswer, collectAfterAnswer)
      return answered
    }
    table[route.path] = { [route.method]: handle } as BunRoutes[string]
  }
  return table
}
