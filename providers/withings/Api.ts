/**
 * Withings' notification callback: the HEAD Withings makes to check the URL while a
 * subscription is created, and the form-encoded notification POST. Withings signs nothing,
 * so the callback URL's last segment is the credential (WITHINGS_NOTIFY_SECRET); a wrong one
 * answers 404 as if nothing were there. Notification bodies are read raw (not decoded by
 * HttpApi): they are bounded and checked by the plugin, whose messages never quote them.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { InvalidRequest, NotFound, ServiceUnavailable } from "@wearflow/core/http"
import { Schema } from "effect"
import { CALLBACK_PATH } from "./config.ts"

/** The secret path segment; any text decodes, so a wrong one reaches the handler (and its constant-time check). */
const SecretPath = Schema.Struct({ secret: Schema.String })
const PATH = `${CALLBACK_PATH}/:secret` as const

/** The answer to an accepted notification: the body is durable in the inbox. */
export const WithingsNotificationAccepted = Schema.Struct({
  inbox_id: Schema.Int.annotations({ description: "id of the stored notification" })
}).annotations({ identifier: "WithingsNotificationAccepted" })

export class WithingsApi extends HttpApiGroup.make("withings")
  .add(
    HttpApiEndpoint.head("check", PATH)
      .setPath(SecretPath)
      .addSuccess(HttpApiSchema.Empty(200))
      .addError(NotFound)
      .annotate(OpenApi.Description, "Withings' check of the callback URL while subscribing: 200 for the configured WITHINGS_NOTIFY_SECRET, 404 otherwise.")
  )
  .add(
    HttpApiEndpoint.post("notify", PATH)
      .setPath(SecretPath)
      .addSuccess(WithingsNotificationAccepted)
      .addError(InvalidRequest)
      .addError(NotFound)
      .addError(ServiceUnavailable)
      .annotate(
        OpenApi.Description,
        "Withings notifications, form-encoded: `userid`, `appli`, `startdate`+`enddate` or `date`, `deviceid`, `action` (appli 46). " +
          "200 means the notification is committed (the user's poll runs at once); 503 means it is not and Withings should retry; 404 for a wrong secret."
      )
  )
  .annotate(OpenApi.Title, "Withings notifications") {}
