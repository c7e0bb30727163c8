/**
 * A backfill's plan: each enabled type's history, less what was already requested, cut into
 * windows no longer than the provider allows per request, newest first across types, so
 * recent data of every kind arrives before older data of any kind.
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
  /** Ranges already requested per type (the provider does not send them twice): left out. */
  readonly requested?: ReadonlyMap<string, ReadonlyArray<{ readonly start: Date; readonly end: Date }>> | undefined
}

interface Span {
  readonly start: number
  readonly end: number
}

/**
 * Gaps shorter than this are not asked for: a re-run minutes after the last one would
 * otherwise request the minutes in between, which arrived live anyway.
 */
const MIN_GAP_MS = 3_600_000

/** `span` minus every range in `taken`, newest part first. */
const uncovered = (span: Span, taken: ReadonlyArray<Span>): Array<Span> => {
  let parts: Array<Span> = [span]
  for (const t of taken) {
    parts = parts.flatMap((p) =>
      t.end <= p.start || t.start >= p.end
        ? [p]
        : [{ start: p.start, end: Math.max(p.start, t.start) }, { start: Math.min(p.end, t.end), end: p.end }].filter((q) => q.end > q.start)
    )
  }
  // A part the span was not cut from is kept whatever its length (a short backfill asked for as such).
  return parts.filter((p) => p === span || p.end - p.start >= MIN_GAP_MS).sort((a, b) => b.end - a.end)
}

/** Whole days a range spans (what providers' rate limits count). */
export const daysIn = (start: Date, end: Date) => Math.max(1, Math.ceil((end.getTime() - start.getTime()) / DAY_MS))

export const planWindows = (options: PlanOptions): ReadonlyArray<PlannedWindow> => {
  const end = options.end.getTime()
  const liveAfter = end - DAY_MS
  const perType = options.types.map((type) => {
    const depth = Math.min(options.days, options.maxDays.get(type.type) ?? Infinity)
    const taken = (options.requested?.get(type.type) ?? []).map((r) => ({ start: r.start.getTime(), end: r.end.getTime() }))
    const windows: Array<Span> = []
    for (const part of uncovered({ start: end - depth * DAY_MS, end }, taken)) {
      for (let to = part.end; to > part.start; to -= type.maxDays * DAY_MS) {
        windows.push({ start: Math.max(part.start, to - type.maxDays * DAY_MS), end: to })
      }
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
