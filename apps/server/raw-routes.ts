/**
 * The plugins' raw webhook routes (`RawRoute`), as Bun.serve `routes`: Bun matches them before
 * the fetch handler the HttpApi app is served through, so a provider's hottest POSTs skip the
 * router, the middleware and the request's own fiber setup. Each runs on the runtime captured
 * when the server starts (its logger included).
 */
import type { RawRoute } from "@wearflow/core/http"
import { Cause, Effect, Runtime } from "effect"

type BunRoutes = Record<string, { readonly POST: (request: Request) => Promise<Response> }>

/** A handler that dies answers 500 with no body, as the HttpApi app does; the cause is logged, never sent. */
const orServerError = (effect: Effect.Effect<Response>) =>
  effect.pipe(
    Effect.catchAllCause((cause) =>
      Effect.as(Effect.logError("webhook route failed; answering 500", Cause.squash(cause)), new Response(null, { status: 500 })))
  )

export const bunRoutes = (routes: ReadonlyArray<RawRoute>, runtime: Runtime.Runtime<never>): BunRoutes => {
  const run = Runtime.runPromise(runtime)
  const table: BunRoutes = {}
  for (const route of routes) {
    table[route.path] = { [route.method]: (request: Request) => run(orServerError(route.handle(request))) } as BunRoutes[string]
  }
  return table
}
