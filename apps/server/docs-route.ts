/**
 * `/docs`: the API reference page (Scalar), built at its first request. Scalar's script is
 * 3.4 MB of source inlined into the page; loaded at start, the module and the page held
 * 9–11 MB of every process's memory for a page an operator opens now and then.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Layer } from "effect"

export const DocsRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const api = yield* HttpApi.Api
    // Scalar's own layer, on a router of its own, built once: the page is the same for every request.
    const page = yield* Effect.cached(
      Effect.promise(() => import("@effect/platform/HttpApiScalar")).pipe(
        Effect.flatMap((Scalar) =>
          HttpApiBuilder.Router.router.pipe(
            Effect.provide(Scalar.layer({ path: "/docs" }).pipe(Layer.provideMerge(HttpApiBuilder.Router.Live), Layer.provide(Layer.succeed(HttpApi.Api, api))))
          )
        )
      )
    )
    yield* router.get("/docs", Effect.flatten(page))
  })
)
