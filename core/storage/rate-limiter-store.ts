/**
 * RateLimiter's store in Postgres, so that every runner on the database draws on one budget
 * per key (DurableRateLimiter.rateLimit calls a provider at most `limit` times per window in
 * total, not per process). Same semantics as RateLimiter.layerStoreMemory, on the database's
 * clock so that processes agree on when a window ends. Tables: migrations/0004_rate_limits.ts.
 *
 * `layerRateLimiter` is the RateLimiter on this store whose waits are whole milliseconds:
 * DurableRateLimiter hands its delay to the workflow engine, which stores the wake-up time as
 * bigint epoch milliseconds and refuses a fraction (a window / limit refill rate, or the
 * database clock's microseconds, would otherwise make one).
 */
import { make as makeRateLimiter, RateLimiter, RateLimitExceeded, RateLimitStoreError, RateLimiterStore } from "@effect/experimental/RateLimiter"
import { SqlClient, type SqlError } from "@effect/sql"
import { Duration, Effect, Layer } from "effect"
import { wholeMillis } from "../time.ts"

const storeError = (cause: SqlError.SqlError) =>
  new RateLimitStoreError({ message: `Rate limiter store: ${cause.message}`, cause })

export const layer: Layer.Layer<RateLimiterStore, never, SqlClient.SqlClient> = Layer.effect(
  RateLimiterStore,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /*
     * Each operation is one UPDATE of the key's row (created first if missing). Its `cur`
     * sub-select locks the row: a concurrent call on the same key waits there, then reads the
     * version this one commits. RETURNING reports from `cur` what the call saw, as the memory
     * store does even when it takes nothing (an upsert's RETURNING sees only the new row).
     */

    const fixedWindow = Effect.fn("RateLimiterStore.fixedWindow")(function* (options: {
      readonly key: string
      readonly tokens: number
      readonly refillRate: Duration.Duration
      readonly limit: number | undefined
    }) {
      yield* sql`insert into rate_limit_windows (key, count, expires_at) values (${options.key}, 0, clock_timestamp())
        on conflict (key) do nothing`
      // An expired window starts again at zero; past `limit` nothing is taken.
      const [row] = yield* sql<{ count: number; ttl: number }>`
        with cur as materialized (
          select now.t, case when w.expires_at > now.t then w.count else 0 end as count, greatest(w.expires_at, now.t) as expires_at
          from rate_limit_windows w, (select clock_timestamp() as t) now
          where w.key = ${options.key} for update of w
        ), step as (
          select cur.*, case when cur.count + ${options.tokens}::float8 > ${options.limit ?? null}::float8 then 0
                             else ${options.tokens}::float8 end as taken
          from cur
        )
        update rate_limit_windows w
        set count = step.count + step.taken,
            expires_at = step.expires_at + step.taken * ${Duration.toMillis(options.refillRate)}::float8 * interval '1 millisecond'
        from step where w.key = ${options.key}
        returning step.count + ${options.tokens}::float8 as count, ceil(extract(epoch from w.expires_at - step.t) * 1000)::float8 as ttl`
      return [row!.count, row!.ttl] as const
    }, Effect.mapError(storeError))

    const tokenBucket = Effect.fn("RateLimiterStore.tokenBucket")(function* (options: {
      readonly key: string
      readonly tokens: number
      readonly limit: number
      readonly refillRate: Duration.Duration
      readonly allowOverflow: boolean
    }) {
      const refillMillis = Duration.toMillis(options.refillRate)
      yield* sql`insert into rate_limit_buckets (key, tokens, refilled_at) values (${options.key}, ${options.limit}, clock_timestamp())
        on conflict (key) do nothing`
      // Whole refill periods since the last refill add a token each, up to `limit`.
      const [row] = yield* sql<{ remaining: number }>`
        with cur as materialized (
          select b.tokens, b.refilled_at,
                 greatest(0, floor(extract(epoch from now.t - b.refilled_at) * 1000 / ${refillMillis}::float8)) as added
          from rate_limit_buckets b, (select clock_timestamp() as t) now
          where b.key = ${options.key} for update of b
        ), step as (
          select case when added > 0 then least(${options.limit}::float8, tokens + added) else tokens end as tokens,
                 refilled_at + added * ${refillMillis}::float8 * interval '1 millisecond' as refilled_at
          from cur
        )
        update rate_limit_buckets b
        set tokens = case when ${options.allowOverflow}::boolean or step.tokens >= ${options.tokens}::float8
                          then step.tokens - ${options.tokens}::float8 else step.tokens end,
            refilled_at = step.refilled_at
        from step where b.key = ${options.key}
        returning step.tokens - ${options.tokens}::float8 as remaining`
      return row!.remaining
    }, Effect.mapError(storeError))

    return RateLimiterStore.of({ fixedWindow, tokenBucket })
  })
)

/** The RateLimiter on the Postgres store, every duration it answers in whole milliseconds (rounded up). */
export const layerRateLimiter: Layer.Layer<RateLimiter, never, SqlClient.SqlClient> = Layer.effect(
  RateLimiter,
  Effect.map(makeRateLimiter, (limiter): RateLimiter => ({
    ...limiter,
    consume: (options) =>
      limiter.consume(options).pipe(
        Effect.map((result) => ({ ...result, delay: wholeMillis(result.delay), resetAfter: wholeMillis(result.resetAfter) })),
        Effect.mapError((error) =>
          error instanceof RateLimitExceeded ? new RateLimitExceeded({ ...error, retryAfter: wholeMillis(error.retryAfter) }) : error
        )
      )
  }))
).pipe(Layer.provide(layer))
