/**
 * The memory ceiling (apps/server/memory-ceiling.ts): when it runs a full collection, and its
 * configuration. What a collection buys is measured by bench/ (the server RSS rows).
 */
import { ConfigProvider, Effect, Either } from "effect"
import { expect, it } from "vitest"
import { MemoryCeilingConfig } from "../apps/server/memory-ceiling.ts"
import { type CeilingState, collectNow, initialCeilingState, next } from "../apps/server/memory-ceiling-policy.ts"

const MB = 1024 * 1024
const ceiling = { ceilingBytes: 256 * MB, spacingMs: 1000, share: 0.05 }

/**
 * Feeds readings of (rss MB, heap MB) one per 250 ms, each collection pausing `pauseMs`;
 * answers at which readings it collected.
 */
const run = (readings: ReadonlyArray<readonly [number, number]>, pauseMs = 20) => {
  let state: CeilingState = initialCeilingState
  const collected: Array<number> = []
  readings.forEach(([rss, heap], i) => {
    const reading = { rss: rss * MB, heapSize: heap * MB, now: 1_000_000 + i * 250 }
    const collect = collectNow(ceiling, state, reading)
    state = next(ceiling, state, reading, collect ? { pauseMs } : undefined)
    if (collect) collected.push(i)
  })
  return collected
}

it("collects nothing below three quarters of the ceiling, however much the heap grows", () => {
  expect(run([[150, 40], [180, 80], [191, 120], [191, 160]])).toEqual([])
})

it("collects near the ceiling when the heap has grown over its low, at most once a second", () => {
  // The heap's low is 50 MB; at 200 MB resident (over 192) and 70 MB of heap it collects, then
  // waits a second (4 readings) although the heap grows on.
  expect(run([[180, 50], [200, 70], [205, 80], [210, 90], [212, 100], [214, 110]])).toEqual([1, 5])
})

it("does not collect again above the ceiling when the heap has not grown since the last collection", () => {
  // After the collection the heap settles at 52 MB; the resident size stays high (pages the
  // allocator keeps), but a full mark would find nothing new.
  expect(run([[180, 50], [200, 70], [200, 52], [200, 53], [200, 55], [200, 56], [200, 58], [200, 70]])).toEqual([1, 7])
})

it("spaces collections out when they pause long: a 100 ms pause is followed by 2 s without one", () => {
  const growing = Array.from({ length: 12 }, (_, i) => [220, 60 + i * 10] as const)
  expect(run(growing, 20)).toEqual([1, 5, 9])
  expect(run(growing, 100)).toEqual([1, 9])
})

const read = (env: Record<string, string>) =>
  Effect.runSync(Effect.either(Effect.withConfigProvider(MemoryCeilingConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))))

it("is off unless WEARFLOW_MEMORY_CEILING_MB sets it; a ceiling below 64 MB is refused", () => {
  expect(Either.getOrThrow(read({})).ceilingMb).toBe(0)
  expect(Either.getOrThrow(read({ WEARFLOW_MEMORY_CEILING_MB: "0" })).ceilingMb).toBe(0)
  expect(Either.getOrThrow(read({ WEARFLOW_MEMORY_CEILING_MB: "512" })).ceilingMb).toBe(512)
  expect(Either.isLeft(read({ WEARFLOW_MEMORY_CEILING_MB: "32" }))).toBe(true)
})
