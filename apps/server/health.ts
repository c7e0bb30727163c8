/**
 * `GET /health`: whether this process can do its work — the database answers and every sink
 * passes its own check (the ETL sink writes and removes an object, proving write access).
 * 200 when all pass, 503 otherwise. Unauthenticated, so the body says only which checks
 * fail; why is in the log.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Inbox } from "@wearflow/core/pipeline/inbox"
import type { Sink } from "@wearflow/core/sink"
import * as PostgresSink from "@wearflow/sink-postgres"
import * as EtlSink from "@wearflow/sink-s3"
import * as WebhooksSink from "@wearflow/sink-webhooks"
import { Effect } from "effect"

type Status = "ok" | "failing"

const check = (name: string, effect: Effect.Effect<void, { readonly message?: string }>) =>
  effect.pipe(
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => ({ message: "no answer within 10 s" }) }),
    Effect.as<Status>("ok"),
    Effect.catchAll((error) =>
      Effect.logWarning("health check failing").pipe(Effect.annotateLogs({ check: name, error: error.message ?? "" }), Effect.as<Status>("failing"))
    )
  )

export const HealthRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const inbox = yield* Inbox
    const sinks: ReadonlyArray<Sink> = [yield* PostgresSink.PostgresSink, yield* WebhooksSink.WebhooksSink, yield* EtlSink.EtlSink]
    yield* router.get(
      "/health",
      Effect.gen(function* () {
        const [database, ...results] = yield* Effect.all(
          [check("database", inbox.health), ...sinks.map((sink) => check(`sink ${sink.id}`, sink.health))],
          { concurrency: "unbounded" }
        )
        const body = { database, sinks: Object.fromEntries(sinks.map((sink, i) => [sink.id, results[i]!])) }
        const ok = database === "ok" && results.every((r) => r === "ok")
        return yield* HttpServerResponse.json({ status: ok ? "ok" : "failing", ...body }, { status: ok ? 200 : 503 })
      })
    )
  })
)
