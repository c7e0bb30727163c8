/**
 * The Garmin webhook contract: the PUSH and PING endpoints Garmin's servers post to, and a
 * health check for the portal's endpoint test. Bodies are read raw (not decoded by HttpApi)
 * so that they can be stored exactly as received and malformed JSON is never echoed back.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { InvalidRequest, ServiceUnavailable, Unauthorized } from "@wearflow/core/http"
import { Schema } from "effect"

export const ItemProblem = Schema.Struct({
  key: Schema.String,
  index: Schema.Int,
  message: Schema.String
})

/** The answer to an accepted notification: the body is durable in the inbox. */
export const NotificationAccepted = Schema.Struct({
  inbox_id: Schema.Int.annotations({ description: "id of the stored body" }),
  accepted: Schema.Record({ key: Schema.String, value: Schema.Int }).annotations({ description: "items per notification key" }),
  ignored_keys: Schema.Array(Schema.String).annotations({ description: "top-level keys Wearflow does not know (not processed); the first 100, each cut to 64 characters" }),
  ignored_keys_omitted: Schema.Int.annotations({ description: "unknown keys left out of ignored_keys" }),
  errors: Schema.Array(ItemProblem).annotations({
    description: "always empty: items are checked off the request path, and the problems of those that cannot be processed are recorded on the stored body (kept for compatibility)"
  }),
  errors_omitted: Schema.Int.annotations({ description: "always 0 (see errors)" })
}).annotations({ identifier: "GarminNotificationAccepted" })

export const GarminHealth = Schema.Struct({
  status: Schema.Literal("ok"),
  provider: Schema.Literal("garmin")
})

const notification = <const Name extends "push" | "ping">(name: Name, description: string) =>
  HttpApiEndpoint.post(name, `/api/v1/webhooks/garmin/${name}`)
    .addSuccess(NotificationAccepted)
    .addError(InvalidRequest)
    .addError(Unauthorized)
    .addError(ServiceUnavailable)
    .annotate(OpenApi.Description, description)

export class GarminApi extends HttpApiGroup.make("garmin")
  .add(
    notification(
      "push",
      "Garmin PUSH notifications: `{\"<summaryKey>\": [records]}`. Requires the `garmin-client-id` header. " +
        "200 means the raw body is committed; 503 means it is not and Garmin should retry."
    )
  )
  .add(
    notification(
      "ping",
      "Garmin PING notifications: `{\"<summaryKey>\": [{userId, callbackURL}]}`. Stored; the callback URLs are pulled off the request path."
    )
  )
  .add(
    HttpApiEndpoint.get("health", "/api/v1/webhooks/garmin/health")
      .addSuccess(GarminHealth)
      .addError(ServiceUnavailable)
  )
  .annotate(OpenApi.Title, "Garmin webhooks") {}
