/**
 * An open-loop load generator: requests go out at a fixed rate whatever the answers do, and
 * each latency counts from the request's scheduled send time, not from when it went out. A
 * stall therefore shows in the figures of every request scheduled during it, as it would for
 * a provider posting at its own pace (a closed loop waits for answers and hides the stall).
 */

export interface OpenLoopFigures {
  readonly rate: number
  readonly scheduled: number
  readonly completed: number
  /** Answers other than the expected status, and requests that failed outright. */
  readonly failures: number
  /** Completed requests per second over the run (scheduled to last answer). */
  readonly achieved: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/**
 * Sends `send()` `rate` times a second for `seconds`, each at its scheduled instant (late ones
 * go out at once, keeping their scheduled time); resolves once every request has answered.
 * `send` resolves true when the answer is the expected one.
 */
export const openLoop = async (options: {
  readonly rate: number
  readonly seconds: number
  /** The `index`th request, due at `scheduledAt` (performance.now() time). */
  readonly send: (index: number, scheduledAt: number) => Promise<boolean>
}): Promise<OpenLoopFigures> => {
  const { rate, seconds, send } = options
  const total = Math.round(rate * seconds)
  const interval = 1000 / rate
  const latencies: Array<number> = []
  const pending: Array<Promise<void>> = []
  let failures = 0
  const t0 = performance.now()
  for (let i = 0; i < total; i++) {
    const scheduled = t0 + i * interval
    const wait = scheduled - performance.now()
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
    pending.push(
      send(i, scheduled).then(
        (ok) => {
          if (!ok) failures++
          latencies.push(performance.now() - scheduled)
        },
        () => {
          failures++
          latencies.push(performance.now() - scheduled)
        }
      )
    )
  }
  await Promise.all(pending)
  const elapsed = (performance.now() - t0) / 1000
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN
  return {
    rate,
    scheduled: total,
    completed: latencies.length,
    failures,
    achieved: latencies.length / elapsed,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: latencies.at(-1) ?? Number.NaN
  }
}
