/**
 * A new connection's history: with WEARFLOW_BACKFILL_ON_CONNECT on and a provider that has
 * history, linking records a backfill in its own transaction — the backfill floor's side of
 * the ConnectionHistory hook (core/connections/links.ts).
 */
import { Effect, Layer } from "effect"
import { ConnectionHistory } from "../connections/links.ts"
import { scheduleBackfill } from "./schedule.ts"
import { BackfillSettings } from "./settings.ts"

export const layer = Layer.effect(
  ConnectionHistory,
  Effect.map(BackfillSettings, (settings) => ({
    schedule: (sql, { provider, teamId, userId }) =>
      provider.backfill !== undefined && settings.onConnect
        ? scheduleBackfill(sql, { teamId, userId, provider: provider.id, origin: "connection" })
        : Effect.succeed(undefined)
  }))
)
