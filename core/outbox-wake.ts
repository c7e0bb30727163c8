/**
 * Wakes this process's sink runners when it appends to the outbox, so a runner looks at once
 * instead of sleeping out its idle pause; a server passes its rings on to the worker processes
 * it started, and they theirs to it (`forwardRings`, `ringFromPeer`). The record store and
 * erasure ring once their transaction commits (`ring`); a single `appendEvent` rings at the
 * append, before its transaction commits (`ringBeforeCommit`), so a runner woken by that keeps
 * looking for a short while (see pipeline/sink-runner.ts); a peer's ring may be either. What a
 * runner reads is still only what every older transaction has finished with (pg_snapshot_xmin).
 */
import { Duration, Effect } from "effect"

let appends = 0
let early = 0
const sleepers = new Set<() => void>()

/** Says events were appended by a transaction that has committed. */
export const ring = Effect.sync(() => {
  ringHere(false)
  for (const forward of forwards) forward()
})

/** Says events were appended by a transaction still open: they may not be readable yet. */
export const ringBeforeCommit = Effect.sync(() => {
  ringHere(true)
  for (const forward of forwards) forward()
})

const ringHere = (beforeCommit: boolean) => {
  appends++
  if (beforeCommit) early++
  for (const wake of sleepers) wake()
  sleepers.clear()
}

/** Carriers of this process's rings to the processes it works with. */
const forwards = new Set<() => void>()

/** Calls `forward` on every ring of this process's own, while the scope is open. */
export const forwardRings = (forward: () => void) =>
  Effect.acquireRelease(Effect.sync(() => forwards.add(forward)), () => Effect.sync(() => forwards.delete(forward)))

/** A ring from another process (maybe before its commit): this process's runners look, and it goes no further. */
export const ringFromPeer = Effect.sync(() => ringHere(true))

/** How many rings so far: a runner compares it across a round to learn of appends meanwhile. */
export const rings = Effect.sync(() => appends)

/** How many of them may have come before their transaction committed. */
export const ringsBeforeCommit = Effect.sync(() => early)

/** How many runners wait for a ring now (tests wait for a runner to be at rest). */
export const waiting = Effect.sync(() => sleepers.size)

const nextRing = Effect.async<void>((resume) => {
  const wake = () => resume(Effect.void)
  sleepers.add(wake)
  return Effect.sync(() => sleepers.delete(wake))
})

/** Sleeps `duration`, or less if a ring comes first; true when woken by one. */
export const pause = (duration: Duration.DurationInput) =>
  Effect.raceFirst(Effect.as(Effect.sleep(duration), false), Effect.as(nextRing, true))
