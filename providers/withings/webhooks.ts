/**
 * Withings' notification callback. The secret path segment is compared in constant time with
 * WITHINGS_NOTIFY_SECRET; a wrong or unset one answers 404 and nothing is read. The HEAD
 * check answers 200. A notification's form is bounded, checked, committed to the inbox as
 * JSON of its fields and answered at once; the ingest worker then wakes the user's poll (or
 * deregisters the connection, appli 46). An unknown appli is stored and ignored, never
 * refused: a refusal would only make Withings retry. The URL holds the secret, so these
 * requests are left out of the server's request log and logged here without it.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { constantTimeEquals } from "@wearflow/core/crypto"
import { ApiId, InvalidRequest, NotFound, ServiceUnavailable } from "@wearflow/core/http"
import { Inbox } from "@wearflow/core/pipeline/inbox"
import { Effect, Either, Metric, Option, Redacted, Stream } from "effect"
import { WithingsApi } from "./Api.ts"
import { WithingsConfig } from "./config.ts"
import { decodeNotification, isKnownAppli, MAX_NOTIFICATION_BYTES, NOTIFY_KIND } from "./notifications.ts"

const rejected = Metric.counter("wearflow_notifications_rejected_total").pipe(Metric.tagged("provider", "withings"))

/** The Withings group built against Wearflow's API id, so the app can mount it in its HttpApi. */
const WithingsHttpApi = HttpApi.make(ApiId).add(WithingsApi)

const FORM = "application/x-www-form-urlencoded"

/** The actions appli 46 documents; anything else is a value from the wire. */
const KNOWN_ACTIONS: ReadonlySet<string> = new Set(["delete", "unlink", "update"])

/** The body, read up to `max` bytes; undefined when it is longer (the rest is never read). */
const readBounded = (request: HttpServerRequest.HttpServerRequest, max: number) =>
  Effect.gen(function* () {
    const declared = Number(request.headers["content-length"])
    if (Number.isFinite(declared) && declared > max) return undefined
    const read = yield* request.stream.pipe(
      Stream.runFoldWhile(
        { size: 0, parts: [] as Array<Uint8Array> },
        (sofar) => sofar.size <= max,
        (sofar, chunk) => ({ size: sofar.size + chunk.byteLength, parts: [...sofar.parts, chunk] })
      ),
      Effect.mapError(() => new InvalidRequest({ message: "the request body could not be read" }))
    )
    if (read.size > max) return undefined
    return Buffer.concat(read.parts)
  })

export const layer = HttpApiBuilder.group(WithingsHttpApi, "withings", (handlers) =>
  Effect.gen(function* () {
    const config = yield* WithingsConfig
    const inbox = yield* Inbox
    const secret = config.notify.pathSecret
    if (Option.isNone(secret)) {
      yield* Effect.logWarning("WITHINGS_NOTIFY_SECRET is not set: Withings notifications are refused (404) and none are subscribed").pipe(Effect.annotateLogs("plugin", "withings"))
    }
    const notFound = new NotFound({ message: "not found" })
    /** The path's secret, checked in constant time; a wrong or unset one is a 404. */
    const authorized = (given: string): Effect.Effect<void, NotFound> =>
      Option.isSome(secret) && constantTimeEquals(given, Redacted.value(secret.value)) ? Effect.void : Effect.fail(notFound)

    const check = ({ path }: { readonly path: { readonly secret: string } }) =>
      authorized(path.secret).pipe(HttpMiddleware.withLoggerDisabled, Effect.annotateLogs("plugin", "withings"))

    const notify = Effect.fn("Withings.notify")(function* ({ path, request }: { readonly path: { readonly secret: string }; readonly request: HttpServerRequest.HttpServerRequest }) {
      yield* authorized(path.secret)
      const contentType = request.headers["content-type"]
      if (contentType !== undefined && !contentType.toLowerCase().startsWith(FORM)) return yield* new InvalidRequest({ message: `body must be ${FORM}` })
      const bytes = yield* readBounded(request, MAX_NOTIFICATION_BYTES)
      if (bytes === undefined) return yield* new InvalidRequest({ message: `body is larger than a Withings notification (at most ${MAX_NOTIFICATION_BYTES} bytes)` })
      const text = yield* Effect.try({ try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes), catch: () => new InvalidRequest({ message: "body is not UTF-8 text" }) })
      const notification = yield* Either.mapLeft(decodeNotification(text), (message) => new InvalidRequest({ message }))
      const inboxId = yield* inbox.commit({ provider: "withings", kind: NOTIFY_KIND, body: JSON.stringify(notification), itemCount: 1 }).pipe(
        Effect.tapError((e) => Effect.logError("could not commit a Withings notification; answering 503", e.cause)),
        Effect.mapError(() => new ServiceUnavailable({ message: "notification not stored; retry later", retryable: true }))
      )
      yield* Effect.logInfo("Withings notification stored").pipe(
        Effect.annotateLogs({
          inbox_id: inboxId,
          // Known codes only: anything else is a value from the wire.
          appli: isKnownAppli(notification.appli) ? notification.appli : "(not kept)",
          ...(notification.action === undefined ? {} : { action: KNOWN_ACTIONS.has(notification.action) ? notification.action : "(not kept)" })
        })
      )
      return { inbox_id: inboxId }
    }, (effect) =>
      effect.pipe(
        Effect.tapErrorTag("InvalidRequest", () => Metric.increment(rejected)),
        Effect.tapErrorTag("NotFound", () => Metric.increment(rejected)),
        HttpMiddleware.withLoggerDisabled,
        Effect.annotateLogs("plugin", "withings")
      ))

    return handlers.handle("check", check).handleRaw("notify", notify)
  })
)
