/**
 * `GET /health`: whether this process can do its work — the database answers, every sink
 * passes its own check (the ETL sink writes and removes an object, proving write access), and
 * ingestion is moving: it counts as stalled when jobs wait, the oldest for longer than
 * `ingestStallAfter`, and no job completed in that time; and the worker processes it started
 * all run. 200 when all pass, 503 otherwise.
 * Unauthenticated, so the body says only which checks fail (and the backlog's size and age);
 * why is in the log.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { IngestBacklog, Inbox } from "@wearflow/core/pipeline/inbox"
import type { Backlog } from "@wearflow/core/pipeline/queue"
import { Sinks } from "@wearflow/core/sink"
import { Duration, Effect } from "effect"
import { StartedWorkers } from "./worker-processes.ts"

type Status = "ok" | "failing"

const check = (name: string, effect: Effect.Effect<void, { readonly message?: string }>) =>
  effect.pipe(
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => ({ message: "no answer within 10 s" }) }),
    Effect.as<Status>("ok"),
    Effect.catchAll((error) =>
      Effect.logWarning("health check failing").pipe(Effect.annotateLogs({ check: name, error: error.message ?? "" }), Effect.as<Status>("failing"))
    )
  )

/** Whether a backlog has stopped moving. */
export const isStalled = (backlog: Backlog, stallAfter: Duration.Duration) => {
  const limit = Duration.toSeconds(stallAfter)
  return backlog.pending > 0 && backlog.oldestSeconds > limit && (backlog.sinceCompletionSeconds === undefined || backlog.sinceCompletionSeconds > limit)
}

export const HealthRoute = (options: { readonly ingestStallAfter: Duration.DurationInput }) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function* () {
      const inbox = yield* Inbox
      const backlog = yield* IngestBacklog
      const stallAfter = Duration.decode(options.ingestStallAfter)
      const sinks = (yield* Sinks).map(({ sink }) => sink)
      const workers = yield* StartedWorkers
      yield* router.get(
        "/health",
        Effect.gen(function* () {
          const [[database, ...results], ingest, processes] = yield* Effect.all([
            Effect.all([check("database", inbox.health), ...sinks.map((sink) => check(`sink ${sink.id}`, sink.health))], { concurrency: "unbounded" }),
            backlog.pipe(Effect.timeout("10 seconds"), Effect.option),
            workers.running
          ], { concurrency: "unbounded" })
          const workersDown = processes !== undefined && processes.running < processes.wanted
          if (workersDown) yield* Effect.logWarning("health check failing").pipe(Effect.annotateLogs({ check: "workers", error: "a worker process is not running" }))
          const stalled = ingest._tag === "Some" && isStalled(ingest.value, stallAfter)
          if (stalled) yield* Effect.logWarning("health check failing").pipe(Effect.annotateLogs({ check: "ingest", error: "the ingest backlog has not moved" }))
          const body = {
            database,
            sinks: Object.fromEntries(sinks.map((sink, i) => [sink.id, results[i]!])),
            ingest: ingest._tag === "Some"
              ? { status: stalled ? "stalled" : "ok", pending_jobs: ingest.value.pending, oldest_job_age_seconds: Math.round(ingest.value.oldestSeconds) }
              : { status: "unknown" },
            ...(processes === undefined ? {} : { workers: { status: workersDown ? "failing" : "ok", running: processes.running, wanted: processes.wanted } })
          }
          const ok = database === "ok" && results.every((r) => r === "ok") && !stalled && !workersDown
          return yield* HttpServerResponse.json({ status: ok ? "ok" : "failing", ...body }, { status: ok ? 200 : 503 })
        })
      )
    })
  )
