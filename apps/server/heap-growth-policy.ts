/**
 * When heap-growth.ts runs a full collection: the heap grew past what the last full
 * collection left live by `growthBytes` (or a quarter of the live size, if more), and the
 * collections so far kept within their share of the time: after a pause of p ms the next
 * waits p / `share` (at least `spacingMs`), so they never take more than that share of the
 * event loop.
 *
 * The heap's size read here (bun:jsc heapSize) is what the last collection, eden or full, left:
 * it does not count what was allocated since. So it grows only as eden collections promote,
 * and what it grew since the last full collection is promoted garbage a full one would free.
 */
export interface Policy {
  /** The least growth over the live size that starts a collection. */
  readonly growthBytes: number
  /** The least time between two collections. */
  readonly spacingMs: number
  /** The most of the time collections may pause the event loop, e.g. 0.05. */
  readonly share: number
}

export interface PolicyState {
  /** No collection before this time (ms since the epoch). */
  readonly notBefore: number
  /** The heap's size after the last full collection (ours or the engine's): about what is live. */
  readonly live: number
}

export interface Reading {
  readonly heapSize: number
  readonly now: number
}

export const initialPolicyState: PolicyState = { notBefore: 0, live: Number.POSITIVE_INFINITY }

/** How far the heap may grow over its live size before a collection: `growthBytes`, or a quarter of the live size. */
export const allowedGrowth = (policy: Policy, live: number) => Math.max(policy.growthBytes, live / 4)

export const collectNow = (policy: Policy, state: PolicyState, reading: Reading): boolean => {
  // The engine's own full collections lower the heap below the last live size: start from there.
  const live = Math.min(state.live, reading.heapSize)
  return reading.now >= state.notBefore && reading.heapSize - live >= allowedGrowth(policy, live)
}

/**
 * The state after a reading: without a collection, the live size lowered to the heap's when it
 * fell; after one (its pause, and the heap's size it left), that size.
 */
export const next = (
  policy: Policy,
  state: PolicyState,
  reading: Reading,
  collection?: { readonly pauseMs: number; readonly heapSizeAfter: number }
): PolicyState =>
  collection === undefined
    ? { notBefore: state.notBefore, live: Math.min(state.live, reading.heapSize) }
    : { notBefore: reading.now + Math.max(policy.spacingMs, collection.pauseMs / policy.share), live: collection.heapSizeAfter }
