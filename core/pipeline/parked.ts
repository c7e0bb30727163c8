/**
 * Notifications for provider users nobody had linked are kept (unlinked_notifications) and,
 * once someone links them, queued again for the ingest worker: the pipeline's side of the
 * ParkedNotifications hook that linking calls (core/connections/links.ts).
 */
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { ParkedNotifications } from "../connections/links.ts"
import { IngestQueue } from "./inbox.ts"

export const layer = Layer.effect(
  ParkedNotifications,
  Effect.map(IngestQueue, (queue) => ({
    replay: (sql, provider, keys) =>
      Effect.gen(function* () {
        const waiting = yield* sql<{ inbox_id: string; provider_user_id: string }>`
          delete from unlinked_notifications where provider = ${provider} and provider_user_id in ${sql.in(keys)}
          returning inbox_id, provider_user_id`
        for (const parked of waiting) {
          // A fresh id each time: the same body may be parked and replayed more than once.
          yield* queue.offer({ inboxId: Number(parked.inbox_id), userKey: parked.provider_user_id }, { id: randomUUID() }).pipe(Effect.orDie)
        }
        return waiting.length
      })
  }))
)
