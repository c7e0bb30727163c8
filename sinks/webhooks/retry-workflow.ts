/**
 * The durable retry of one message (definition; retry.ts runs it). Started only after a
 * failed attempt, so healthy deliveries never create one. `run` changes when an operator
 * resends or recovers the message, which starts a fresh schedule.
 */
import { Workflow } from "@effect/workflow"
import { Schema } from "effect"

export const WebhookRetry = Workflow.make({
  name: "WebhookRetry",
  payload: { messageId: Schema.String, run: Schema.Number },
  idempotencyKey: ({ messageId, run }) => `${messageId}/${run}`
})
