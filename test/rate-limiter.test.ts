/**
 * The Postgres RateLimiterStore through the real RateLimiter (as DurableRateLimiter uses it),
 * against a real Postgres. Two runtimes with pools of their own stand for two processes.
 * Windows are long (minutes), and every bound on a wait allows for the time the calls really
 * took, so assertions hold on a slow machine; time passing is simulated by moving the stored
 * timestamps back.
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Either, Layer, ManagedRuntime, type Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import rateLimits from "../core/storage/migrations/0004_rate_limits.ts"
import * as RateLimiterStore from "../core/storage/rate-limiter-store.ts"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()

const processRuntime = (url: Redacted.Redacted<string>) =>
  ManagedRuntime.make(
    Layer.provideMerge(RateLimiterStore.layerRateLimiter, PgClient.layer({ url, maxConnections: 10 }))
  )

const processA = processRuntime(url)
const processB = processRuntime(url)

beforeAll(() => processA.runPromise(rateLimits))
afterAll(() => Promise.all([processA.dispose(), processB.dispose()]))

type Options = Parameters<RateLimiter.RateLimiter["consume"]>[0]

const consume = (options: Options) => Effect.flatMap(RateLimiter.RateLimiter, (limiter) => limiter.consume(options))

/** A consume's outcome with durations in milliseconds, failures as values. */
const outcome = (options: Options) =>
  consume(options).pipe(
    Effect.map((r) => ({
      ok: true as const,
      remaining: r.remaining,
      delay: Duration.toMillis(r.delay),
      resetAfter: Duration.toMillis(r.resetAfter)
    })),
    Effect.catchTag("RateLimiterError", (e) =>
      e.reason === "Exceeded"
        ? Effect.succeed({ ok: false as const, retryAfter: Duration.toMillis(e.retryAfter), remaining: e.remaining })
        : Effect.fail(e)
    )
  )

const key = () => `test:${randomUUID()}`
const MINUTE = 60_000

/** Runs `f`, answering its result and how long it took (ms): waits measured after it may be shorter by that much. */
const timed = async <A>(f: () => Promise<A>) => {
  const started = Date.now()
  const result = await f()
  return { result, took: Date.now() - started + 1 }
}

/** As if `millis` had passed for `key`: its stored timestamps move back. */
const age = (key: string, millis: number) =>
  processA.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.all([
        sql`update rate_limit_windows set expires_at = expires_at - ${millis}::float8 * interval '1 millisecond' where key = ${key}`,
        sql`update rate_limit_buckets set refilled_at = refilled_at - ${millis}::float8 * interval '1 millisecond' where key = ${key}`
      ])
    )
  )

describe("fixed window", () => {
  it("fail mode: allows `limit` tokens per window, then fails with RateLimitExceeded until the window ends", async () => {
    const options = { key: key(), limit: 5, window: "1 minute", onExceeded: "fail" } as const
    const { result: exceeded, took } = await timed(async () => {
      for (const remaining of [4, 3, 2, 1, 0]) {
        expect(await processA.runPromise(outcome(options))).toMatchObject({ ok: true, remaining, delay: 0 })
      }
      return processA.runPromise(outcome(options))
    })
    expect(exceeded).toMatchObject({ ok: false, remaining: 0 })
    expect(exceeded.ok === false && exceeded.retryAfter).toBeGreaterThanOrEqual(MINUTE - took)
    expect(exceeded.ok === false && exceeded.retryAfter).toBeLessThanOrEqual(MINUTE)
    // A refused consume takes nothing: still refused, and a too-large one is refused at once.
    expect(await processA.runPromise(outcome(options))).toMatchObject({ ok: false })
    expect(await processA.runPromise(outcome({ ...options, tokens: 6 }))).toMatchObject({ ok: false, retryAfter: MINUTE })

    await age(options.key, MINUTE)
    expect(await processA.runPromise(outcome({ ...options, tokens: 5 }))).toMatchObject({ ok: true, remaining: 0 })
  })

  it("delay mode (DurableRateLimiter's): no delay within the budget, about one window for the next batch", async () => {
    const options = { key: key(), limit: 100, window: "1 minute", onExceeded: "delay", tokens: 90 } as const
    const { result: [first, second], took } = await timed(async () => [await processA.runPromise(outcome(options)), await processA.runPromise(outcome(options))] as const)
    expect(first).toMatchObject({ ok: true, delay: 0, remaining: 10 })
    expect(second).toMatchObject({ ok: true, remaining: -80 })
    expect(second.ok && second.delay).toBeGreaterThanOrEqual(MINUTE - took)
    expect(second.ok && second.delay).toBeLessThanOrEqual(MINUTE)
  })
})

it("answers whole milliseconds, also when window / limit is a fraction (the engine stores a wait as bigint epoch ms)", async () => {
  // 7 per minute: a refill every 8571.428… ms, and the database clock has microseconds.
  const fixed = { key: key(), limit: 7, window: "1 minute", onExceeded: "delay", tokens: 3 } as const
  const bucket = { ...fixed, key: key(), algorithm: "token-bucket" } as const
  const failing = { ...fixed, key: key(), onExceeded: "fail", tokens: 4 } as const
  const durations: Array<number> = []
  for (const options of [fixed, bucket]) {
    for (let i = 0; i < 5; i++) {
      const r = await processA.runPromise(outcome(options))
      if (r.ok) durations.push(r.delay, r.resetAfter)
    }
  }
  for (let i = 0; i < 2; i++) {
    const r = await processA.runPromise(outcome(failing))
    durations.push(r.ok ? r.resetAfter : r.retryAfter)
  }
  expect(durations.filter((ms) => ms > 0).length).toBeGreaterThan(10)
  for (const ms of durations) expect(Number.isInteger(ms), `${ms} ms`).toBe(true)
})

describe("token bucket", () => {
  it("starts full, refuses what it lacks without taking it, refills one token per window / limit up to the limit", async () => {
    // 10 tokens per 10 minutes: one token per minute.
    const options = { key: key(), algorithm: "token-bucket", limit: 10, window: "10 minutes", onExceeded: "fail" } as const
    expect(await processA.runPromise(outcome({ ...options, tokens: 8 }))).toMatchObject({ ok: true, remaining: 2 })
    expect(await processA.runPromise(outcome({ ...options, tokens: 5 }))).toMatchObject({ ok: false, retryAfter: 3 * MINUTE })
    expect(await processA.runPromise(outcome({ ...options, tokens: 2 }))).toMatchObject({ ok: true, remaining: 0 })

    await age(options.key, 2.5 * MINUTE)
    expect(await processA.runPromise(outcome(options))).toMatchObject({ ok: true, remaining: 1 })
    // The half minute left over counts towards the next token.
    await age(options.key, 0.5 * MINUTE)
    expect(await processA.runPromise(outcome(options))).toMatchObject({ ok: true, remaining: 1 })

    await age(options.key, 60 * MINUTE)
    expect(await processA.runPromise(outcome(options))).toMatchObject({ ok: true, remaining: 9 })
  })

  it("delay mode overdraws the bucket and waits for the tokens it took", async () => {
    const options = { key: key(), algorithm: "token-bucket", limit: 10, window: "10 minutes", onExceeded: "delay" } as const
    expect(await processA.runPromise(outcome({ ...options, tokens: 10 }))).toMatchObject({ ok: true, remaining: 0, delay: 0 })
    expect(await processA.runPromise(outcome({ ...options, tokens: 3 }))).toMatchObject({ ok: true, remaining: -3, delay: 3 * MINUTE })
    expect(await processA.runPromise(outcome({ ...options, tokens: 2 }))).toMatchObject({ ok: true, remaining: -5, delay: 5 * MINUTE })
  })
})

it("two processes consuming one key concurrently never exceed its budget, with either algorithm", async () => {
  const delayed = { key: key(), limit: 100, window: "1 minute", onExceeded: "delay", tokens: 10 } as const
  const failing = { ...delayed, key: key(), onExceeded: "fail" } as const
  const race = (options: Options) =>
    Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? processA : processB).runPromise(outcome(options))))

  const { result: raced, took } = await timed(() => race(delayed))
  const delays = raced.map((r) => (r.ok ? r.delay : -1)).sort((a, b) => a - b)
  expect(delays.filter((d) => d === 0)).toHaveLength(10)
  // The rest wait one, two or three windows (less the time the race took).
  for (const [windows, batch] of [[1, delays.slice(10, 20)], [2, delays.slice(20, 30)], [3, delays.slice(30)]] as const) {
    for (const d of batch) {
      expect(d).toBeGreaterThanOrEqual(windows * MINUTE - took)
      expect(d).toBeLessThanOrEqual(windows * MINUTE)
    }
  }

  expect((await race(failing)).filter((r) => r.ok)).toHaveLength(10)
  const bucket = { ...failing, key: key(), algorithm: "token-bucket", window: "10 minutes" } as const
  expect((await race(bucket)).filter((r) => r.ok)).toHaveLength(10)
})

it("gives the same results as RateLimiter.layerStoreMemory for the same sequence", async () => {
  const steps: ReadonlyArray<Omit<Options, "key">> = [
    ...[3, 4, 2, 5, 1, 1].map((tokens) => ({ tokens, limit: 10, window: "1 minute", onExceeded: "fail" }) as const),
    ...[30, 50, 40, 10].map((tokens) => ({ tokens, limit: 60, window: "1 minute", onExceeded: "delay" }) as const),
    ...[4, 7, 6, 20].map((tokens) => ({ tokens, limit: 10, window: "5 minutes", algorithm: "token-bucket", onExceeded: "fail" }) as const),
    ...[6, 6, 6].map((tokens) => ({ tokens, limit: 10, window: "5 minutes", algorithm: "token-bucket", onExceeded: "delay" }) as const)
  ]
  // One key per kind of step, the same in both stores.
  const keys = new Map<string, string>()
  const sequence = Effect.forEach(steps, (step) => {
    const kind = `${step.algorithm ?? "fixed-window"}/${step.onExceeded}`
    if (!keys.has(kind)) keys.set(kind, key())
    return outcome({ ...step, key: keys.get(kind)! })
  })

  const memory = await timed(() => Effect.runPromise(Effect.provide(sequence, RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory)))))
  const postgres = await timed(() => processA.runPromise(sequence))
  const [inMemory, inPostgres] = [memory.result, postgres.result]

  // Durations may differ by the time the two runs took (and whole-millisecond rounding); everything else is equal.
  const durations = (r: (typeof inMemory)[number]) => (r.ok ? [r.delay, r.resetAfter] : [r.retryAfter])
  const rest = (r: (typeof inMemory)[number]) => (r.ok ? { ok: r.ok, remaining: r.remaining, delayed: r.delay > 0 } : r.remaining)
  expect(inPostgres.map(rest)).toEqual(inMemory.map(rest))
  inPostgres.forEach((r, i) =>
    durations(r).forEach((ms, j) => expect(Math.abs(ms - durations(inMemory[i]!)[j]!)).toBeLessThanOrEqual(memory.took + postgres.took + 1))
  )
  expect(inPostgres.map((r) => r.ok)).toEqual([true, true, true, false, true, false, true, true, true, true, true, false, true, false, true, true, true])
})

it("reports database failures as RateLimitStoreError", async () => {
  const unmigrated = processRuntime(await freshDatabaseUrl())
  try {
    const result = await unmigrated.runPromise(Effect.either(consume({ key: key(), limit: 1, window: "1 minute" })))
    expect(Either.isLeft(result) && result.left.reason).toBe("StoreError")
  } finally {
    await unmigrated.dispose()
  }
})
