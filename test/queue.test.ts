/**
 * The durable job queue (core/pipeline/queue.ts) against a real Postgres, with two stores on
 * one table standing for two processes: a job that runs far longer than the lock expiration
 * keeps its lease and is never taken by the other; a dead process's job is taken over once
 * its lease lapses.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import * as Queue from "@wearflow/core/pipeline/queue"
import * as Database from "@wearflow/core/storage/database"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Schema, Scope } from "effect"
import { randomUUID } from "node:crypto"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()
const Job = Schema.Struct({ n: Schema.Number })
const options = { tableName: "test_queue", pollInterval: "20 millis", lockExpiration: "1 second" } as const

/** A second "process": its own store (own worker id) on the same table. */
const otherProcess = Effect.flatMap(Scope.Scope, (scope) => Queue.make(options).pipe(Scope.extend(scope)))

const Services = Queue.layer(options).pipe(Layer.provideMerge(Database.layer({ url: Option.some(url), dataDir: "unused" })))

layer(Services, { timeout: 60_000 })("queue leases", (it) => {
  it.scoped("a job running far past the lock expiration keeps its lease; no other process takes it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const mine = (yield* Queue.QueueStoreTag).make("long", Job)
      const theirs = (yield* otherProcess).make("long", Job)
      yield* mine.offer({ n: 1 }, { id: "long-job" })

      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      let runs = 0
      const holder = yield* Effect.fork(mine.take(() => Effect.sync(() => runs++).pipe(Effect.zipRight(Deferred.succeed(started, undefined)), Effect.zipRight(Deferred.await(release)))))
      yield* Deferred.await(started)
      const [taken] = yield* sql<{ at: Date }>`select now() as at`
      // The other process polls the whole time the job runs.
      let stolen = 0
      const thief = yield* Effect.fork(Effect.forever(theirs.take(() => Effect.sync(() => stolen++))))

      // Wait until the job has run for three lock expirations (by the database's clock).
      for (;;) {
        const [row] = yield* sql<{ running_for: number }>`select extract(epoch from now() - ${taken!.at}::timestamptz)::float8 as running_for`
        if (row!.running_for > 3) break
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
      }
      expect(stolen).toBe(0)
      // Its lease was renewed meanwhile, by this process.
      const [lease] = yield* sql<{ renewed_for: number }>`
        select extract(epoch from acquired_at - ${taken!.at}::timestamptz at time zone current_setting('TimeZone'))::float8 as renewed_for
        from test_queue where id = 'long-job'`
      expect(lease!.renewed_for).toBeGreaterThan(1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.interrupt(thief)

      expect(runs).toBe(1)
      expect(stolen).toBe(0)
      const [row] = yield* sql<{ completed: boolean; attempts: number; acquired_by: string | null }>`select completed, attempts, acquired_by from test_queue where id = 'long-job'`
      expect(row).toEqual({ completed: true, attempts: 1, acquired_by: null })
    }))

  it.scoped("a job held by a process that stopped renewing is taken over once its lease lapses", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const mine = (yield* Queue.QueueStoreTag).make("orphan", Job)
      // As a killed process leaves it: acquired, never to be renewed.
      yield* sql`insert into test_queue (id, queue_name, element, completed, attempts, acquired_at, acquired_by, created_at, updated_at)
                 values ('orphan-job', 'orphan', '{"n":2}', false, 0, now(), ${randomUUID()}, now(), now())`
      const value = yield* mine.take((job) => Effect.succeed(job.n))
      expect(value).toBe(2)
      const [row] = yield* sql<{ completed: boolean }>`select completed from test_queue where id = 'orphan-job'`
      expect(row!.completed).toBe(true)
    }))

  it.scoped("a holder whose lease was taken stops the job and leaves the row to the new holder", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const mine = (yield* Queue.QueueStoreTag).make("taken", Job)
      yield* mine.offer({ n: 3 }, { id: "taken-job" })
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(Effect.either(mine.take(() =>
        Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never), Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
      )))
      yield* Deferred.await(started)
      // Another process took the row over (as after a lapse this one did not notice).
      const other = randomUUID()
      yield* sql`update test_queue set acquired_by = ${other}, acquired_at = now() where id = 'taken-job'`
      yield* Deferred.await(interrupted)
      const result = yield* Fiber.join(holder)
      expect(result._tag).toBe("Left")
      const [row] = yield* sql<{ completed: boolean; attempts: number; acquired_by: string }>`select completed, attempts, acquired_by from test_queue where id = 'taken-job'`
      expect(row).toEqual({ completed: false, attempts: 0, acquired_by: other })
    }))

  it.scoped("takers share one poll: every job of a burst runs once, none twice, each completed", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const mine = (yield* Queue.QueueStoreTag).make("burst", Job)
      const runs = new Map<number, number>()
      const takers = yield* Effect.fork(Effect.all(
        Array.from({ length: 6 }, () => Effect.forever(mine.take((job) => Effect.sync(() => runs.set(job.n, (runs.get(job.n) ?? 0) + 1))))),
        { concurrency: "unbounded", discard: true }
      ))
      for (let n = 0; n < 40; n++) yield* mine.offer({ n }, { id: `burst-${n}` })
      for (;;) {
        const [row] = yield* sql<{ done: number }>`select count(*)::int as done from test_queue where queue_name = 'burst' and completed and acquired_by is null`
        if (row!.done === 40) break
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
      }
      yield* Fiber.interrupt(takers)
      expect([...runs.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, n) => n))
      expect([...runs.values()].every((count) => count === 1)).toBe(true)
    }))

  it.scoped("batches: every job of a burst runs once; successes are completed, a failure is retried alone", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const mine = (yield* Queue.QueueStoreTag).make("batches", Job)
      const runs = new Map<number, number>()
      const sizes: Array<number> = []
      // Job 7 fails on its first attempt only.
      const takers = yield* Effect.fork(Effect.all(
        Array.from({ length: 2 }, () =>
          Effect.forever(mine.takeBatch((jobs) =>
            Effect.sync(() => {
              sizes.push(jobs.length)
              return jobs.map((job) => {
                runs.set(job.value.n, (runs.get(job.value.n) ?? 0) + 1)
                return job.value.n === 7 && job.attempts === 0 ? Exit.fail("refused") : Exit.succeed(job.value.n)
              })
            }), { maxJobs: 8 }))),
        { concurrency: "unbounded", discard: true }
      ))
      for (let n = 0; n < 40; n++) yield* mine.offer({ n }, { id: `batches-${n}` })
      for (;;) {
        const [row] = yield* sql<{ done: number }>`select count(*)::int as done from test_queue where queue_name = 'batches' and completed and acquired_by is null`
        if (row!.done === 40) break
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
      }
      yield* Fiber.interrupt(takers)
      expect([...runs.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, n) => n))
      expect([...runs.entries()].filter(([, count]) => count !== 1)).toEqual([[7, 2]])
      expect(Math.max(...sizes)).toBeLessThanOrEqual(8)
      const attempts = yield* sql<{ id: string; attempts: number; last_failure: string | null }>`
        select id, attempts, last_failure from test_queue where queue_name = 'batches' and attempts <> 1`
      expect(attempts.map((row) => [row.id, row.attempts])).toEqual([["batches-7", 2]])
      expect(attempts[0]!.last_failure).toContain("refused")
    }))

  it.scoped("a batch claim reads each job's attach row in the same statement; a row gone reads as nulls; an element that is not JSON fails alone", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`create table test_attached (id bigint primary key, body text not null)`
      yield* sql`insert into test_attached values (1, 'one'), (2, 'two'), (4, 'four')`
      const attach = { table: "test_attached", key: "id", field: "n", columns: ["id", "body"] }
      const mine = (yield* Queue.QueueStoreTag).make("attach", Job, { attach })
      for (const n of [1, 2, 3]) yield* mine.offer({ n }, { id: `attach-${n}` })
      yield* sql`insert into test_queue (id, queue_name, element, completed, attempts, created_at, updated_at)
                 values ('attach-bad', 'attach', 'not json {"n": 1', false, 0, now(), now()),
                        ('attach-4', 'attach', json_build_object('n', 4)::text, false, 0, now(), now())`
      const seen = new Map<number, unknown>()
      let failures = 0
      while (seen.size < 4 || failures < 1) {
        const exits = yield* mine.takeBatch((jobs) =>
          Effect.sync(() => jobs.map((job) => {
            seen.set(job.value.n, job.attached)
            return Exit.succeed(job.value.n)
          })), { maxJobs: 8, maxAttempts: 1 })
        failures += exits.filter(Exit.isFailure).length
      }
      expect(Object.fromEntries(seen)).toEqual({ 1: { id: "1", body: "one" }, 2: { id: "2", body: "two" }, 3: { id: null, body: null }, 4: { id: "4", body: "four" } })
      const rows = yield* sql<{ id: string; completed: boolean; attempts: number }>`
        select id, completed, attempts from test_queue where queue_name = 'attach' order by id`
      expect(rows.map((row) => [row.id, row.completed, row.attempts])).toEqual([
        ["attach-1", true, 1], ["attach-2", true, 1], ["attach-3", true, 1], ["attach-4", true, 1], ["attach-bad", false, 1]
      ])
    }))

  it.scoped("a batch's alongCompletion statement is run with the completion of the jobs that succeeded, and only theirs", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`create table test_along (n int primary key)`
      const mine = (yield* Queue.QueueStoreTag).make("along", Job)
      for (const n of [1, 2, 3]) yield* mine.offer({ n }, { id: `along-${n}` })
      const given: Array<ReadonlyArray<number>> = []
      let taken = 0
      while (taken < 3) {
        const exits = yield* mine.takeBatch((jobs) =>
          Effect.sync(() => jobs.map((job) => (job.value.n === 2 ? Exit.fail("refused") : Exit.succeed(job.value.n)))), {
          maxJobs: 8,
          maxAttempts: 1,
          alongCompletion: (values) => {
            given.push(values)
            return sql`insert into test_along select unnest(${values}::int[])`
          }
        })
        taken += exits.length
      }
      expect(given.flat().sort()).toEqual([1, 3])
      expect((yield* sql<{ n: number }>`select n from test_along order by n`).map((r) => r.n)).toEqual([1, 3])
      const rows = yield* sql<{ id: string; completed: boolean }>`select id, completed from test_queue where queue_name = 'along' order by id`
      expect(rows.map((row) => [row.id, row.completed])).toEqual([["along-1", true], ["along-2", false], ["along-3", true]])
    }))

  it.scoped("a taker sleeping out a long poll interval wakes when this process queues a job", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // Without the wake, the second job would wait an hour.
      const sleepy = (yield* Effect.flatMap(Scope.Scope, (scope) => Queue.make({ ...options, pollInterval: "1 hour" }).pipe(Scope.extend(scope)))).make("sleepy", Job)
      const seen: Array<number> = []
      const taker = yield* Effect.fork(Effect.forever(sleepy.take((job) => Effect.sync(() => seen.push(job.n)))))
      yield* sleepy.offer({ n: 1 }, { id: "sleepy-1" })
      const completed = (id: string) =>
        Effect.gen(function* () {
          for (;;) {
            const [row] = yield* sql<{ completed: boolean }>`select completed from test_queue where id = ${id}`
            if (row?.completed) return
            yield* Effect.promise(() => new Promise((r) => setTimeout(r, 20)))
          }
        })
      yield* completed("sleepy-1")
      // The taker has looked again and found nothing: it sleeps now (for an hour, without the wake).
      while ((yield* Queue.sleepingTakers) === 0) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
      yield* sleepy.offer({ n: 2 }, { id: "sleepy-2" })
      yield* completed("sleepy-2")
      yield* Fiber.interrupt(taker)
      expect(seen).toEqual([1, 2])
    }))
})
