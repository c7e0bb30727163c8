/**
 * The Oura webhook handlers. The verification GET answers Oura's challenge only for our
 * verification token. A notification is verified (signature over the raw bytes), checked
 * for shape, committed to the inbox as received and answered; the document it names is
 * fetched later by the ingest worker. Unknown data types are stored and ignored, never
 * refused: a refusal would only make Oura retry.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { constantTimeEquals } from "@wearflow/core/crypto"
import { ApiId, InvalidRequest, ServiceUnavailable, Unauthorized } from "@wearflow/core/http"
import { Inbox } from "@wearflow/core/pipeline/inbox"
import { Effect, Either, Metric, Option, Redacted } from "effect"
import { OuraApi } from "./Api.ts"
import { OuraConfig } from "./config.ts"
import { decodeNotification, isKnownDataType, MAX_NOTIFICATION_BYTES, NOTIFICATION_KIND, signatureMatches } from "./notifications.ts"

const rejected = Metric.counter("wearflow_notifications_rejected_total").pipe(Metric.tagged("provider", "oura"))

/** The Oura group built against Wearflow's API id, so the app can mount it in its HttpApi. */
const OuraHttpApi = HttpApi.make(ApiId).add(OuraApi)

const header = (request: HttpServerRequest.HttpServerRequest, name: string) => {
  const value = request.headers[name]
  return typeof value === "string" && value.length > 0 ? value : undefined
}

export const layer = HttpApiBuilder.group(OuraHttpApi, "oura", (handlers) =>
  Effect.gen(function* () {
    const config = yield* OuraConfig
    const inbox = yield* Inbox
    if (Option.isNone(config.clientSecret)) {
      yield* Effect.logWarning("OURA_CLIENT_SECRET is not set: every Oura notification will be refused with 401")
    }
    if (Option.isNone(config.webhook.verificationToken)) {
      yield* Effect.logWarning("OURA_WEBHOOK_VERIFICATION_TOKEN is not set: Oura's subscription checks will be refused with 401")
    }

    const verify = ({ urlParams }: { readonly urlParams: { readonly verification_token?: string | undefined; readonly challenge?: string | undefined } }) =>
      Effect.gen(function* () {
        const token = config.webhook.verificationToken
        if (Option.isNone(token) || urlParams.verification_token === undefined || !constantTimeEquals(urlParams.verification_token, Redacted.value(token.value))) {
          return yield* new Unauthorized({ message: "missing or wrong verification_token" })
        }
        if (urlParams.challenge === undefined || urlParams.challenge.length === 0) return yield* new InvalidRequest({ message: "challenge is missing" })
        return { challenge: urlParams.challenge }
      })

    const notify = Effect.fn("Oura.notify")(function* ({ request }: { readonly request: HttpServerRequest.HttpServerRequest }) {
      const unsigned = new Unauthorized({ message: "missing or wrong x-oura-signature" })
      const secret = config.clientSecret
      const signature = header(request, "x-oura-signature")
      const timestamp = header(request, "x-oura-timestamp")
      if (Option.isNone(secret) || signature === undefined || timestamp === undefined) return yield* unsigned
      const bytes = new Uint8Array(yield* Effect.mapError(request.arrayBuffer, () => new InvalidRequest({ message: "the request body could not be read" })))
      if (!signatureMatches(secret.value, timestamp, bytes, signature)) return yield* unsigned
      if (bytes.byteLength > MAX_NOTIFICATION_BYTES) return yield* new InvalidRequest({ message: `body is larger than an Oura notification (${bytes.byteLength} bytes)` })
      const text = new TextDecoder().decode(bytes)
      const notification = yield* Either.mapLeft(decodeNotification(text), (message) => new InvalidRequest({ message }))
      const inboxId = yield* inbox.commit({ provider: "oura", kind: NOTIFICATION_KIND, body: text, itemCount: 1 }).pipe(
        Effect.tapError((e) => Effect.logError("could not commit Oura notification; answering 503", e.cause)),
        Effect.mapError(() => new ServiceUnavailable({ message: "notification not stored; retry later", retryable: true }))
      )
      yield* Effect.logInfo("Oura notification stored").pipe(
        Effect.annotateLogs({
          inbox_id: inboxId,
          event_type: notification.event_type,
          // Known types only: anything else is a value from the wire.
          data_type: isKnownDataType(notification.data_type) ? notification.data_type : "(not kept)"
        })
      )
      return { inbox_id: inboxId }
    }, (effect) =>
      effect.pipe(
        Effect.tapErrorTag("InvalidRequest", () => Metric.increment(rejected)),
        Effect.tapErrorTag("Unauthorized", () => Metric.increment(rejected)),
        Effect.annotateLogs("plugin", "oura")
      ))

    return handlers.handle("verify", verify).handleRaw("notify", notify)
  })
)
