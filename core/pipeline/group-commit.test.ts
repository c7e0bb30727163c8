import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber } from "effect"
import * as GroupCommit from "./group-commit.ts"

class Refused {
  readonly _tag = "Refused"
  constructor(readonly item: string) {}
}
class TimedOut {
  readonly _tag = "TimedOut"
}

/**
 * A group commit over an in-memory "database": it records each statement's batch, answers
 * each item with its upper-case text, refuses "bad" (and any batch holding it), and holds a
 * statement until `release` when it holds "hold".
 */
const setUp = (overrides: Partial<GroupCommit.GroupCommitOptions<string, string, Refused | TimedOut>> = {}) =>
  Effect.gen(function* () {
    const statements: Array<ReadonlyArray<string>> = []
    const release = yield* Deferred.make<void>()
    const write = (batch: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        statements.push(batch)
        if (batch.includes("hold")) yield* Deferred.await(release)
        if (batch.includes("bad")) return yield* Effect.fail(new Refused("bad"))
        return batch.map((item) => item.toUpperCase())
      })
    const commit = yield* GroupCommit.make<string, string, Refused | TimedOut>({
      write,
      writeOne: (item) => Effect.map(write([item]), (results) => results[0]!),
      flushers: 1,
      maxItems: 100,
      maxWeight: 1000,
      weight: (item) => item.length,
      timeout: () => "10 seconds",
      maxWait: "10 seconds",
      onTimeout: () => new TimedOut(),
      ...overrides
    })
    return { commit, statements, release }
  })

/** Starts `commit(item)` and waits until it waits for its batch (or has its answer). */
const started = <A, E>(effect: Effect.Effect<A, E>) => Effect.tap(Effect.fork(effect), () => Effect.yieldNow())

describe("GroupCommit", () => {
  it.scoped("writes what gathered while a statement ran as one statement, and answers each caller its own result", () =>
    Effect.gen(function* () {
      const { commit, statements, release } = yield* setUp()
      const first = yield* started(commit("hold"))
      const rest = yield* Effect.forEach(["a", "b", "c"], (item) => started(commit(item)))
      expect(statements).toEqual([["hold"]])
      yield* Deferred.succeed(release, undefined)
      expect(yield* Fiber.join(first)).toBe("HOLD")
      expect(yield* Effect.forEach(rest, Fiber.join)).toEqual(["A", "B", "C"])
      expect(statements).toEqual([["hold"], ["a", "b", "c"]])
    }))

  it.scoped("a batch the database refuses is written again item by item: only the refused item's caller fails", () =>
    Effect.gen(function* () {
      const { commit, statements, release } = yield* setUp()
      const first = yield* started(commit("hold"))
      const rest = yield* Effect.forEach(["a", "bad", "c"], (item) => started(Effect.either(commit(item))))
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      const answers = yield* Effect.forEach(rest, Fiber.join)
      expect(answers.map(Either.getOrUndefined)).toEqual(["A", undefined, "C"])
      expect(answers[1]).toEqual(Either.left(new Refused("bad")))
      expect(statements.slice(1)).toEqual([["a", "bad", "c"], ["a"], ["bad"], ["c"]])
    }))

  it.scoped("keeps each statement within its item and weight limits, in the callers' order", () =>
    Effect.gen(function* () {
      const { commit, statements, release } = yield* setUp({ maxItems: 2, maxWeight: 6 })
      const first = yield* started(commit("hold"))
      const rest = yield* Effect.forEach(["a", "b", "c", "dddd", "eeeeeeee", "f"], (item) => started(commit(item)))
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      expect(yield* Effect.forEach(rest, Fiber.join)).toEqual(["A", "B", "C", "DDDD", "EEEEEEEE", "F"])
      // An item heavier than the limit still goes, alone.
      expect(statements.slice(1)).toEqual([["a", "b"], ["c", "dddd"], ["eeeeeeee"], ["f"]])
    }))

  it.scoped("writes one batch per free flusher: with two, a caller goes at once while the other statement runs", () =>
    Effect.gen(function* () {
      const { commit, statements, release } = yield* setUp({ flushers: 2 })
      const held = yield* started(commit("hold"))
      expect(yield* commit("a")).toBe("A")
      expect(statements).toEqual([["hold"], ["a"]])
      yield* Deferred.succeed(release, undefined)
      expect(yield* Fiber.join(held)).toBe("HOLD")
    }))

  it.scopedLive("fails the callers of a statement that outlasts its time, and those that waited past theirs unwritten", () =>
    Effect.gen(function* () {
      const { commit, statements } = yield* setUp({ timeout: () => "200 millis", maxWait: "100 millis" })
      const held = yield* started(Effect.either(commit("hold")))
      const waited = yield* started(Effect.either(commit("late")))
      expect(yield* Fiber.join(held)).toEqual(Either.left(new TimedOut()))
      expect(yield* Fiber.join(waited)).toEqual(Either.left(new TimedOut()))
      expect(statements).toEqual([["hold"]])
      // The next caller is written as usual.
      expect(yield* commit("next")).toBe("NEXT")
    }))

  it.scoped("does not write a caller that went away before its turn", () =>
    Effect.gen(function* () {
      const { commit, statements, release } = yield* setUp()
      const held = yield* started(commit("hold"))
      const gone = yield* started(commit("gone"))
      const kept = yield* started(commit("kept"))
      yield* Fiber.interrupt(gone)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(held)
      expect(yield* Fiber.join(kept)).toBe("KEPT")
      expect(statements).toEqual([["hold"], ["kept"]])
    }))
})
