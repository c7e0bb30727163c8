/**
 * When the memory ceiling (memory-ceiling.ts) asks for a full collection: the resident size is
 * within reach of the ceiling, the last one it asked for is at least `spacingMs` ago, and the
 * heap grew since then (above the ceiling with nothing new to collect, another collection would
 * be a full mark of the heap for nothing).
 */
export interface Ceiling {
  readonly ceilingBytes: number
  readonly spacingMs: number
}

export interface CeilingState {
  /** When it last asked for a collection (ms since the epoch); 0: never. */
  readonly lastAt: number
  /** The heap's lowest size read since then: about what the collections left live. */
  readonly low: number
}

export interface Reading {
  readonly rss: number
  readonly heapSize: number
  readonly now: number
}

export const initialCeilingState: CeilingState = { lastAt: 0, low: Number.POSITIVE_INFINITY }

/**
 * Collections start at three quarters of the ceiling: the allocator keeps the pages it gets
 * back for a while, so the resident size falls slowly; it must stop growing before it is reached.
 */
export const threshold = (ceiling: Ceiling) => ceiling.ceilingBytes * 0.75

/** How much the heap must have grown over its low since the last collection: 8 MB, or a tenth of the low. */
const minGrowth = (low: number) => Math.max(8 * 1024 * 1024, low / 10)

export const collectNow = (ceiling: Ceiling, state: CeilingState, reading: Reading): { readonly collect: boolean; readonly state: CeilingState } => {
  const low = Math.min(state.low, reading.heapSize)
  const collect = reading.rss >= threshold(ceiling) &&
    reading.now - state.lastAt >= ceiling.spacingMs &&
    reading.heapSize - low >= minGrowth(low)
  return { collect, state: collect ? { lastAt: reading.now, low: reading.heapSize } : { lastAt: state.lastAt, low } }
}
