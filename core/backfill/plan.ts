/**
 * A backfill's plan: each enabled type's history, cut into windows no longer than the
 * provider allows per request, newest first across types, so recent data of every kind
 * arrives before older data of any kind.
 */
import type { BackfillType } from "../provider.ts"

export const DAY_MS = 86_400_000

export interface PlannedWindow {
  readonly seq: number
  readonly type: string
  readonly resource: string
  readonly keys: ReadonlyArray<string>
  readonly start: Date
  readonly end: Date
  /**
   * Data at or after this instant may be live (synced since the connection was made), not
   * backfilled: it never counts as an answer to the request.
   */
  readonly trackedUntil: Date
}

export interface PlanOptions {
  readonly types: ReadonlyArray<BackfillType>
  /** The end of history: when the connection was made. */
  readonly end: Date
  readonly days: number
  /** How many days back each type turned out to allow, where a provider said so. */
  readonly maxDays: ReadonlyMap<string, number>
}

/** Whole days a range spans (what providers' rate limits count). */
export const daysIn = (start: Date, end: Date) => Math.max(1, Math.ceil((end.getTime() - start.getTime()) / DAY_MS))

export const planWindows = (options: PlanOptions): ReadonlyArray<PlannedWindow> => {
  const end = options.end.getTime()
  const liveAfter = end - DAY_MS
  const perType = options.types.map((type) => {
    const depth = Math.min(options.days, options.maxDays.get(type.type) ?? Infinity)
    const start = end - depth * DAY_MS
    const windows: Array<{ start: number; end: number }> = []
    for (let to = end; to > start; to -= type.maxDays * DAY_MS) {
      windows.push({ start: Math.max(start, to - type.maxDays * DAY_MS), end: to })
    }
    return { type, windows }
  })
  const planned: Array<PlannedWindow> = []
  const rounds = Math.max(0, ...perType.map((t) => t.windows.length))
  for (let round = 0; round < rounds; round++) {
    for (const { type, windows } of perType) {
      const window = windows[round]
      if (!window) continue
      planned.push({
        seq: planned.length,
        type: type.type,
        resource: type.resource,
        keys: type.keys,
        start: new Date(window.start),
        end: new Date(window.end),
        trackedUntil: new Date(Math.max(window.start, Math.min(window.end, liveAfter)))
      })
    }
  }
  return planned
}
