/**
 * Sending messages. The hot path has no workflow and no fiber per message in it: the fan-out
 * writes each new message already claimed (a lease, so one process sends it), and they go
 * straight to their endpoint's lane (concurrency, rate limit, pooled connections) without
 * waiting for the sink runner's commit; outcomes are recorded in batches once it has ended,
 * and a first attempt that succeeds is recorded in the message row alone. Messages not claimed
 * at fan-out (FIFO endpoints, full lanes, resends, recovers, freed leases) are claimed in
 * batches by the dispatcher. Only a failed attempt starts a durable `WebhookRetry` workflow (retry.ts),
 * which owns the message from then on. A slow or dead endpoint fills its own lane and is left
 * out of claims until its lane drains, so it never holds back the others.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow"
import { ShardingConfig } from "@effect/cluster"
import { clearAlerts, raiseAlert } from "@wearflow/core/alerts"
import { TokenCipher } from "@wearflow/core/crypto"
import { PublicInternet } from "@wearflow/core/public-internet"
import type { OutboxEntry } from "@wearflow/core/sink"
import { retryWhileTransient } from "@wearflow/core/storage/errors"
import { Context, Duration, Effect, Layer, Metric, Option, Queue, Redacted, Runtime, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { WebhookRetry } from "./retry-workflow.ts"
import * as Sender from "./sender.ts"
import { WebhookSettings } from "./settings.ts"
import { keyOf, type SignatureHeaders, sign, signedHeaders } from "./signing.ts"
import { forkWhenWorking } from "@wearflow/core/plugin"

/** A message as the dispatcher and the retries handle it. */
interface Message {
  readonly id: string
  readonly endpoint_id: string
  readonly team_id: string
  readonly attempts: number
  readonly run: number
  readonly status: string
  /**
   * The body of every attempt: its payload (the outbox event's, or its own for test messages)
   * as Postgres renders it (`payload::text`). Every attempt reads the same stored payload the
   * same way, so every attempt sends the same bytes; and the payload is never parsed here.
   */
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
  /** The endpoint row's `updated_at` as read: a fan-out that reads another drops the cached target. */
  readonly version: string
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
  readonly failing: boolean
  readonly version: string
}

type Trigger = "first" | "retry" | "manual"

interface Outcome {
  readonly message: Message
  readonly trigger: Trigger
  readonly result: Sender.AttemptResult
}

/** What a lane did with a message. */
type LaneResult =
  | { readonly _tag: "Attempted"; readonly result: Sender.AttemptResult }
  /** The endpoint is gone or disabled (or its lane closed): nothing was sent. */
  | { readonly _tag: "Unsendable" }
  /** The endpoint could not be read (database trouble): nothing was sent. */
  | { readonly _tag: "Unreadable"; readonly error: unknown }
  /** Its lease was about to end before its turn came: nothing was sent, the lease sweep frees it. */
  | { readonly _tag: "Lapsed" }

/** What the recorder records: an attempt, or a message that could not be sent. */
type Recordable = Outcome | { readonly unsendable: Message }

/** A fan-out's messages, sent before its round's transaction ended: their outcomes wait for that. */
interface FanOutRound {
  ended: boolean
  readonly outcomes: Array<Recordable>
}

/** What a retry attempt found. */
export type RetryOutcome = "delivered" | "failed" | "settled"

export class Deliveries extends Context.Tag("wearflow/webhooks/Deliveries")<Deliveries, {
  /**
   * Writes one message per (event, matching endpoint) in the sink runner's transaction, in
   * outbox order, most of them already claimed by this process, and sends those at once.
   */
  readonly fanOut: (batch: ReadonlyArray<OutboxEntry>) => Effect.Effect<void, SqlError.SqlError>
  /** After the runner's transaction committed: the outcomes of what its fan-out sent are recorded. */
  readonly roundsEnded: Effect.Effect<void>
  /** Claims due messages now (after a resend or a recover). */
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
/** Messages this process holds claimed at once (bodies are shared by the messages of one event). */
const MAX_IN_FLIGHT = 32768
/** Messages one lane may hold waiting, however fast its endpoint. */
const MAX_LANE_WAITING = 16384
/**
 * Body bytes (as stored) one fan-out reads; the messages of events past it are left to claims.
 * The runner reads entries, without payloads, so this is what bounds a round of large events.
 */
const ROUND_BYTES = 8 * 1024 * 1024
/** Body bytes one lane may hold waiting, and this process in hand (a body shared by endpoints counts for each). */
const MAX_LANE_BYTES = 32 * 1024 * 1024
const MAX_HELD_BYTES = 64 * 1024 * 1024
const RECORD_BATCH = 2000
const RECORD_GATHER = Duration.millis(20)
// Long enough for a full lane behind an endpoint that times out; a restarted process frees its own at once.
const LEASE_MS = 15 * 60_000
const LEASE = `${LEASE_MS} milliseconds`
/** A claimed message whose lease ends within this is not sent: another process may have it by then. */
const LEASE_MARGIN_MS = 60_000
/**
 * A lane takes claims for this many seconds of its own recent pace (at least `maxWaiting`),
 * so a fast endpoint's messages are claimed at fan-out instead of by a later claim statement,
 * while a slow one still takes few.
 */
const LANE_BACKLOG_SECONDS = 30
const PACE_WINDOW_MS = 100
const TARGET_TTL_MS = 1000
const POLL = Duration.millis(500)

/** A message waiting in its endpoint's lane, and where its lane's result goes. */
interface Job {
  readonly message: Message
  readonly settle: (result: LaneResult) => void
  /** When this process's lease on the message ends (ms since epoch); none for a retry's attempt. */
  readonly leaseEnds?: number
}

/**
 * Per endpoint: the messages waiting (a queue with a moving head), how many requests are in
 * flight (at most `endpointConcurrency`) and the rate limit's next free slot. Plain
 * callbacks, no fibers: a lane is the hot path.
 */
interface Lane {
  readonly waiting: Array<Job>
  head: number
  sending: number
  nextSlot: number
  closed: boolean
  /** Attempts finished in the current pace window, which started at `windowStart`. */
  done: number
  windowStart: number
  /** Attempts per second in the last full window. */
  pace: number
  /** Left out of claims (full) when last asked: it asks for more once half empty. */
  full: boolean
  /** Body bytes of the messages waiting. */
  waitingBytes: number
}

const waitingIn = (lane: Lane) => lane.waiting.length - lane.head

const sendHeaders = (target: Target, message: Message, now: number) => {
  const timestamp = Math.floor(now / 1000)
  const keys = target.keys.filter((k) => k.until > now).map((k) => k.key)
  return { ...target.headers, ...signedHeaders(target.scheme, message.id, timestamp, sign(keys, message.id, timestamp, message.body)) }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export const layer = Layer.scoped(
  Deliveries,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cipher = yield* TokenCipher
    const settings = yield* WebhookSettings
    const engine = yield* Effect.context<WorkflowEngine.WorkflowEngine>()
    const runtime = yield* Effect.runtime<never>()
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
    // A lane with this many messages waiting (or LANE_BACKLOG_SECONDS of its pace, if more)
    // takes no more claims (a slow endpoint must not gather messages whose lease could run out
    // in its queue); at half, it asks for more.
    const maxWaiting = settings.endpointConcurrency * 32
    const wakeups = yield* Queue.sliding<void>(1)
    /**
     * Whether unclaimed messages may be waiting here: a fan-out left some, a lane was full, or
     * messages were freed. Room freed in a lane or in hand is worth a claim only then; other
     * processes' messages are found by the dispatcher's poll.
     */
    let unclaimedMayWait = true
    const unclaimedWait = () => {
      unclaimedMayWait = true
      wakeups.unsafeOffer(undefined)
    }

    // ---- endpoints ----------------------------------------------------------------------
    /**
     * Read endpoints, each with its version (`updated_at`): the fan-out and the dispatcher's
     * claims read the version of each message's endpoint and drop a cached one that differs,
     * so a change made in any process reaches every message claimed after it.
     */
    const targets = new Map<string, { readonly target: Option.Option<Target>; readonly loadedAt: number }>()
    /**
     * Endpoints whose failing streak may be open (seen so when read, or failed here): only
     * these need a success written back, so a healthy endpoint's batches skip that statement.
     */
    const mayBeFailing = new Set<string>()
    /** Reads in progress, so a lane's concurrent requests share one read. */
    const reading = new Map<string, Promise<Option.Option<Target>>>()
    const readTarget = (endpointId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql<TargetRow>`
          select id, url, signature_headers, secret, previous_secret, previous_secret_until, headers, rate_limit, disabled, updated_at::text as version,
                 failing_since is not null as failing
          from webhook_endpoints where id = ${endpointId}`
        const row = rows[0]
        if (row?.failing) mayBeFailing.add(endpointId)
        let target = Option.none<Target>()
        if (row) {
          const secret = yield* cipher.decrypt(row.secret)
          const keys = [{ key: keyOf(secret), until: Infinity }]
          if (row.previous_secret && row.previous_secret_until && row.previous_secret_until.getTime() > Date.now()) {
            keys.push({ key: keyOf(yield* cipher.decrypt(row.previous_secret)), until: row.previous_secret_until.getTime() })
          }
          const headers = row.headers ? JSON.parse(Redacted.value(yield* cipher.decrypt(row.headers))) as Record<string, string> : {}
          target = Option.some({
            id: row.id, url: new URL(row.url), scheme: row.signature_headers, keys, headers, rateLimit: row.rate_limit, disabled: row.disabled, version: row.version
          })
        }
        targets.set(endpointId, { target, loadedAt: Date.now() })
        return target
      })
    /** Forgets a cached endpoint whose version differs from the one a claim or fan-out just read: it is read again before its messages are sent. */
    const dropOutdated = (endpointId: string, version: string | null) => {
      const cached = targets.get(endpointId)
      if (cached !== undefined && Option.match(cached.target, { onNone: () => true, onSome: (target) => target.version !== version })) {
        targets.delete(endpointId)
        reading.delete(endpointId)
      }
    }
    /** The endpoint, from the cache while fresh; rejects when it cannot be read. */
    const targetOf = (endpointId: string): Option.Option<Target> | Promise<Option.Option<Target>> => {
      const cached = targets.get(endpointId)
      if (cached && Date.now() - cached.loadedAt < TARGET_TTL_MS) return cached.target
      const inProgress = reading.get(endpointId)
      if (inProgress) return inProgress
      const read: Promise<Option.Option<Target>> = Runtime.runPromise(runtime)(readTarget(endpointId)).finally(() => {
        if (reading.get(endpointId) === read) reading.delete(endpointId)
      })
      reading.set(endpointId, read)
      return read
    }

    // ---- lanes ----------------------------------------------------------------------------
    const lanes = new Map<string, Lane>()
    /** Messages this process has claimed and not yet recorded (at most MAX_IN_FLIGHT are claimed), and their body bytes. */
    let held = 0
    let heldBytes = 0
    /** How many more messages this process may claim now. */
    const roomInHand = () => (heldBytes >= MAX_HELD_BYTES ? 0 : Math.max(0, MAX_IN_FLIGHT - held))

    /** Waits for the endpoint's next slot under its rate limit (messages per second). */
    const paced = (lane: Lane, rateLimit: number | null) => {
      if (rateLimit === null) return undefined
      const now = Date.now()
      const slot = Math.max(now, lane.nextSlot)
      lane.nextSlot = slot + 1000 / rateLimit
      return slot > now ? sleep(slot - now) : undefined
    }

    /** One attempt of `message` through its lane. */
    const attempt = async (lane: Lane, message: Message): Promise<LaneResult> => {
      let found: Option.Option<Target>
      try {
        found = await targetOf(message.endpoint_id)
      } catch (error) {
        return { _tag: "Unreadable", error }
      }
      if (Option.isNone(found) || found.value.disabled) return { _tag: "Unsendable" }
      const target = found.value
      await paced(lane, target.rateLimit)
      const refused = guard.checkScheme(target.url)
      const now = Date.now()
      if (refused) return { _tag: "Attempted", result: { ok: false, attemptedAt: new Date(now), status: null, latencyMs: 0, excerpt: null, error: refused.message } }
      return { _tag: "Attempted", result: await sender.attempt(target.id, target.url, sendHeaders(target, message, now), message.body) }
    }

    /** How many messages the lane may have waiting before it takes no more claims. */
    const roomOf = (lane: Lane, now: number) => {
      // A pace not refreshed for two windows is stale: the lane has been idle or stuck.
      const pace = now - lane.windowStart < 2 * PACE_WINDOW_MS ? lane.pace : 0
      return Math.max(maxWaiting, Math.min(MAX_LANE_WAITING, pace * LANE_BACKLOG_SECONDS))
    }

    const finished = (lane: Lane) => {
      lane.sending--
      lane.done++
      const now = Date.now()
      if (now - lane.windowStart >= PACE_WINDOW_MS) {
        lane.pace = (lane.done * 1000) / (now - lane.windowStart)
        lane.done = 0
        lane.windowStart = now
      }
    }

    /** Starts waiting messages while the lane has room for another request. */
    const pump = (lane: Lane) => {
      while (!lane.closed && lane.sending < settings.endpointConcurrency && lane.head < lane.waiting.length) {
        const job = lane.waiting[lane.head]!
        lane.waiting[lane.head++] = undefined as unknown as Job
        lane.waitingBytes -= job.message.body.length
        if (lane.head > 1024 && lane.head * 2 > lane.waiting.length) {
          lane.waiting.splice(0, lane.head)
          lane.head = 0
        }
        // Claimed more before the lane runs dry, rather than after.
        if (lane.full && waitingIn(lane) * 2 < roomOf(lane, Date.now()) && lane.waitingBytes * 2 < MAX_LANE_BYTES) {
          lane.full = false
          if (unclaimedMayWait) wakeups.unsafeOffer(undefined)
        }
        if (job.leaseEnds !== undefined && Date.now() > job.leaseEnds - LEASE_MARGIN_MS) {
          job.settle({ _tag: "Lapsed" })
          continue
        }
        lane.sending++
        void attempt(lane, job.message).then((result) => {
          finished(lane)
          job.settle(result)
          pump(lane)
        })
      }
    }

    const laneOf = (endpointId: string): Lane => {
      const existing = lanes.get(endpointId)
      if (existing) return existing
      const lane: Lane = { waiting: [], head: 0, sending: 0, nextSlot: 0, closed: false, done: 0, windowStart: Date.now(), pace: 0, full: false, waitingBytes: 0 }
      lanes.set(endpointId, lane)
      return lane
    }

    const enqueue = (endpointId: string, job: Job) => {
      const lane = laneOf(endpointId)
      lane.waiting.push(job)
      lane.waitingBytes += job.message.body.length
      pump(lane)
    }

    /** Closes an endpoint's lane (deleted): its queued messages are settled as unsendable. */
    const closeLane = (endpointId: string) =>
      Effect.sync(() => {
        const lane = lanes.get(endpointId)
        if (!lane) return
        lanes.delete(endpointId)
        lane.closed = true
        const dropped = lane.waiting.slice(lane.head)
        lane.waiting.length = 0
        lane.head = 0
        for (const job of dropped) job.settle({ _tag: "Unsendable" })
      })

    /** Sends one attempt through the endpoint's lane and waits for it (the retry path). */
    const sendNow = (message: Message) =>
      Effect.async<Option.Option<Sender.AttemptResult>>((resume) =>
        enqueue(message.endpoint_id, {
          message,
          settle: (sent) =>
            resume(
              sent._tag === "Attempted" ? Effect.succeed(Option.some(sent.result))
                : sent._tag === "Unreadable" ? Effect.die(sent.error)
                // A retry's attempt has no lease to lapse: only unsendable is left.
                : Effect.succeed(Option.none())
            )
        })
      )

    // ---- recording ------------------------------------------------------------------------
    /**
     * Records attempts in one statement: the message's count and status and, unless it is a
     * first attempt that succeeded (kept in the message row: the common case writes one row),
     * the attempt log. A failed first (or manual) attempt leaves the message leased: its retry
     * workflow starts next.
     */
    const record = (outcomes: ReadonlyArray<Outcome>) =>
      Effect.gen(function* () {
        if (outcomes.length === 0) return
        const col = <A>(f: (o: Outcome) => A) => outcomes.map(f)
        // Columns without commas travel as one comma-separated text each ('n' for null): as
        // array elements each would be quoted and escaped, and each time formatted as a date.
        const list = (f: (o: Outcome) => string | number | boolean | null) => outcomes.map((o) => f(o) ?? "n").join(",")
        const ids = list((o) => o.message.id)
        yield* sql`
          with r as (
            select r.id, r.trigger, to_timestamp(r.at_ms / 1000.0) as at, r.ok, r.status, r.latency, r.excerpt, r.error from unnest(
              string_to_array(${ids}, ','), string_to_array(${list((o) => o.trigger)}, ','), string_to_array(${list((o) => o.result.attemptedAt.getTime())}, ',')::float8[],
              string_to_array(${list((o) => o.result.ok)}, ',')::bool[], string_to_array(${list((o) => o.result.status)}, ',', 'n')::int[],
              string_to_array(${list((o) => o.result.latencyMs)}, ',')::int[],
              ${col((o) => o.result.excerpt)}::text[], ${col((o) => o.result.error)}::text[]
            ) as r(id, trigger, at_ms, ok, status, latency, excerpt, error)
          ), counted as (
            update webhook_messages m set
              attempts = m.attempts + 1,
              status = case when r.ok then 'delivered' else m.status end,
              delivered_at = case when r.ok then r.at else m.delivered_at end,
              lease_until = case when r.ok then '-infinity' else m.lease_until end,
              -- A failed attempt leaves the message 'sending' (leased) until its retry workflow has it.
              last_error = r.error,
              first_attempted_at = case when r.ok and m.attempts = 0 then r.at else m.first_attempted_at end,
              first_response_status = case when r.ok and m.attempts = 0 then r.status else m.first_response_status end,
              first_latency_ms = case when r.ok and m.attempts = 0 then r.latency else m.first_latency_ms end,
              first_response_excerpt = case when r.ok and m.attempts = 0 then r.excerpt else m.first_response_excerpt end,
              updated_at = now()
            -- The ids again as an array: the planner looks them up in the primary key instead of
            -- hashing a scan of the whole table (it cannot count an unnest's rows).
            from r where m.id = r.id and m.id = any(string_to_array(${ids}, ','))
            returning m.id, m.attempts, m.first_attempted_at is not null and m.attempts = 1 as in_row
          )
          insert into webhook_attempt_log (message_id, attempt, trigger, attempted_at, status, response_status, latency_ms, response_excerpt, error)
          select r.id, c.attempts, r.trigger, r.at, case when r.ok then 'success' else 'failure' end, r.status, r.latency, r.excerpt, r.error
          from r join counted c on c.id = r.id
          -- Committed without waiting for the WAL flush: an outcome lost with the server leaves its
          -- message leased, so it is sent again (at least once), as when the process dies.
          where not c.in_row and (select set_config('synchronous_commit', 'off', true)) = 'off'
          on conflict do nothing`
        const delivered = outcomes.filter((o) => o.result.ok).length
        if (delivered > 0) yield* Metric.incrementBy(messagesDelivered, delivered)
        // A failed message delivered by hand (resend, recover) clears its exhaustion alert.
        const resent = outcomes.filter((o) => o.result.ok && o.trigger === "manual").map((o) => o.message.id)
        if (resent.length > 0) {
          yield* clearAlerts(sql, sql`select id from alerts where kind = 'message.attempt.exhausted' and status = 'open' and subject = any(${resent}::text[])`)
        }
        yield* Metric.incrementBy(attemptsSucceeded, delivered)
        yield* Metric.incrementBy(attemptsFailed, outcomes.length - delivered)
        yield* endpointHealth(outcomes)
      })

    /** Success clears an endpoint's failing streak; a streak older than `disableAfter` disables it. */
    const endpointHealth = (outcomes: ReadonlyArray<Outcome>) =>
      Effect.gen(function* () {
        const healthy = [...new Set(outcomes.filter((o) => o.result.ok).map((o) => o.message.endpoint_id))]
        const failing = [...new Set(outcomes.filter((o) => !o.result.ok).map((o) => o.message.endpoint_id))].filter((id) => !healthy.includes(id))
        const recovered = healthy.filter((id) => mayBeFailing.has(id))
        if (recovered.length > 0) {
          yield* sql`update webhook_endpoints set failing_since = null where id = any(${recovered}::uuid[]) and failing_since is not null`
          for (const id of recovered) mayBeFailing.delete(id)
        }
        if (failing.length === 0) return
        for (const id of failing) mayBeFailing.add(id)
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
          // The operator hears of it too (an alert and the operator webhook); re-enabling clears it.
          yield* raiseAlert(sql, {
            kind: "endpoint.disabled",
            subject: endpoint.id,
            teamId: endpoint.team_id,
            endpointId: endpoint.id,
            detail: `failing continuously since ${endpoint.failing_since.toISOString()}`,
            since: endpoint.failing_since
          })
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

    /**
     * Outcomes split into runs in which no message comes twice, in their order: a message sent
     * again after its fan-out's round rolled back can have two outcomes in one batch, and an
     * update joins each row to one of its outcomes only (the other send would go unrecorded).
     */
    const withoutRepeats = (outcomes: ReadonlyArray<Outcome>) => {
      const runs: Array<Array<Outcome>> = []
      const seen = new Map<string, number>()
      for (const outcome of outcomes) {
        const run = seen.get(outcome.message.id) ?? 0
        seen.set(outcome.message.id, run + 1)
        ;(runs[run] ??= []).push(outcome)
      }
      return runs
    }

    /** Outcomes of dispatched messages, waiting for the recorder; `recorderWake` says there are some. */
    const toRecord: Array<Recordable> = []
    const recorderWake = yield* Queue.sliding<void>(1)

    /** Records one batch of outcomes and hands failed messages to their retries. */
    const recordBatch = (batch: ReadonlyArray<Recordable>) =>
      Effect.gen(function* () {
        const attempted: Array<Outcome> = []
        const unsendable: Array<string> = []
        for (const item of batch) "unsendable" in item ? unsendable.push(item.unsendable.id) : attempted.push(item)
        const failed = attempted.filter((o) => !o.result.ok).map((o) => o.message)
        const runs = withoutRepeats(attempted)
        // Successes of healthy endpoints are one statement, atomic alone: no transaction's round trips.
        const oneStatement = runs.length <= 1 && unsendable.length === 0 && failed.length === 0 && !attempted.some((o) => mayBeFailing.has(o.message.endpoint_id))
        const recording = Effect.zipRight(Effect.forEach(runs, record, { discard: true }), settleUnsendable(unsendable))
        yield* oneStatement ? recording : sql.withTransaction(recording)
        if (failed.length > 0) yield* startRetries(failed)
      })

    // A batch that cannot be recorded stays leased: its messages are sent again once freed.
    const recorder = Queue.take(recorderWake).pipe(
      // Outcomes come one by one as answers arrive: a short wait gathers them into fewer statements.
      Effect.zipRight(Effect.suspend(() => (toRecord.length < RECORD_BATCH / 2 ? Effect.sleep(RECORD_GATHER) : Effect.void))),
      Effect.zipRight(Effect.suspend(() => {
        const batch = toRecord.splice(0, RECORD_BATCH)
        if (toRecord.length > 0) recorderWake.unsafeOffer(undefined)
        return recordBatch(batch).pipe(
          retryWhileTransient(Duration.minutes(5)),
          Effect.catchAllCause((cause) => Effect.logError("could not record webhook attempts", cause)),
          Effect.ensuring(Effect.sync(() => {
            // Their room is free: claim more now rather than at the next poll.
            held -= batch.length
            for (const item of batch) heldBytes -= ("unsendable" in item ? item.unsendable : item.message).body.length
            if (unclaimedMayWait) wakeups.unsafeOffer(undefined)
          }))
        )
      })),
      Effect.forever
    )

    // ---- dispatching ----------------------------------------------------------------------

    /**
     * Queues a message claimed until `leaseEnds` in its lane; its outcome goes to the recorder,
     * once the fan-out `round` that wrote it (if any) has ended.
     */
    const dispatch = (message: Message, leaseEnds: number, round?: FanOutRound) => {
      held++
      heldBytes += message.body.length
      enqueue(message.endpoint_id, {
        message,
        leaseEnds,
        settle: (sent) => {
          if (sent._tag === "Unreadable" || sent._tag === "Lapsed") {
            // Left leased: sent again once its lease is freed.
            held--
            heldBytes -= message.body.length
            if (sent._tag === "Unreadable") {
              Runtime.runFork(runtime)(Effect.logError("could not read a webhook endpoint; the message waits for its lease to end", sent.error))
            }
            return
          }
          const outcome: Recordable = sent._tag === "Attempted" ? { message, trigger: message.attempts === 0 ? "first" : "manual", result: sent.result } : { unsendable: message }
          if (round !== undefined && !round.ended) return void round.outcomes.push(outcome)
          toRecord.push(outcome)
          recorderWake.unsafeOffer(undefined)
        }
      })
    }

    const busyLanes = () => {
      const now = Date.now()
      const busy: Array<string> = []
      for (const [id, lane] of lanes) {
        lane.full = waitingIn(lane) >= roomOf(lane, now) || lane.waitingBytes >= MAX_LANE_BYTES
        if (lane.full) busy.push(id)
      }
      return busy
    }

    const claim = (limit: number, busy: ReadonlyArray<string>) =>
      sql<Message & { readonly version: string | null }>`
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
        select c.id, c.endpoint_id, c.team_id, c.attempts, c.run, c.status, coalesce(c.payload, o.payload)::text as body,
               w.updated_at::text as version
        from claimed c left join outbox o on o.event_id = c.event_id left join webhook_endpoints w on w.id = c.endpoint_id
        order by c.seq`

    const dispatcher = Effect.gen(function* () {
      const room = Math.min(CLAIM_BATCH, roomInHand())
      const leaseEnds = Date.now() + LEASE_MS
      let claimed: ReadonlyArray<Message & { readonly version: string | null }> = []
      if (room > 0) {
        const busy = busyLanes()
        // Cleared before the claim's snapshot: whatever is left unclaimed after it sets it again.
        unclaimedMayWait = false
        claimed = yield* claim(room, busy).pipe(Effect.tapErrorCause(() => Effect.sync(() => (unclaimedMayWait = true))))
        for (const message of claimed) dropOutdated(message.endpoint_id, message.version)
        if (claimed.length === room || busy.length > 0) unclaimedMayWait = true
      }
      for (const message of claimed) dispatch(message, leaseEnds)
      if (claimed.length < room || room <= 0) yield* Queue.take(wakeups).pipe(Effect.timeout(POLL), Effect.ignore)
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError("webhook dispatcher failed; retrying", cause).pipe(Effect.zipRight(Effect.sleep("1 second")))),
      Effect.forever
    )

    // ---- fan-out --------------------------------------------------------------------------
    /** Fan-outs whose round's transaction has not ended yet (`roundsEnded`). */
    let openFanOuts: Array<FanOutRound> = []

    const fanOut = (batch: ReadonlyArray<OutboxEntry>) =>
      Effect.gen(function* () {
        // Claimed at once unless the endpoint is FIFO (the dispatcher keeps each user's order),
        // its lane is full, or the process has as many messages in hand as it may hold.
        const room = roomInHand()
        // The lease runs from the transaction's start (now()), which is before this.
        const leaseEnds = Date.now() + LEASE_MS - LEASE_MARGIN_MS
        const teams = [...new Set(batch.map((e) => e.teamId))]
        // Uuids travel as one comma-separated text each: as array elements each would be quoted and escaped.
        const events = batch.map((e) => e.eventId).join(",")
        // The endpoints are read `for key share`: none is deleted before this commits (messages
        // have no foreign key to them; an endpoint's deletion takes its messages, migrations.ts).
        // The same statement reads the bodies of the events whose messages were claimed, once per
        // event however many endpoints, in outbox order up to ROUND_BYTES (the first whatever its
        // size), and the endpoints' versions: the fan-out is one round trip.
        const rows = yield* sql<{
          id: string | null; endpoint_id: string | null; team_id: string; event_id: string | null; status: string; version: string | null; body: string | null
        }>`
          with endpoints as (
            select id, team_id, fifo, filter_types, updated_at from webhook_endpoints
            where team_id = any(${teams}::uuid[]) and not disabled
            for key share
          ), inserted as (
            insert into webhook_messages (id, endpoint_id, team_id, event_id, event_type, user_id, fifo, status, lease_until, leased_by)
            select f.id, f.endpoint_id, f.team_id, f.event_id, f.event_type, f.user_id, f.fifo,
                   case when f.claimed then 'sending' else 'pending' end,
                   case when f.claimed then now() + ${LEASE}::interval else '-infinity' end,
                   case when f.claimed then ${instance} end
            from (
              select 'msg_' || md5(w.id::text || ':' || e.event_id::text) as id, w.id as endpoint_id, w.team_id, e.event_id, e.event_type, e.user_id, w.fifo, e.ord,
                     not w.fifo and not (w.id = any(${busyLanes()}::uuid[])) and row_number() over (order by e.ord, w.id) <= ${room} as claimed
              from unnest(string_to_array(${events}, ',')::uuid[], ${batch.map((e) => e.eventType)}::text[],
                          string_to_array(${batch.map((e) => e.teamId).join(",")}, ',')::uuid[],
                          string_to_array(${batch.map((e) => e.userId).join(",")}, ',')::uuid[])
                   with ordinality as e(event_id, event_type, team_id, user_id, ord)
              join endpoints w on w.team_id = e.team_id
                and (cardinality(w.filter_types) = 0 or exists (
                  select 1 from unnest(w.filter_types) f
                  where f = e.event_type or (right(f, 1) = '*' and starts_with(e.event_type, left(f, -1)))))
            ) f
            order by f.ord, f.endpoint_id
            on conflict (id) do nothing
            returning id, endpoint_id, team_id, event_id, status, seq
          ), bodies as (
            select b.event_id, b.payload::text as body from (
              select o.event_id, o.payload, sum(pg_column_size(o.payload)) over (order by k.ord) - pg_column_size(o.payload) as before
              from unnest(string_to_array(${events}, ',')::uuid[]) with ordinality as k(event_id, ord) join outbox o on o.event_id = k.event_id
              where k.event_id in (select event_id from inserted where status = 'sending')
            ) b
            where before < ${ROUND_BYTES}
          )
          -- Three kinds of rows, none joined to another (a join of thousands of messages to their
          -- bodies was planned as a nested loop): messages, bodies, the endpoints' versions.
          -- The round commits without waiting for its WAL flush (a stall of the disk no longer
          -- holds the next round): its messages are sent before it commits anyway, so a commit
          -- lost with the server only means the events are fanned out and sent again; any later
          -- synchronous commit flushes it.
          select i.id, i.endpoint_id, i.team_id, i.event_id, i.status, null::text as body, null::text as version, i.seq
          from inserted i
          where (select set_config('synchronous_commit', 'off', true)) = 'off'
          union all
          select null, null, null, b.event_id, null, b.body, null, null from bodies b
          union all
          select null, w.id, null, null, null, null, w.updated_at::text, null from endpoints w
          order by seq nulls first`
        const bodies = new Map<string, string>()
        const inserted: Array<{ id: string; endpoint_id: string; team_id: string; event_id: string; status: string }> = []
        for (const row of rows) {
          if (row.id !== null) inserted.push(row as typeof inserted[number])
          else if (row.body !== null) bodies.set(row.event_id!, row.body)
          // An endpoint changed since it was cached (in any process) is read again before these are sent.
          else dropOutdated(row.endpoint_id!, row.version)
        }
        if (inserted.length === 0) return
        const messages: Array<Message> = []
        const unread: Array<string> = []
        let waiting = false
        for (const row of inserted) {
          if (row.status !== "sending") waiting = true
          else {
            const body = bodies.get(row.event_id)
            if (body === undefined) unread.push(row.id)
            else messages.push({ id: row.id, endpoint_id: row.endpoint_id, team_id: row.team_id, attempts: 0, run: 0, status: "sending", body })
          }
        }
        if (unread.length > 0) {
          // Past the round's bytes: left unclaimed, for the dispatcher's claims.
          yield* sql`update webhook_messages set status = 'pending', lease_until = '-infinity', leased_by = null where id = any(${unread}::text[])`
          waiting = true
        }
        if (waiting) unclaimedWait()
        // Sent now, before the round commits (its commit is a round trip, on a busy process
        // often more): a message is already at-least-once. If the round rolls back, the events
        // are fanned out again, and the same messages (same ids) sent again.
        const round: FanOutRound = { ended: false, outcomes: [] }
        openFanOuts.push(round)
        for (const message of messages) dispatch(message, leaseEnds, round)
      })

    /**
     * The runner's round ended (after its commit): the outcomes its fan-outs' messages had are
     * recorded now and later ones at once. Those of an earlier round that rolled back too: its
     * rows are gone (an update finds none), or, if its commit only looked lost, are there to record.
     */
    const roundsEnded = Effect.sync(() => {
      if (openFanOuts.length === 0) return
      for (const round of openFanOuts) {
        round.ended = true
        for (const outcome of round.outcomes) toRecord.push(outcome)
        round.outcomes.length = 0
      }
      openFanOuts = []
      if (toRecord.length > 0) recorderWake.unsafeOffer(undefined)
    })

    // A restarted process frees the messages it held when it stopped; others' after their lease.
    yield* sql`update webhook_messages set status = 'pending', lease_until = '-infinity', leased_by = null where leased_by = ${instance} and status = 'sending'`
    const expiredLeases = sql`update webhook_messages set status = 'pending', lease_until = '-infinity', leased_by = null
                              where status = 'sending' and lease_until < now()`
    yield* forkWhenWorking(
      expiredLeases.pipe(
        Effect.tap((freed) => (freed.length > 0 ? Effect.logWarning("freed webhook messages whose process stopped holding them").pipe(Effect.annotateLogs("messages", freed.length)) : Effect.void)),
        Effect.catchAllCause((cause) => Effect.logError("could not free expired webhook leases", cause)),
        Effect.repeat(Schedule.spaced("1 minute")),
        Effect.delay("1 minute")
      )
    )
    yield* forkWhenWorking(recorder)
    yield* forkWhenWorking(dispatcher)
    // Lanes are plain callbacks: on shutdown they stop taking messages (the pools close with the sender).
    yield* Effect.addFinalizer(() => Effect.sync(() => lanes.forEach((lane) => (lane.closed = true))))

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
        // The operator hears of it too; delivering the message later (resend, recover) clears it.
        yield* raiseAlert(sql, {
          kind: "message.attempt.exhausted",
          subject: messageId,
          teamId: message.team_id,
          endpointId: message.endpoint_id,
          messageId,
          detail: `${message.attempts} attempts failed`
        })
        yield* Metric.increment(messagesFailed)
        yield* Effect.logWarning("webhook message failed after its last retry").pipe(
          Effect.annotateLogs({ message_id: messageId, endpoint_id: message.endpoint_id, attempts: message.attempts })
        )
      }).pipe(sql.withTransaction)

    return {
      fanOut,
      roundsEnded,
      wake: Effect.sync(unclaimedWait),
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
