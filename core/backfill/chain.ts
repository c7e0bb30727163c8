/**
 * The backfill workflows' steps. The chain requests one window at a time under the shared
 * rate limit, waits for the window's answer (its data, or the quiet period; for history the
 * provider fetched itself, its pages processed), and moves on.
 * Every step is an activity or a durable sleep, so a chain killed mid-way resumes where it
 * was, and no request already answered is sent again.
 */
import { Activity, DurableClock, DurableDeferred, DurableRateLimiter } from "@effect/workflow"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Schema } from "effect"
import { retryWhileTransient } from "../storage/errors.ts"
import { Backfills } from "./backfills.ts"
import { pagesWaiting } from "./pages.ts"
import { daysIn } from "./plan.ts"
import { BackfillSettings } from "./settings.ts"
import { answerWindow, BackfillChain, BackfillQuietPeriod, Step, WindowAnswer, windowAnswered } from "./workflows.ts"

const PlannedWindow = Schema.Struct({
  id: Schema.String,
  type: Schema.String,
  resource: Schema.String,
  range_start: Schema.Date,
  range_end: Schema.Date
})

/** Longest wait between two looks at a fetched window's pages. */
const PAGES_POLL_MAX = Duration.seconds(10)

const PagesWaiting = Schema.UndefinedOr(Schema.Struct({ waiting: Schema.Number, unprocessable: Schema.Number }))

/**
 * Waits until every page the provider fetched for the window is processed (its records
 * stored), looking again after 100 ms, then twice as long each time up to 10 s; or until
 * the only pages left are ones whose ingest gave up.
 */
const awaitPages = (windowId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    for (let round = 0; ; round++) {
      const pages = yield* Activity.make({
        name: `pages/${windowId}/${round}`,
        success: PagesWaiting,
        execute: pagesWaiting(sql, windowId).pipe(retryWhileTransient("10 minutes"), Effect.orDie)
      })
      if (pages === undefined || pages.waiting === 0) return "fetched" satisfies WindowAnswer
      if (pages.waiting === pages.unprocessable) return "unprocessed" satisfies WindowAnswer
      const wait = Duration.min(Duration.millis(100 * 2 ** Math.min(round, 10)), PAGES_POLL_MAX)
      yield* DurableClock.sleep({ name: `pages-wait/${windowId}/${round}`, duration: wait })
    }
  })

const ChainLive = BackfillChain.toLayer(
  Effect.fn(function* ({ backfillId }) {
    const backfills = yield* Backfills
    const settings = yield* BackfillSettings
    const { provider, windows } = yield* Activity.make({
      name: "plan",
      success: Schema.Struct({ provider: Schema.String, windows: Schema.Array(PlannedWindow) }),
      execute: backfills.plan(backfillId).pipe(Effect.orDie)
    })

    for (const window of windows) {
      let attempt = 0
      let step: Step
      while (true) {
        yield* DurableRateLimiter.rateLimit({
          name: `budget/${window.id}/${attempt}`,
          key: `backfill:${provider}`,
          algorithm: "fixed-window",
          window: settings.budgetWindow,
          limit: settings.budgetDays,
          tokens: Math.min(daysIn(window.range_start, window.range_end), settings.budgetDays)
        }).pipe(Effect.orDie)
        step = yield* Activity.make({ name: `request/${window.id}/${attempt}`, success: Step, execute: backfills.request(window.id).pipe(Effect.orDie) })
        if (step._tag !== "Retry") break
        if (step.afterMillis > 0) yield* DurableClock.sleep({ name: `retry/${window.id}/${attempt}`, duration: Duration.millis(step.afterMillis) })
        attempt++
      }
      if (step._tag === "Stop") break
      if (step._tag === "Finished") continue
      if (step._tag === "Fetched") {
        const answer = yield* awaitPages(window.id)
        yield* Activity.make({ name: `complete/${window.id}`, execute: backfills.complete(window.id, answer).pipe(Effect.orDie) })
        continue
      }

      yield* BackfillQuietPeriod.execute({ backfillId, windowId: window.id }, { discard: true })
      const answer = yield* DurableDeferred.await(windowAnswered(window.id))
      // Data reaching both ends arrived: give the rest of the batch a moment to land.
      if (answer === "covered") yield* DurableClock.sleep({ name: `settle/${window.id}`, duration: settings.settle })
      yield* Activity.make({ name: `complete/${window.id}`, execute: backfills.complete(window.id, answer).pipe(Effect.orDie) })
    }
    yield* Activity.make({ name: "finish", execute: backfills.finish(backfillId).pipe(Effect.orDie) })
  }, (chain, { backfillId }) =>
    chain.pipe(
      Effect.catchAllDefect((defect) =>
        Effect.logError("backfill chain broke; its backfill ends as failed", defect).pipe(
          Effect.zipRight(Activity.make({ name: "abandon", execute: Effect.flatMap(Backfills, (b) => b.abandon(backfillId, "stopped by an internal error")).pipe(Effect.orDie) }))
        ))
    ))
)

/** Sleeps until the window's quiet period is over, later again while data keeps coming, then answers it. */
const QuietPeriodLive = BackfillQuietPeriod.toLayer(
  Effect.fn(function* ({ backfillId, windowId }) {
    const backfills = yield* Backfills
    for (let round = 0; ; round++) {
      const remaining = yield* Activity.make({
        name: `remaining/${round}`,
        success: Schema.UndefinedOr(Schema.Number),
        execute: backfills.quietRemaining(windowId).pipe(Effect.orDie)
      })
      if (remaining === undefined) return
      if (remaining <= 0) {
        yield* Activity.make({ name: "answer", execute: answerWindow(backfillId, windowId, "quiet" satisfies WindowAnswer) })
        return
      }
      yield* DurableClock.sleep({ name: `quiet/${round}`, duration: Duration.millis(Math.ceil(remaining)) })
    }
  })
)

/** The backfill workflows, registered with the engine. */
export const layer = Layer.mergeAll(ChainLive, QuietPeriodLive)
