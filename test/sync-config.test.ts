/** WEARFLOW_SYNC_*: unset, every provider polls at its own interval; set, they are checked. */
import { ConfigProvider, Duration, Effect, Either } from "effect"
import { expect, it } from "vitest"
import { SyncConfig } from "../apps/server/config.ts"
import { SyncSettings } from "../core/sync/settings.ts"

const read = (env: Record<string, string>) =>
  Effect.runSync(Effect.either(Effect.withConfigProvider(SyncConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))))

it("leaves the interval to each provider unless WEARFLOW_SYNC_INTERVAL is set, and refuses what cannot be right", () => {
  const defaults = Either.getOrThrow(read({}))
  expect(defaults.interval).toBeUndefined()
  expect(defaults).toMatchObject({ concurrency: SyncSettings.defaults.concurrency, roundsPerExecution: SyncSettings.defaults.roundsPerExecution })
  expect(Duration.toMillis(Either.getOrThrow(read({ WEARFLOW_SYNC_INTERVAL: "30 seconds" })).interval!)).toBe(30_000)
  expect(Either.isLeft(read({ WEARFLOW_SYNC_INTERVAL: "0 seconds" }))).toBe(true)
  expect(Either.isLeft(read({ WEARFLOW_SYNC_CONCURRENCY: "0" }))).toBe(true)
})
