/**
 * A soft ceiling on the server's resident memory (WEARFLOW_MEMORY_CEILING_MB, e.g. 256; 0, the
 * default: off). JavaScriptCore collects its old generation only once the heap has about
 * doubled since the last full collection. Under a backlog (requests waiting on a commit, bodies
 * waiting on the worker) many short-lived objects outlive an eden collection, are promoted, and
 * the heap's capacity grows to two or three times what is live: measured at a PUSH → webhook
 * peak, 62 MB live, 204 MB of heap capacity, 354–366 MB resident. Near the ceiling a full
 * collection runs when the heap grew since the last one, at most once a `spacing` and within
 * its `share` of the time; below it nothing runs. Freed blocks are then reused rather than new
 * ones mapped, so the resident size levels off instead of growing with the backlog.
 */
import { Config, Duration, Effect, Layer, Schedule } from "effect"
import { type CeilingState, collectNow, initialCeilingState, next } from "./memory-ceiling-policy.ts"

export const MemoryCeilingConfig = Config.all({
  ceilingMb: Config.integer("WEARFLOW_MEMORY_CEILING_MB").pipe(
    // Off by default: on the loaded 2-core machine it cut the RSS peaks by 50-140 MB, but ingest
    // end to end measured 0.77-0.79x of without in four same-window pairs of five (bench/ingest.ts).
    Config.withDefault(0),
    Config.validate({ message: "WEARFLOW_MEMORY_CEILING_MB must be 0 (off) or at least 64", validation: (n) => n === 0 || n >= 64 })
  )
})

const MB = 1024 * 1024

/** How often the resident size is read: a read of /proc, no allocation to speak of. */
const every = Duration.millis(250)
/** At least this long between two collections: each costs a full mark of the heap. */
const spacing = Duration.seconds(1)
/**
 * The most of the time the collections may pause the event loop: after a pause of p the next
 * waits 20 p. Once a second at first (-60 MB of RSS under bench/push.ts), but a loaded machine's
 * longer pauses space them out rather than take the acks' and the workers' time.
 */
const share = 0.05

/**
 * Bun's runtime: its resident size, the JavaScriptCore heap's size, and a full collection,
 * synchronous. The concurrent one Bun offers (Bun.gc(false)) bought little: at a PUSH → webhook
 * peak 338 MB against 351 MB without, where a full collection gave 294–301 MB against 366 MB.
 * Its pause is a mark of what is live: 50–160 ms measured on a loaded 2-core machine.
 */
const runtime = Effect.promise(async () => {
  const jsc = await import("bun:jsc")
  return { rss: () => process.memoryUsage.rss(), heapSize: () => jsc.heapSize(), collect: () => jsc.fullGC() }
})

/** The ceiling, kept by a fiber of its own for as long as the server runs; nothing under Node or when off. */
export const layer = Layer.scopedDiscard(Effect.gen(function* () {
  const { ceilingMb } = yield* MemoryCeilingConfig
  if (ceilingMb === 0 || typeof Bun === "undefined") return
  const bun = yield* runtime
  const ceiling = { ceilingBytes: ceilingMb * MB, spacingMs: Duration.toMillis(spacing), share }
  let state: CeilingState = initialCeilingState
  const check = Effect.suspend(() => {
    const reading = { rss: bun.rss(), heapSize: bun.heapSize(), now: Date.now() }
    if (!collectNow(ceiling, state, reading)) {
      state = next(ceiling, state, reading)
      return Effect.void
    }
    const started = performance.now()
    bun.collect()
    const pauseMs = performance.now() - started
    state = next(ceiling, state, reading, { pauseMs })
    return Effect.logDebug("memory ceiling: full collection").pipe(Effect.annotateLogs({
      pauseMs: Math.round(pauseMs),
      heapMb: Math.round(reading.heapSize / MB),
      rssMb: Math.round(bun.rss() / MB)
    }))
  })
  yield* Effect.forkScoped(Effect.repeat(check, Schedule.spaced(every)))
}))
