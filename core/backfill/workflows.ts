/**
 * The durable workflows of a backfill (definitions only; chain.ts runs them):
 * - `BackfillChain`, one per backfill: requests its windows one at a time, each after the
 *   previous one's data arrived or went quiet.
 * - `BackfillQuietPeriod`, one per requested window: the deadline after which a window with
 *   no new data counts as complete. Data arriving pushes the deadline back.
 * A window's answer is a durable deferred the chain awaits: completed by the ingest worker
 * when data covering the window arrived, or by the quiet period. A window the provider
 * fetched itself (pull-style) needs neither: the chain waits for its pages to be processed.
 */
import { DurableDeferred, Workflow } from "@effect/workflow"
import { Effect, Schema } from "effect"

export const BackfillChain = Workflow.make({
  name: "BackfillChain",
  payload: { backfillId: Schema.String },
  idempotencyKey: ({ backfillId }) => backfillId
})

export const BackfillQuietPeriod = Workflow.make({
  name: "BackfillQuietPeriod",
  payload: { backfillId: Schema.String, windowId: Schema.String },
  idempotencyKey: ({ windowId }) => windowId
})

/**
 * `fetched`: the provider fetched the window itself and every page of it is processed;
 * `unprocessed`: some of those pages will never be (their ingest jobs gave up).
 */
export const WindowAnswer = Schema.Literal("covered", "quiet", "fetched", "unprocessed")
export type WindowAnswer = typeof WindowAnswer.Type

export const windowAnswered = (windowId: string) => DurableDeferred.make(`window/${windowId}`, { success: WindowAnswer })

/** Tells a chain its window is answered (from outside the chain: ingest, the quiet period). */
export const answerWindow = (backfillId: string, windowId: string, answer: WindowAnswer) => {
  const deferred = windowAnswered(windowId)
  return DurableDeferred.tokenFromPayload(deferred, { workflow: BackfillChain, payload: { backfillId } }).pipe(
    Effect.flatMap((token) => DurableDeferred.succeed(deferred, { token, value: answer }))
  )
}

/**
 * What the chain does after a request: wait for data, wait for the pages the provider
 * fetched to be processed, go on, stop, or try again later.
 */
export const Step = Schema.Union(
  Schema.TaggedStruct("Waiting", {}),
  Schema.TaggedStruct("Fetched", {}),
  Schema.TaggedStruct("Finished", {}),
  Schema.TaggedStruct("Stop", {}),
  Schema.TaggedStruct("Retry", { afterMillis: Schema.Number })
)
export type Step = typeof Step.Type
