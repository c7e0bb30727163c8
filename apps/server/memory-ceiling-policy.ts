/**
 * When the memory ceiling (memory-ceiling.ts) runs a full collection: the resident size is
 * within reach of the ceiling, the heap grew since the last one (above the ceiling with nothing
 * new to collect, another would be a full mark for nothing), and the collections so far kept
 * within their share of the time: after a pause of p ms the next waits p / `share` (at least
 * `spacingMs`), so they never take more than that share of the event loop.
 */
export interface Ceiling {
  readonly ceilingBytes: number
  /** The least time between two collections. */
  readonly spacingMs: number
  /** The most of the time collections may pause the event loop, e.g. 0.05. */
  readonly share: number
}

export interface CeilingState {
  /** No collection before this time (ms since the epoch). */
  readonly notBefore: number
  /** The heap's lowest size read since the last collection: about what it left live. */
  readonly low: number
}

export interface Reading {
  readonly rss: number
  readonly heapSize: number
  readonly now: number
}

export const initialCeilingState: CeilingState = { notBefore: 0, low: Number.POSITIVE_INFINITY }

/**
 * Collections start at three quarters of the ceiling: the allocator keeps the pages it gets
 * back for a while, so the resident size falls slowly; it must stop growing before it is reached.
 */
export const threshold = (ceiling: Ceiling) => ceiling.ceilingBytes * 0.75

/** How much the heap must have grown over its low since the last collection: 8 MB, or a tenth of the low. */
const minGrowth = (low: number) => Math.max(8 * 1024 * 1024, low / 10)

export const collectNow = (ceiling: Ceiling, state: CeilingState, reading: Reading): boolean =>
  reading.rss >= threshold(ceiling) &&
  reading.now >= state.notBefore &&
  reading.heapSize - Math.min(state.low, reading.heapSize) >= minGrowth(Math.min(state.low, reading.heapSize))

/** The state after a reading: the collection it ran (with its pause), or none. */
export const next = (ceiling: Ceiling, state: CeilingState, reading: Reading, collection?: { readonly pauseMs: number }): CeilingState =>
  collection === undefined
    ? { notBefore: state.notBefore, low: Math.min(state.low, reading.heapSize) }
    : { notBefore: reading.now + Math.max(ceiling.spacingMs, collection.pauseMs / ceiling.share), low: reading.heapSize }
