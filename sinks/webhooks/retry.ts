/**
 * Runs `WebhookRetry`: durable sleeps between attempts, each attempt a journaled activity.
 * A restart resumes the schedule where it was; the message keeps its id on every attempt.
 */
import { Activity, DurableClock } from "@effect/workflow"
import { retryWhileTransient } from "@wearflow/core/storage/errors"
import { Effect, Schema } from "effect"
import { Deliveries } from "./deliveries.ts"
import { WebhookRetry } from "./retry-workflow.ts"
import { WebhookSettings } from "./settings.ts"

export const layer = WebhookRetry.toLayer(
  Effect.fn(function* ({ messageId, run }) {
    const deliveries = yield* Deliveries
    const { retrySchedule } = yield* WebhookSettings
    for (const [i, wait] of retrySchedule.entries()) {
      yield* DurableClock.sleep({ name: `wait/${i}`, duration: wait })
      const outcome = yield* Activity.make({
        name: `attempt/${i}`,
        success: Schema.Literal("delivered", "failed", "settled"),
        execute: deliveries.retry(messageId, run).pipe(retryWhileTransient(), Effect.orDie)
      })
      if (outcome !== "failed") return
    }
    yield* Activity.make({ name: "exhaust", execute: deliveries.exhaust(messageId, run).pipe(retryWhileTransient(), Effect.orDie) })
  })
)
