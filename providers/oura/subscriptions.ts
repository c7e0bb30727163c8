/**
 * Oura's webhook subscriptions are per application (they cover every user), one per
 * (event_type, data_type), and they expire. At start, and then every
 * OURA_WEBHOOK_CHECK_INTERVAL (daily), a daemon lists them, creates the missing ones for the
 * configured data types (create, update and delete events) with our callback URL and
 * verification token, renews those expiring within 7 days (recreating one Oura no longer
 * knows), and deletes ours for data types no longer configured. Subscriptions for other
 * callback URLs are left alone: they may be another deployment's sharing the application.
 *
 * Oura verifies the callback during the creation request (a GET our route answers), so the
 * server must already be listening: a failed round is retried with back-off (from half a
 * second, up to five minutes apart) until every subscription exists. The daemon is forked, so
 * a slow Oura never delays start.
 *
 * Several server processes: each round runs under a Postgres advisory lock, so one process
 * creates at a time and the next one finds the subscriptions listed. A 409 ("exists") is not a
 * failure either: the pair is taken by a subscription with another callback URL, which is
 * logged and left alone.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { SqlClient } from "@effect/sql"
import { Data, Duration, Effect, Layer, Metric, Option, Redacted, Schedule, Schema } from "effect"
import { apiUrlOf, clientOf, EVENT_TYPES, type EventType, OuraConfig } from "./config.ts"
import { forkWhenWorking } from "@wearflow/core/plugin"

/** Renewed when it expires sooner than this. */
export const RENEW_WITHIN = Duration.days(7)

const Subscription = Schema.Struct({
  id: Schema.String,
  callback_url: Schema.String,
  event_type: Schema.String,
  data_type: Schema.String,
  expiration_time: Schema.String
})
type Subscription = typeof Subscription.Type

/** A subscription call failed; every failure is retried at the next attempt of the round. */
export class SubscriptionError extends Data.TaggedError("SubscriptionError")<{ readonly message: string; readonly status?: number | undefined }> {
  readonly retryable = true
}

const live = Metric.gauge("wearflow_oura_webhook_subscriptions", { description: "Oura webhook subscriptions to this server's callback URL, as last checked" })
const wanted = Metric.gauge("wearflow_oura_webhook_subscriptions_wanted", { description: "Oura webhook subscriptions the configuration asks for" })
const rounds = Metric.counter("wearflow_oura_webhook_subscription_checks_total", { description: "completed subscription checks" })

/** What a round did. */
export interface Reconciled {
  readonly created: number
  readonly renewed: number
  /** Ours for data types no longer configured. */
  readonly removed: number
  /** Pairs taken by a subscription for another callback URL (409). */
  readonly takenElsewhere: number
  readonly live: number
}

interface Settings {
  readonly api: URL
  readonly clientId: Redacted.Redacted<string>
  readonly clientSecret: Redacted.Redacted<string>
  readonly verificationToken: Redacted.Redacted<string>
  readonly callbackUrl: string
  readonly dataTypes: ReadonlyArray<string>
}

const expiresWithin = (subscription: Subscription, within: Duration.Duration, now: number) => {
  const expires = Date.parse(subscription.expiration_time)
  return Number.isNaN(expires) || expires - now < Duration.toMillis(within)
}

export const makeSubscriptions = (client: HttpClient.HttpClient, settings: Settings) => {
  const url = (path: string) => apiUrlOf(settings.api, path)
  const call = (request: HttpClientRequest.HttpClientRequest) =>
    client.execute(
      request.pipe(
        HttpClientRequest.setHeader("x-client-id", Redacted.value(settings.clientId)),
        HttpClientRequest.setHeader("x-client-secret", Redacted.value(settings.clientSecret))
      )
    ).pipe(
      Effect.timeoutFail({ duration: Duration.seconds(30), onTimeout: () => new SubscriptionError({ message: "Oura did not answer in time" }) }),
      Effect.catchTags({
        RequestError: (error) => Effect.fail(new SubscriptionError({ message: `could not reach Oura (${error.reason})` })),
        ResponseError: (error) => Effect.fail(new SubscriptionError({ message: `Oura's answer could not be read (${error.reason})` }))
      })
    )
  const refused = (what: string, response: HttpClientResponse.HttpClientResponse) =>
    new SubscriptionError({
      message: response.status === 401 ? `Oura refused the client credentials while ${what} (401)` : `Oura answered ${response.status} while ${what}`,
      status: response.status
    })
  const decoded = <A, I>(schema: Schema.Schema<A, I>, what: string) => (response: HttpClientResponse.HttpClientResponse) =>
    Effect.flatMap(response.json, Schema.decodeUnknown(schema)).pipe(
      Effect.mapError(() => new SubscriptionError({ message: `Oura's answer ${what} is not what its API documents` }))
    )

  const list = call(HttpClientRequest.get(url("/v2/webhook/subscription"))).pipe(
    Effect.flatMap((response) => (response.status === 200 ? decoded(Schema.Array(Subscription), "listing subscriptions")(response) : Effect.fail(refused("listing subscriptions", response)))),
    Effect.scoped
  )

  /** Creates the subscription; "taken" when Oura says one exists for the pair (409). */
  const create = (eventType: EventType, dataType: string) =>
    call(
      HttpClientRequest.post(url("/v2/webhook/subscription")).pipe(
        HttpClientRequest.bodyUnsafeJson({
          callback_url: settings.callbackUrl,
          verification_token: Redacted.value(settings.verificationToken),
          event_type: eventType,
          data_type: dataType
        })
      )
    ).pipe(
      Effect.flatMap((response): Effect.Effect<"created" | "taken", SubscriptionError> =>
        response.status === 200 || response.status === 201
          ? Effect.succeed("created")
          : response.status === 409
          ? Effect.succeed("taken")
          : Effect.fail(refused(`creating the ${eventType} ${dataType} subscription (Oura verifies our callback URL first)`, response))
      ),
      Effect.scoped
    )

  /** Renews the subscription; "unknown" when Oura no longer knows it (403 per its spec, 404 seen). */
  const renew = (subscription: Subscription) =>
    call(HttpClientRequest.put(url(`/v2/webhook/subscription/renew/${encodeURIComponent(subscription.id)}`))).pipe(
      Effect.flatMap((response): Effect.Effect<"renewed" | "unknown", SubscriptionError> =>
        response.status === 200
          ? Effect.succeed("renewed")
          : response.status === 403 || response.status === 404
          ? Effect.succeed("unknown")
          : Effect.fail(refused(`renewing the ${subscription.event_type} ${subscription.data_type} subscription`, response))
      ),
      Effect.scoped
    )

  /** Deletes a subscription no longer wanted; one Oura no longer knows is gone already. */
  const remove = (subscription: Subscription) =>
    call(HttpClientRequest.del(url(`/v2/webhook/subscription/${encodeURIComponent(subscription.id)}`))).pipe(
      Effect.flatMap((response) =>
        response.status === 200 || response.status === 204 || response.status === 403 || response.status === 404
          ? Effect.void
          : Effect.fail(refused(`deleting the ${subscription.event_type} ${subscription.data_type} subscription`, response))
      ),
      Effect.scoped
    )

  /** One round: every wanted pair ends subscribed (or taken elsewhere), or the round fails at the first failure. */
  const reconcile = Effect.gen(function* () {
    const now = Date.now()
    const ours = (yield* list).filter((subscription) => subscription.callback_url === settings.callbackUrl)
    let created = 0
    let renewed = 0
    let takenElsewhere = 0
    for (const dataType of settings.dataTypes) {
      for (const eventType of EVENT_TYPES) {
        const existing = ours.find((subscription) => subscription.event_type === eventType && subscription.data_type === dataType)
        if (existing !== undefined && !expiresWithin(existing, RENEW_WITHIN, now)) continue
        if (existing !== undefined && (yield* renew(existing)) === "renewed") {
          renewed++
          continue
        }
        if ((yield* create(eventType, dataType)) === "created") {
          created++
          continue
        }
        takenElsewhere++
        yield* Effect.logWarning("an Oura subscription for another callback URL takes this event and data type; left alone").pipe(
          Effect.annotateLogs({ event_type: eventType, data_type: dataType })
        )
      }
    }
    const isWanted = (subscription: Subscription) =>
      settings.dataTypes.includes(subscription.data_type) && (EVENT_TYPES as ReadonlyArray<string>).includes(subscription.event_type)
    let removed = 0
    for (const subscription of ours.filter((subscription) => !isWanted(subscription))) {
      yield* remove(subscription)
      removed++
    }
    const after = (yield* list).filter((subscription) => subscription.callback_url === settings.callbackUrl)
    yield* Metric.set(live, after.length)
    return { created, renewed, removed, takenElsewhere, live: after.length } satisfies Reconciled
  })

  return { list, reconcile } as const
}

/** The lock that lets one process at a time change the application's subscriptions. */
const LOCK = "wearflow:oura:webhook-subscriptions"

/** Checks and repairs the subscriptions now, then every `checkInterval`, in a daemon of the plugin's layer. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const config = yield* OuraConfig
    const client = yield* HttpClient.HttpClient
    const sql = yield* SqlClient.SqlClient
    const oauthClient = clientOf(config)
    const missing = [
      Option.isNone(config.clientId) ? "OURA_CLIENT_ID" : undefined,
      Option.isNone(config.clientSecret) ? "OURA_CLIENT_SECRET" : undefined,
      Option.isNone(config.webhook.verificationToken) ? "OURA_WEBHOOK_VERIFICATION_TOKEN" : undefined,
      Option.isNone(config.webhook.callbackUrl) ? "OURA_WEBHOOK_CALLBACK_URL (or WEARFLOW_PUBLIC_URL)" : undefined
    ].filter((name) => name !== undefined)
    if (Option.isNone(oauthClient) || Option.isNone(config.webhook.verificationToken) || Option.isNone(config.webhook.callbackUrl)) {
      yield* Effect.logWarning(`Oura webhook subscriptions are not managed: ${missing.join(", ")} not set`)
      return
    }
    const subscriptions = makeSubscriptions(client, {
      api: config.apiUrl,
      clientId: oauthClient.value.id,
      clientSecret: oauthClient.value.secret,
      verificationToken: config.webhook.verificationToken.value,
      callbackUrl: config.webhook.callbackUrl.value,
      dataTypes: config.webhook.dataTypes
    })
    yield* Metric.set(wanted, config.webhook.dataTypes.length * EVENT_TYPES.length)
    const round = sql`select pg_advisory_xact_lock(hashtextextended(${LOCK}, 0))`.pipe(
      Effect.zipRight(subscriptions.reconcile),
      sql.withTransaction,
      Effect.tapError((error) => Effect.logWarning("Oura webhook subscriptions incomplete; retrying").pipe(Effect.annotateLogs("error", error.message))),
      Effect.retry(Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("5 minutes")))),
      Effect.tap((done) => Effect.logInfo("Oura webhook subscriptions checked").pipe(Effect.annotateLogs({ ...done }))),
      Effect.zipRight(Metric.increment(rounds))
    )
    yield* round.pipe(
      Effect.repeat(Schedule.spaced(config.webhook.checkInterval)),
      Effect.catchAllCause((cause) => Effect.logError("Oura webhook subscription daemon stopped", cause)),
      Effect.annotateLogs("plugin", "oura"),
      forkWhenWorking
    )
  })
)
