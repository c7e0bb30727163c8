/**
 * The operator webhook: sends alert events (`alert.opened`, `alert.cleared`) from
 * `operator_notices` to the operator's URL, signed Standard Webhooks style. A notice stays
 * until the endpoint answers 2xx: failures back off exponentially (doubling from `backoff`,
 * at most an hour apart) and are tried for ever, so an endpoint that is down loses nothing.
 * An alert's events go in order: one waits while an earlier one of its alert is undelivered.
 *
 * Every process sends; a notice is claimed with a lease (`for update skip locked`), so two
 * processes never send it at once. The `webhook-id` / `svix-id` is the notice's event id,
 * the same on every retry: receivers dedupe on it.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Metric, type Redacted, Schedule } from "effect"
import { retryWhileTransient } from "./storage/errors.ts"
import { signedRequestHeaders } from "./webhook-signature.ts"

export interface OperatorWebhookOptions {
  readonly url: URL
  readonly secret: Redacted.Redacted<string>
  /** The first pause after a failed attempt; it doubles per attempt, up to an hour. */
  readonly backoff: Duration.DurationInput
  /** How long one attempt may take. */
  readonly timeout: Duration.DurationInput
  /** How often to look for notices due (default 1 s). */
  readonly poll?: Duration.DurationInput
}

export const noticesSent = Metric.counter("wearflow_operator_notices_sent_total")
export const noticeFailures = Metric.counter("wearflow_operator_notice_failures_total")

const BATCH = 20
const MAX_BACKOFF_SECONDS = 3600

export const make = Effect.fnUntraced(function* (options: OperatorWebhookOptions) {
  const sql = yield* SqlClient.SqlClient
  const client = yield* HttpClient.HttpClient
  const timeout = Duration.decode(options.timeout)
  const backoffSeconds = Duration.toSeconds(Duration.decode(options.backoff))
  // A claimed notice is left alone this long: past it, a crashed sender's claim lapses.
  const leaseSeconds = Duration.toSeconds(timeout) * 2 + 5

  const claim = sql<{ id: string; event_id: string; attempts: number; body: string }>`
    update operator_notices n set next_attempt_at = now() + make_interval(secs => ${leaseSeconds})
    where n.id in (
      select w.id from operator_notices w
      where w.delivered_at is null and w.next_attempt_at <= now()
        and not exists (select 1 from operator_notices p where p.alert_id = w.alert_id and p.id < w.id and p.delivered_at is null)
      order by w.id
      limit ${BATCH}
      for update skip locked)
    returning n.id::text as id, n.event_id, n.attempts, n.payload::text as body`

  /** One attempt: undefined when the endpoint took it, else what went wrong (no body: it is the operator's). */
  const attempt = (eventId: string, body: string) =>
    HttpClientRequest.post(options.url).pipe(
      HttpClientRequest.bodyText(body, "application/json"),
      HttpClientRequest.setHeaders(signedRequestHeaders(options.secret, eventId, Math.floor(Date.now() / 1000), body)),
      client.execute,
      Effect.map((response) => (response.status >= 200 && response.status < 300 ? undefined : `status ${response.status}`)),
      Effect.scoped,
      Effect.timeoutFail({ duration: timeout, onTimeout: () => "timed out" as const }),
      Effect.catchAll((error) => Effect.succeed(typeof error === "string" ? error : `request failed: ${error._tag}`))
    )

  const delivered = (id: string) => sql`update operator_notices set delivered_at = now(), attempts = attempts + 1, last_error = null where id = ${id}`

  const failed = (id: string, attempts: number, error: string) => {
    const pause = Math.min(backoffSeconds * 2 ** attempts, MAX_BACKOFF_SECONDS)
    return sql`update operator_notices set attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => ${pause}), last_error = ${error}
               where id = ${id}`
  }

  /** Sends the notices due now, one claim at a time; answers how many were claimed. */
  const sendDue = Effect.gen(function* () {
    const claimed = [...(yield* claim)].sort((a, b) => Number(a.id) - Number(b.id))
    for (const notice of claimed) {
      const error = yield* attempt(notice.event_id, notice.body)
      if (error === undefined) {
        yield* delivered(notice.id)
        yield* Metric.increment(noticesSent)
      } else {
        yield* failed(notice.id, notice.attempts, error)
        yield* Metric.increment(noticeFailures)
        yield* Effect.logWarning("operator webhook attempt failed; retrying later").pipe(
          Effect.annotateLogs({ event_id: notice.event_id, attempts: notice.attempts + 1, error })
        )
      }
    }
    return claimed.length
  }).pipe(retryWhileTransient("1 minute"))

  return { sendDue } as const
})

/** Sends due notices for the lifetime of the layer: straight on while a claim comes back full. */
export const layer = (options: OperatorWebhookOptions) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const { sendDue } = yield* make(options)
      const poll = options.poll ?? Duration.seconds(1)
      const drain: Effect.Effect<void, unknown> = Effect.flatMap(sendDue, (n) => (n >= BATCH ? drain : Effect.void))
      yield* drain.pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("operator webhook round failed; trying again later", cause)),
        Effect.repeat(Schedule.spaced(poll)),
        Effect.annotateLogs("module", "OperatorWebhook"),
        Effect.forkScoped
      )
    })
  )
