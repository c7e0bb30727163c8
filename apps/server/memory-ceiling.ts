/**
 * Full collections paced by the heap's growth (WEARFLOW_HEAP_GROWTH_MB, default 8; 0: off),
 * which keep the server's resident memory under load within 256 MB. Under load most of the
 * resident size is the JavaScriptCore heap's blocks: what the last full collection left live
 * (~40 MB under bench/push.ts), garbage promoted by eden collections since, and the room eden
 * allocates into. The engine collects its old generation only once it has about doubled, so
 * the promoted garbage reached ~65 MB over ~40 MB live (a peak of 321–331 MB resident against
 * 270 with these collections). The eden room is sized at each full collection as a multiple of
 * the heap: BUN_JSC_heapGrowthMaxIncrease=1 in the start script (package.json) makes it about
 * the heap's size, not twice it, as it already is on machines under 16 GB of RAM; together
 * the peak under bench/push.ts was 225 MB.
 *
 * A collection runs when the heap grew past the last live size by this many MB, or a quarter
 * of it if more (memory-ceiling-policy.ts), within 5% of the time.
 */
import { Config, Duration, Effect, Layer, Schedule } from "effect"
import { collectNow, initialPolicyState, next, type PolicyState } from "./memory-ceiling-policy.ts"

export const HeapGrowthConfig = Config.all({
  growthMb: Config.integer("WEARFLOW_HEAP_GROWTH_MB").pipe(
    Config.withDefault(8),
    Config.validate({ message: "WEARFLOW_HEAP_GROWTH_MB must be 0 (off) or more", validation: (n) => n >= 0 })
  )
})

const MB = 1024 * 1024

/** How often the heap's size is read: a sum over its blocks, no allocation. */
const every = Duration.millis(250)
/** At least this long between two collections: each costs a full mark of the heap. */
const spacing = Duration.seconds(1)
/**
 * The most of the time the collections may pause the event loop: after a pause of p the next
 * waits 20 p. Measured under bench/push.ts: ~5 collections of 45–100 ms in a 25 s run.
 */
const share = 0.05

/**
 * Bun's runtime: the JavaScriptCore heap's size and a full collection, synchronous. Its pause
 * is a mark of what is live: 40–100 ms measured on a loaded 2-core machine.
 */
const runtime = Effect.promise(async () => {
  const jsc = await import("bun:jsc")
  return { heapSize: () => jsc.heapSize(), collect: () => jsc.fullGC() }
})

/** The collections, by a fiber of their own for as long as the server runs; nothing under Node or when off. */
export const layer = Layer.scopedDiscard(Effect.gen(function* () {
  const { growthMb } = yield* HeapGrowthConfig
  if (growthMb === 0 || typeof Bun === "undefined") return
  const bun = yield* runtime
  const policy = { growthBytes: growthMb * MB, spacingMs: Duration.toMillis(spacing), share }
  let state: PolicyState = initialPolicyState
  const check = Effect.suspend(() => {
    const reading = { heapSize: bun.heapSize(), now: Date.now() }
    if (!collectNow(policy, state, reading)) {
      state = next(policy, state, reading)
      return Effect.void
    }
    const started = performance.now()
    bun.collect()
    const pauseMs = performance.now() - started
    const heapSizeAfter = bun.heapSize()
    state = next(policy, state, reading, { pauseMs, heapSizeAfter })
    return Effect.logDebug("heap growth: full collection").pipe(Effect.annotateLogs({
      pauseMs: Math.round(pauseMs),
      heapMb: Math.round(reading.heapSize / MB),
      liveMb: Math.round(heapSizeAfter / MB)
    }))
  })
  yield* Effect.forkScoped(Effect.repeat(check, Schedule.spaced(every)))
}))
