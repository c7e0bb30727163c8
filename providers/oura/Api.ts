/**
 * The Oura webhook contract: the verification GET Oura makes while a subscription is created,
 * and the notification POST. Notification bodies are read raw (not decoded by HttpApi): the
 * signature covers the exact bytes, and they are stored as received.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { InvalidRequest, ServiceUnavailable, Unauthorized } from "@wearflow/core/http"
import { Schema } from "effect"
import { CALLBACK_PATH } from "./config.ts"

export const Challenge = Schema.Struct({ challenge: Schema.String }).annotations({ identifier: "OuraChallenge" })

export const VerificationQuery = Schema.Struct({
  verification_token: Schema.optional(Schema.String),
  challenge: Schema.optional(Schema.String)
})

/** The answer to an accepted notification: the body is durable in the inbox. */
export const OuraNotificationAccepted = Schema.Struct({
  inbox_id: Schema.Int.annotations({ description: "id of the stored body" })
}).annotations({ identifier: "OuraNotificationAccepted" })

export class OuraApi extends HttpApiGroup.make("oura")
  .add(
    HttpApiEndpoint.get("verify", CALLBACK_PATH)
      .setUrlParams(VerificationQuery)
      .addSuccess(Challenge)
      .addError(InvalidRequest)
      .addError(Unauthorized)
      .annotate(
        OpenApi.Description,
        "Oura's verification of a webhook subscription: answers `{\"challenge\"}` when `verification_token` is OURA_WEBHOOK_VERIFICATION_TOKEN, 401 otherwise."
      )
  )
  .add(
    HttpApiEndpoint.post("notify", CALLBACK_PATH)
      .addSuccess(OuraNotificationAccepted)
      .addError(InvalidRequest)
      .addError(Unauthorized)
      .addError(ServiceUnavailable)
      .annotate(
        OpenApi.Description,
        "Oura notifications `{event_type, data_type, object_id, event_time, user_id}`, signed (`x-oura-signature`, `x-oura-timestamp`). " +
          "200 means the raw body is committed and the document will be fetched; 503 means it is not and Oura should retry."
      )
  )
  .annotate(OpenApi.Title, "Oura webhooks") {}
