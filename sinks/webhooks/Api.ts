/**
 * The webhook endpoints API (Junction's shapes, under /v2/webhooks): endpoints, custom
 * headers, the signing secret, the message log with attempts, resend, recover, test. The
 * webhooks sink's own group, behind the app's API-key security; the app mounts it from the
 * plugin's `routes`.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { PageParams } from "@wearflow/core/paging"
import { ApiKeyAuth, InvalidRequest, NotFound, ServiceUnavailable } from "@wearflow/core/http"
import { Schema } from "effect"

const WebhookId = HttpApiSchema.param("id", Schema.String)
const MessageId = HttpApiSchema.param("message_id", Schema.String)

const SignatureHeaders = Schema.Literal("svix", "webhook").annotations({
  description: "`svix`: svix-id / svix-timestamp / svix-signature; `webhook`: the Standard Webhooks names (webhook-id, ...)"
})

const EventType = Schema.String.pipe(Schema.maxLength(128))

export const Webhook = Schema.Struct({
  id: Schema.UUID,
  url: Schema.String,
  description: Schema.String,
  rate_limit: Schema.NullOr(Schema.Int).annotations({ description: "messages per second; null: no limit" }),
  disabled: Schema.Boolean,
  disabled_reason: Schema.NullOr(Schema.String),
  filter_types: Schema.Array(Schema.String).annotations({ description: "event types to send (a trailing `*` matches a prefix); empty: all" }),
  signature_headers: SignatureHeaders,
  fifo: Schema.Boolean.annotations({ description: "deliver each user's messages one at a time, in order" }),
  created_at: Schema.String,
  updated_at: Schema.String
}).annotations({ identifier: "Webhook" })

const Changes = {
  description: Schema.optional(Schema.String.pipe(Schema.maxLength(1024))),
  rate_limit: Schema.optional(Schema.NullOr(Schema.Int.pipe(Schema.between(1, 100_000)))),
  disabled: Schema.optional(Schema.Boolean),
  filter_types: Schema.optional(Schema.Array(EventType)),
  signature_headers: Schema.optional(SignatureHeaders),
  fifo: Schema.optional(Schema.Boolean)
}

const Url = Schema.String.pipe(Schema.maxLength(2048)).annotations({ description: "https (http only if the operator allows it)" })
const Headers = Schema.Record({ key: Schema.String, value: Schema.String })
const Key = Schema.Redacted(Schema.String).annotations({ description: "`whsec_` + base64 of 24 to 64 bytes" })

export const CreateWebhook = Schema.Struct({
  url: Url,
  ...Changes,
  headers: Schema.optional(Headers),
  secret: Schema.optional(Key.annotations({ description: "your own signing secret; one is generated when absent" }))
})

export const UpdateWebhook = Schema.Struct({ url: Schema.optional(Url), ...Changes })

export const CustomHeaders = Schema.Struct({ headers: Headers })

export const SigningSecret = Schema.Struct({ key: Schema.String })

/** The rotate route's optional body. */
export const RotateSecret = Schema.Struct({ key: Schema.optional(Key) })

const Attempt = Schema.Struct({
  attempt: Schema.Int,
  trigger: Schema.String.annotations({ description: "first, retry or manual (resend / recover)" }),
  attempted_at: Schema.String,
  status: Schema.Literal("success", "failure"),
  response_status_code: Schema.NullOr(Schema.Int),
  latency_ms: Schema.Int,
  response_excerpt: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String)
})

const MessageStatus = Schema.Literal("pending", "retrying", "delivered", "failed")

export const WebhookMessage = Schema.Struct({
  id: Schema.String.annotations({ description: "the svix-id / webhook-id header, the same on every attempt" }),
  event_id: Schema.NullOr(Schema.String),
  event_type: Schema.String,
  user_id: Schema.NullOr(Schema.String),
  status: MessageStatus,
  created_at: Schema.String,
  delivered_at: Schema.NullOr(Schema.String),
  attempts: Schema.Array(Attempt)
}).annotations({ identifier: "WebhookMessage" })

export const ENDPOINTS_PAGE = { default: 100, max: 250 }

export class WebhooksApi extends HttpApiGroup.make("webhooks")
  .add(HttpApiEndpoint.post("create", "/v2/webhooks").setPayload(CreateWebhook).addSuccess(Webhook, { status: 201 }))
  .add(
    HttpApiEndpoint.get("list", "/v2/webhooks")
      .setUrlParams(Schema.Struct(PageParams(ENDPOINTS_PAGE.max)))
      .addSuccess(Schema.Struct({ data: Schema.Array(Webhook), next_cursor: Schema.NullOr(Schema.String) }))
      .annotate(OpenApi.Description, `The team's endpoints in creation order, a page at a time (limit, default ${ENDPOINTS_PAGE.default}); follow next_cursor.`)
  )
  .add(HttpApiEndpoint.get("get")`/v2/webhooks/${WebhookId}`.addSuccess(Webhook))
  .add(HttpApiEndpoint.patch("update")`/v2/webhooks/${WebhookId}`.setPayload(UpdateWebhook).addSuccess(Webhook))
  .add(HttpApiEndpoint.del("delete")`/v2/webhooks/${WebhookId}`.addSuccess(HttpApiSchema.NoContent))
  .add(HttpApiEndpoint.get("headers")`/v2/webhooks/${WebhookId}/headers`.addSuccess(CustomHeaders))
  .add(HttpApiEndpoint.put("setHeaders")`/v2/webhooks/${WebhookId}/headers`.setPayload(CustomHeaders).addSuccess(CustomHeaders))
  .add(HttpApiEndpoint.get("secret")`/v2/webhooks/${WebhookId}/secret`.addSuccess(SigningSecret))
  .add(
    // The body is optional, so the handler reads it (RotateSecret) instead of declaring it.
    HttpApiEndpoint.post("rotateSecret")`/v2/webhooks/${WebhookId}/secret/rotate`
      .addSuccess(SigningSecret)
      .annotate(OpenApi.Description, "A new secret: yours (an optional body `{\"key\": \"whsec_...\"}`) or generated. Messages are signed with the old one too for the grace period (WEARFLOW_WEBHOOK_SECRET_GRACE).")
  )
  .add(
    HttpApiEndpoint.get("messages")`/v2/webhooks/${WebhookId}/messages`
      .setUrlParams(Schema.Struct({
        status: Schema.optional(MessageStatus),
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 250))),
        cursor: Schema.optional(Schema.String.annotations({ description: "`next_cursor` of the previous page" }))
      }))
      .addSuccess(Schema.Struct({ data: Schema.Array(WebhookMessage), next_cursor: Schema.NullOr(Schema.String) }))

      .annotate(OpenApi.Description, "Newest first, with every attempt: status, response code, latency, and the start of the response body.")
  )
  .add(
    HttpApiEndpoint.post("recover")`/v2/webhooks/${WebhookId}/recover`
      .setPayload(Schema.Struct({ since: Schema.Date.annotations({ description: "ISO 8601" }) }))
      .addSuccess(Schema.Struct({ recovered: Schema.Int }), { status: 202 })

      .annotate(OpenApi.Description, "Sends again every failed message created since `since`, under the same ids.")
  )
  .add(
    HttpApiEndpoint.post("resend")`/v2/webhooks/messages/${MessageId}/resend`
      .addSuccess(Schema.Struct({ message_id: Schema.String, status: Schema.Literal("pending") }), { status: 202 })

  )
  .add(
    HttpApiEndpoint.post("test")`/v2/webhooks/${WebhookId}/test`
      .addSuccess(Schema.Struct({ message_id: Schema.String }), { status: 202 })

      .annotate(OpenApi.Description, "Sends a `webhook.test` event to the endpoint.")
  )
  .addError(InvalidRequest)
  .addError(NotFound)
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Webhooks") {}
