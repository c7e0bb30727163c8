/**
 * Sending messages. The hot path has no workflow in it: a dispatcher claims due messages in
 * batches (a lease, so each is sent by one process), sends each through its endpoint's lane
 * (concurrency, rate limit, pooled connections), and records outcomes in batches. Only a
 * failed attempt starts a durable `WebhookRetry` workflow (retry.ts), which owns the message
 * from then on. A slow or dead endpoint fills its own lane and is left out of claims until
 * its lane drains, so it never holds back the others.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow"
import { ShardingConfig } from "@effect/cluster"
import { TokenCipher } from "@wearflow/core/crypto"
import { PublicInternet } from "@wearflow/core/public-internet"
import { retryWhileTransient } from "@wearflow/core/storage/errors"
import { Chunk, Context, Deferred, Duration, Effect, FiberSet, Layer, Metric, Option, Queue, Redacted, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { WebhookRetry } from "./retry-workflow.ts"
import * as Sender from "./sender.ts"
import { WebhookSettings } from "./settings.ts"
import { keyOf, type SignatureHeaders, sign, signedHeaders } from "./signing.ts"

/** A message as the dispatcher and the retries handle it. */
interface Message {
  readonly id: string
  readonly endpoint_id: string
  readonly team_id: string
  readonly attempts: number
  readonly run: number
  readonly status: string
  /** The JSON body exactly as sent on every attempt. */
  readonly body: string
}

/** An endpoint as sending needs it; secrets decrypted, cached briefly. */
interface Target {
  readonly id: string
  readonly url: URL
  readonly scheme: SignatureHeaders
  readonly keys: ReadonlyArray<{ readonly key: Buffer; readonly until: number }>
  readonly headers: Record<string, string>
  readonly rateLimit: number | null
  readonly disabled: boolean
}

interface TargetRow {
  readonly id: string
  readonly url: string
  readonly signature_headers: SignatureHeaders
  readonly secret: Uint8Array
  readonly previous_secret: Uint8Array | null
  readonly previous_secret_until: Date | null
  readonly headers: Uint8Array | null
  readonly rate_limit: number | null
  readonly disabled: boolean
}

type Trigger = "first" | "retry" | "manual"

interface Outcome {
  readonly message: Message
  readonly trigger: Trigger
  readonly result: Sender.AttemptResult
}

/** What a retry attempt found. */
export type RetryOutcome = "delivered" | "failed" | "settled"

export class Deliveries extends Context.Tag("wearflow/webhooks/Deliveries")<Deliveries, {
  /** Claims due messages now (after new messages, a resend or a recover). */
  readonly wake: Effect.Effect<void>
  /** One retry attempt of a message owned by its retry workflow's `run`. */
  readonly retry: (messageId: string, run: number) => Effect.Effect<RetryOutcome, SqlError.SqlError>
  /** The retry schedule ran out: the message has failed. */
  readonly exhaust: (messageId: string, run: number) => Effect.Effect<void, SqlError.SqlError>
  /** Forgets what is cached about an endpoint (changed). */
  readonly invalidate: (endpointId: string) => Effect.Effect<void>
  /** Drops everything kept for an endpoint (deleted): cache, connections, lane. */
  readonly forget: (endpointId: string) => Effect.Effect<void>
}>() {}

export const attemptsMade = Metric.counter("wearflow_webhook_attempts_total")
const attemptsSucceeded = Metric.tagged(attemptsMade, "outcome", "success")
const attemptsFailed = Metric.tagged(attemptsMade, "outcome", "failure")
export const messagesDelivered = Metric.counter("wearflow_webhook_messages_delivered_total")
export const messagesFailed = Metric.counter("wearflow_webhook_messages_failed_total")

const CLAIM_BATCH = 1000
const MAX_IN_FLIGHT = 8192
// Long enough for a full lane behind an endpoint that times out; a restarted process frees its own at once.
const LEASE = "15 minutes"
const TARGET_TTL_MS = 1000
const POLL = Duration.millis(500)

/** A message waiting in its endpoint's lane, and where its attempt's result goes. */
interface Job {
  readonly message: Message
  readonly reply: (result: Option.Option<Sender.AttemptResult>) => Effect.Effect<void>
}

/**
 * Per endpoint: a queue served by `endpointConcurrency` workers (one request each in flight),
 * the messages claimed for it and not yet recorded, and the rate limit's next free slot.
 */
interface Lane {
  readonly jobs: Queue.Queue<Job>
  held: number
  nextSlot: number
}

const sendHeaders = (target: Target, message: Message, now: number) => {
  const timestamp = Math.floor(now / 1000)
  const keys = target.keys.filter((k) => k.until > now).map((k) => k.key)
  return { ...target.headers, ...signedHeaders(target.scheme, message.id, timestamp, sign(keys, message.id, timestamp, message.body)) }
}

export const layer = Layer.scoped(
  Deliveries,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cipher = yield* TokenCipher
    const settings = yield* WebhookSettings
    const engine = yield* Effect.context<WorkflowEngine.WorkflowEngine>()
    const guard = (yield* PublicInternet).guard(settings.reach)
    const sender = yield* Sender.make(guard, {
      timeoutMs: Duration.toMillis(settings.timeout),
      connections: settings.endpointConcurrency
    })
    // Leases carry the runner address, so a restarted process frees its own at once.
    const instance = Option.match(yield* Effect.serviceOption(ShardingConfig.ShardingConfig), {
      onNone: () => randomUUID(),
      onSome: (config) => Option.match(config.runnerAddress, { onNone: () => randomUUID(), onSome: (a) => `${a.host}:${a.port}` })
    })
    const maxHeld = settings.endpointConcurrency * 8

    // ---- endpoints ----------------------------------------------------------------------
    const targets = new Map<string, { readonly target: Option.Option<Target>; readonly loadedAt: number }>()
    const loadTarget = (endpointId: string) =>
      Effect.suspend(() => {
        const cached = targets.get(endpointId)
        return cached && Date.now() - cached.loadedAt < TARGET_TTL_MS ? Effect.succeed(cached.target) : readTarget(endpointId)
      })
    const readTarget = (endpointId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql<TargetRow>`
          select id, url, signature_headers, secret, previous_secret, previous_secret_until, headers, rate_limit, disabled
          from webhook_endpoints where id = ${endpointId}`
        const row = rows[0]
        let target = Option.none<Target>()
        if (row) {
          const secret = yield* cipher.decrypt(row.secret)
          const keys = [{ key: keyOf(secret), until: Infinity }]
          if (row.previous_secret && row.previous_secret_until && row.previous_secret_until.getTime() > Date.now()) {
            keys.push({ key: keyOf(yield* cipher.decrypt(row.previous_secret)), until: row.previous_secret_until.getTime() })
          }
          const headers = row.headers ? JSON.parse(Redacted.value(yield* cipher.decrypt(row.headers))) as Record<string, string> : {}
          target = Option.some({ id: row.id, url: new URL(row.url), scheme: row.signature_headers, keys, headers, rateLimit: row.rate_limit, disabled: row.disabled })
        }
        targets.set(endpointId, { target, loadedAt: Date.now() })
        return target
      }).pipe(Effect.orDie)

    // ---- lanes ----------------------------------------------------------------------------
    const fibers = yield* FiberSet.make()
    const runWorker = yield* FiberSet.runtime(fibers)<never>()
    const lanes = new Map<string, Lane>()
    let held = 0

    /** Waits for the endpoint's next slot under its rate limit (messages per second). */
    const paced = (lane: Lane, rateLimit: number | null) =>
      Effect.suspend(() => {
        if (rateLimit === null) return Effect.void
        const now = Date.now()
        const slot = Math.max(now, lane.nextSlot)
        lane.nextSlot = slot + 1000 / rateLimit
        return slot > now ? Effect.sleep(Duration.millis(slot - now)) : Effect.void
      })

    /** One attempt; `None` when the endpoint is gone or disabled. */
    const attempt = (lane: Lane, message: Message) =>
      Effect.gen(function* () {
        const found = yield* loadTarget(message.endpoint_id)
        if (Option.isNone(found) || found.value.disabled) return Option.none<Sender.AttemptResult>()
        const target = found.value
        yield* paced(lane, target.rateLimit)
        const refused = guard.checkScheme(target.url)
        const now = Date.now()
        if (refused) return Option.some<Sender.AttemptResult>({ ok: false, attemptedAt: new Date(now), status: null, latencyMs: 0, excerpt: null, error: refused.message })
        const result = yield* Effect.promise(() => sender.attempt(target.id, target.url, sendHeaders(target, message, now), message.body))
        yield* Metric.increment(result.ok ? attemptsSucceeded : attemptsFailed)
        return Option.some(result)
      })

    const laneOf = (endpointId: string): Lane => {
      const existing = lanes.get(endpointId)
      if (existing) return existing
      // Made synchronously, so two callers cannot both open a lane for one endpoint.
      const lane: Lane = { jobs: Effect.runSync(Queue.unbounded<Job>()), held: 0, nextSlot: 0 }
      lanes.set(endpointId, lane)
      const worker = Queue.take(lane.jobs).pipe(
        Effect.flatMap((job) => attempt(lane, job.message).pipe(Effect.flatMap(job.reply))),
        Effect.forever
      )
      for (let i = 0; i < settings.endpointConcurrency; i++) runWorker(worker)
      return lane
    }

    /** Closes an endpoint's lane (deleted): its workers stop, its queued messages are dropped. */
    const closeLane = (endpointId: string) =>
      Effect.suspend(() => {
        const lane = lanes.get(endpointId)
        if (!lane) return Effect.void
        lanes.delete(endpointId)
        return Queue.takeAll(lane.jobs).pipe(
          Effect.tap((dropped) => Effect.sync(() => (held -= dropped.length))),
          Effect.zipRight(Queue.shutdown(lane.jobs))
        )
      })

    /** Sends one attempt through the endpoint's lane and waits for it (the retry path). */
    const sendNow = (message: Message) =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<Option.Option<Sender.AttemptResult>>()
        yield* Queue.offer(laneOf(message.endpoint_id).jobs, { message, reply: (result) => Deferred.succeed(done, result) })
        return yield* Deferred.await(done)
      })

    // ---- recording ------------------------------------------------------------------------
    /**
     * Records attempts in one statement: the attempt log, the message's count and status. A
     * failed first (or manual) attempt leaves the message leased: its retry workflow starts next.
     */
    const record = (outcomes: ReadonlyArray<Outcome>) =>
      Effect.gen(function* () {
        if (outcomes.length === 0) return
        const col = <A>(f: (o: Outcome) => A) => outcomes.map(f)
        yield* sql`
          with r as (
            select * from unnest(
              ${col((o) => o.message.id)}::text[], ${col((o) => o.trigger)}::text[], ${col((o) => o.result.attemptedAt.toISOString())}::timestamptz[],
              ${col((o) => o.result.ok)}::bool[], ${col((o) => o.result.status)}::int[], ${col((o) => o.result.latencyMs)}::int[],
              ${col((o) => o.result.excerpt)}::text[], ${col((o) => o.result.error)}::text[]
            ) as r(id, trigger, at, ok, status, latency, excerpt, error)
          ), counted as (
            update webhook_messages m set
              attempts = m.attempts + 1,
              status = case when r.ok then 'delivered' else m.status end,
              delivered_at = case when r.ok then r.at else m.delivered_at end,
              lease_until = case when r.ok then '-infinity' else m.lease_until end,
              -- A failed attempt leaves the message 'sending' (leased) until its retry workflow has it.
              last_error = r.error,
              updated_at = now()
            from r where m.id = r.id
            returning m.id, m.attempts
          )
          insert into webhook_attempts (message_id, attempt, trigger, attempted_at, status, response_status, latency_ms, response_excerpt, error)
          select r.id, c.attempts, r.trigger, r.at, case when r.ok then 'success' else 'failure' end, r.status, r.latency, r.excerpt, r.error
          from r join counted c on c.id = r.id
          on conflict do nothing`
        const delivered = outcomes.filter((o) => o.result.ok)
        if (delivered.length > 0) yield* Metric.incrementBy(messagesDelivered, delivered.length)
        yield* endpointHealth(outcomes)
      })

    /** Success clears an endpoint's failing streak; a streak older than `disableAfter` disables it. */
    const endpointHealth = (outcomes: ReadonlyArray<Outcome>) =>
      Effect.gen(function* () {
        const healthy = [...new Set(outcomes.filter((o) => o.result.ok).map((o) => o.message.endpoint_id))]
        const failing = [...new Set(outcomes.filter((o) => !o.result.ok).map((o) => o.message.endpoint_id))].filter((id) => !healthy.includes(id))
        if (healthy.length > 0) {
          yield* sql`update webhook_endpoints set failing_since = null where id = any(${healthy}::uuid[]) and failing_since is not null`
        }
        if (failing.length === 0) return
        yield* sql`update webhook_endpoints set failing_since = now() where id = any(${failing}::uuid[]) and failing_since is null`
        const disabled = yield* sql<{ id: string; team_id: string; failing_since: Date }>`
          update webhook_endpoints set disabled = true, updated_at = now(),
            disabled_reason = 'failing continuously since ' || to_char(failing_since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
          where id = any(${failing}::uuid[]) and not disabled
            and failing_since <= now() - make_interval(secs => ${Duration.toSeconds(settings.disableAfter)})
          returning id, team_id, failing_since`
        for (const endpoint of disabled) {
          targets.delete(endpoint.id)
          yield* sql`insert into webhook_notices (team_id, endpoint_id, kind, detail)
                     values (${endpoint.team_id}, ${endpoint.id}, 'endpoint.disabled', ${`failing continuously since ${endpoint.failing_since.toISOString()}`})`
          yield* Effect.logWarning("webhook endpoint disabled: it kept failing").pipe(
            Effect.annotateLogs({ endpoint_id: endpoint.id, failing_since: endpoint.failing_since.toISOString() })
          )
        }
      })

    /** Messages whose endpoint is gone or disabled when their turn came: failed, recoverable later. */
    const settleUnsendable = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.void : sql`
        update webhook_messages set status = 'failed', lease_until = '-infinity', last_error = 'endpoint disabled', updated_at = now()
        where id = any(${ids}::text[]) and status <> 'delivered'`.pipe(Effect.asVoid)

    /** Starts each failed message's retry workflow, then hands the message over to it. */
    const startRetries = (messages: ReadonlyArray<Message>) =>
      Effect.gen(function* () {
        yield* Effect.forEach(messages, (m) => WebhookRetry.execute({ messageId: m.id, run: m.run }, { discard: true }), { concurrency: 16, discard: true })
        yield* sql`update webhook_messages set status = 'retrying', lease_until = '-infinity', updated_at = now()
                   where id = any(${messages.map((m) => m.id)}::text[]) and status = 'sending'`
      }).pipe(Effect.provide(engine))

    const outcomes = yield* Queue.unbounded<Outcome | { readonly unsendable: Message }>()
    const wakeups = yield* Queue.sliding<void>(1)
    /** Records one batch of outcomes and hands failed messages to their retries. */
    const recordBatch = (batch: ReadonlyArray<Outcome | { readonly unsendable: Message }>) =>
      Effect.gen(function* () {
        const attempted: Array<Outcome> = []
        const unsendable: Array<string> = []
        for (const item of batch) "unsendable" in item ? unsendable.push(item.unsendable.id) : attempted.push(item)
        yield* sql.withTransaction(Effect.zipRight(record(attempted), settleUnsendable(unsendable)))
        const failed = attempted.filter((o) => !o.result.ok).map((o) => o.message)
        if (failed.length > 0) yield* startRetries(failed)
      })

    /** Frees the batch's room in its lanes and claims more now rather than at the next poll. */
    const release = (batch: ReadonlyArray<Outcome | { readonly unsendable: Message }>) =>
      Effect.suspend(() => {
        held -= batch.length
        for (const item of batch) {
          const lane = lanes.get("unsendable" in item ? item.unsendable.endpoint_id : item.message.endpoint_id)
          if (lane) lane.held--
        }
        return Queue.offer(wakeups, undefined)
      })

    // A batch that cannot be recorded stays leased: its messages are sent again once freed.
    const recorder = Queue.takeBetween(outcomes, 1, 2000).pipe(
      Effect.map(Chunk.toReadonlyArray),
      Effect.flatMap((batch) =>
        recordBatch(batch).pipe(
          retryWhileTransient(Duration.minutes(5)),
          Effect.catchAllCause((cause) => Effect.logError("could not record webhook attempts", cause)),
          Effect.ensuring(release(batch))
        )),
      Effect.forever
    )

    // ---- dispatching ----------------------------------------------------------------------

    const claim = (limit: number, busy: ReadonlyArray<string>) =>
      sql<Message>`
        with claimed as (
          update webhook_messages m set status = 'sending', lease_until = now() + ${LEASE}::interval, leased_by = ${instance}
          from (
            select c.id from webhook_messages c
            where c.status = 'pending'
              and not (c.endpoint_id = any(${busy}::uuid[]))
              and not (c.fifo and exists (
                select 1 from webhook_messages p
                where p.fifo and p.endpoint_id = c.endpoint_id and p.user_id = c.user_id and p.seq < c.seq
                  and p.status in ('pending', 'sending', 'retrying')))
            order by c.seq limit ${limit}
            for update skip locked
          ) picked
          where m.id = picked.id
          returning m.id, m.endpoint_id, m.team_id, m.attempts, m.run, m.status, m.event_id, m.payload, m.seq
        )
        select c.id, c.endpoint_id, c.team_id, c.attempts, c.run, c.status, coalesce(c.payload, o.payload)::text as body
        from claimed c left join outbox o on o.event_id = c.event_id
        order by c.seq`

    /** Queues a claimed message in its lane; its outcome goes to the recorder. */
    const dispatch = (message: Message) => {
      const lane = laneOf(message.endpoint_id)
      held++
      lane.held++
      return Queue.offer(lane.jobs, {
        message,
        reply: (sent) =>
          Queue.offer(outcomes, Option.isSome(sent)
            ? { message, trigger: message.attempts === 0 ? "first" : "manual", result: sent.value }
            : { unsendable: message })
      })
    }

    const dispatcher = Effect.gen(function* () {
      const room = Math.min(CLAIM_BATCH, MAX_IN_FLIGHT - held)
      const busy = [...lanes].filter(([, lane]) => lane.held >= maxHeld).map(([id]) => id)
      const claimed = room > 0 ? yield* claim(room, busy) : []
      for (const message of claimed) yield* dispatch(message)
      if (claimed.length < room || room === 0) yield* Queue.take(wakeups).pipe(Effect.timeout(POLL), Effect.ignore)
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError("webhook dispatcher failed; retrying", cause).pipe(Effect.zipRight(Effect.sleep("1 second")))),
      Effect.forever
    )

    // A restarted process frees the messages it held when it stopped; others' after their lease.
    yield* sql`update webhook_messages set status = 'pending', lease_until = '-infinity', leased_by = null where leased_by = ${instance} and status = 'sending'`
    const expiredLeases = sql`update webhook_messages set status = 'pending', lease_until = '-infinity', leased_by = null
                              where status = 'sending' and lease_until < now()`
    yield* Effect.forkScoped(
      expiredLeases.pipe(
        Effect.tap((freed) => (freed.length > 0 ? Effect.logWarning("freed webhook messages whose process stopped holding them").pipe(Effect.annotateLogs("messages", freed.length)) : Effect.void)),
        Effect.catchAllCause((cause) => Effect.logError("could not free expired webhook leases", cause)),
        Effect.repeat(Schedule.spaced("1 minute")),
        Effect.delay("1 minute")
      )
    )
    yield* Effect.forkScoped(recorder)
    yield* Effect.forkScoped(dispatcher)

    // ---- retries (called from the workflow's activities) -------------------------------------
    const retry = (messageId: string, run: number) =>
      Effect.gen(function* () {
        const rows = yield* sql<Message>`
          select m.id, m.endpoint_id, m.team_id, m.attempts, m.run, m.status, coalesce(m.payload, o.payload)::text as body
          from webhook_messages m left join outbox o on o.event_id = m.event_id where m.id = ${messageId}`
        const message = rows[0]
        if (!message || message.run !== run || message.status === "delivered" || message.status === "failed") return "settled" as const
        const sent = yield* sendNow(message)
        if (Option.isNone(sent)) {
          yield* settleUnsendable([message.id])
          return "settled" as const
        }
        yield* sql.withTransaction(record([{ message, trigger: "retry", result: sent.value }]))
        return sent.value.ok ? ("delivered" as const) : ("failed" as const)
      })

    const exhaust = (messageId: string, run: number) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ team_id: string; endpoint_id: string; attempts: number }>`
          update webhook_messages set status = 'failed', lease_until = '-infinity', updated_at = now()
          where id = ${messageId} and run = ${run} and status in ('retrying', 'pending', 'sending')
          returning team_id, endpoint_id, attempts`
        const message = rows[0]
        if (!message) return
        yield* sql`insert into webhook_notices (team_id, endpoint_id, message_id, kind, detail)
                   values (${message.team_id}, ${message.endpoint_id}, ${messageId}, 'message.attempt.exhausted', ${`${message.attempts} attempts failed`})`
        yield* Metric.increment(messagesFailed)
        yield* Effect.logWarning("webhook message failed after its last retry").pipe(
          Effect.annotateLogs({ message_id: messageId, endpoint_id: message.endpoint_id, attempts: message.attempts })
        )
      }).pipe(sql.withTransaction)

    return {
      wake: Queue.offer(wakeups, undefined).pipe(Effect.asVoid),
      retry,
      exhaust,
      invalidate: (endpointId) => Effect.sync(() => targets.delete(endpointId)),
      forget: (endpointId) =>
        Effect.sync(() => {
          targets.delete(endpointId)
          sender.forget(endpointId)
        }).pipe(Effect.zipRight(closeLane(endpointId)))
    }
  })
)
