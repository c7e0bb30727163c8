/**
 * Full collections paced by the heap's growth (WEARFLOW_HEAP_GROWTH_MB, default 16; 0: off),
 * which with the start script's BUN_JSC_heapGrowthMaxIncrease=1 keep the server's resident
 * memory under load within 256 MB. Under load the resident size is Bun's code (~50 MB), its
 * own allocations (~50–80 MB), and the JavaScriptCore heap's blocks (up to ~160 MB): what the
 * last full collection left live (~40 MB under bench/push.ts), garbage promoted by eden
 * collections since, and the room eden allocates into. The engine collects its old generation
 * only once it has about doubled, so promoted garbage reached ~65 MB over ~40 MB live. The eden
 * room is sized at each full collection as a multiple of the heap: on machines with 16 GB of
 * RAM or more JavaScriptCore allows twice the heap, which heapGrowthMaxIncrease=1 brings to
 * once, as on smaller machines. Peaks measured alternately against neither: bench/push.ts
 * 213–220 against 282–297 MB, bench/ingest.ts 222–233 against 335–346, bench/latency.ts
 * 229–230 against 247–277; each alone left 245–265 MB. The collections cost about 4% more
 * server CPU per ingested body (16 MB; 8 MB cost ~9%, 32 MB ~3% but peaks of 238–251 MB).
 *
 * A collection runs when the heap grew past the last live size by this many MB, or a quarter
 * of it if more (heap-growth-policy.ts), within 5% of the time.
 */
import { Config, Duration, Effect, Layer, Schedule } from "effect"
import { collectNow, initialPolicyState, next, type PolicyState } from "./heap-growth-policy.ts"

export const HeapGrowthConfig = Config.all({
  growthMb: Config.integer("WEARFLOW_HEAP_GROWTH_MB").pipe(
    Config.withDefault(16),
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
