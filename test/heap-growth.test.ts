/**
 * Full collections paced by the heap's growth (apps/server/heap-growth.ts): when one runs,
 * and the configuration. What they buy is measured by bench/ (the server RSS rows).
 */
import { ConfigProvider, Effect, Either } from "effect"
import { expect, it } from "vitest"
import { HeapGrowthConfig } from "../apps/server/heap-growth.ts"
import { collectNow, initialPolicyState, next, type PolicyState } from "../apps/server/heap-growth-policy.ts"

const MB = 1024 * 1024
const policy = { growthBytes: 8 * MB, spacingMs: 1000, share: 0.05 }

/**
 * Feeds heap sizes (MB) one per 250 ms; a collection pauses `pauseMs` and leaves `liveMb` of
 * heap. Answers at which readings it collected.
 */
const run = (heapMb: ReadonlyArray<number>, options: { readonly pauseMs?: number; readonly liveMb?: number } = {}) => {
  let state: PolicyState = initialPolicyState
  const collected: Array<number> = []
  heapMb.forEach((heap, i) => {
    const reading = { heapSize: heap * MB, now: 1_000_000 + i * 250 }
    const collect = collectNow(policy, state, reading)
    state = next(policy, state, reading, collect ? { pauseMs: options.pauseMs ?? 20, heapSizeAfter: (options.liveMb ?? 40) * MB } : undefined)
    if (collect) collected.push(i)
  })
  return collected
}

it("collects nothing while the heap stays within 8 MB of its live size", () => {
  expect(run([20, 24, 27, 27.9, 25])).toEqual([])
})

it("collects once the heap grew 8 MB over its lowest size, and measures the next growth from what that left", () => {
  // From 20 MB the heap reaches 28: a collection, which leaves 22 MB; the next at 30 (22 + 8).
  expect(run([20, 24, 28, 29, 29, 29, 29, 30, 30], { liveMb: 22 })).toEqual([2, 7])
})

it("lets a larger heap grow by a quarter of its live size: 60 MB live collects at 75, not at 68", () => {
  expect(run([60, 68, 74, 75], { liveMb: 60 })).toEqual([3])
})

it("starts from the engine's own full collections: a heap that fell to 30 MB collects at 38", () => {
  expect(run([50, 55, 30, 35, 38])).toEqual([4])
})

it("spaces collections out: at least a second apart, and 2 s after a pause of 100 ms", () => {
  const growing = Array.from({ length: 12 }, (_, i) => 60 + i * 20)
  expect(run(growing, { liveMb: 20 })).toEqual([1, 5, 9])
  expect(run(growing, { liveMb: 20, pauseMs: 100 })).toEqual([1, 9])
})

const read = (env: Record<string, string>) =>
  Effect.runSync(Effect.either(Effect.withConfigProvider(HeapGrowthConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))))

it("grows by 16 MB unless WEARFLOW_HEAP_GROWTH_MB says otherwise; 0 turns the collections off; below 0 is refused", () => {
  expect(Either.getOrThrow(read({})).growthMb).toBe(16)
  expect(Either.getOrThrow(read({ WEARFLOW_HEAP_GROWTH_MB: "0" })).growthMb).toBe(0)
  expect(Either.getOrThrow(read({ WEARFLOW_HEAP_GROWTH_MB: "32" })).growthMb).toBe(32)
  expect(Either.isLeft(read({ WEARFLOW_HEAP_GROWTH_MB: "-1" }))).toBe(true)
})
