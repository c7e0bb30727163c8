/**
 * `GET /v2/alerts`: the caller's team's operator alerts — silent connections and resources of
 * its users, notices of its webhook endpoints — newest first, cursor-paged. Provider-wide
 * alerts (a provider silent for everyone) belong to no team: only the admin listing,
 * `GET /v2/admin/alerts`, shows them, beside every team's.
 * Alerts name ids, kinds and times, never health values.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { AdminKeyAuth, ApiKeyAuth, Forbidden, InvalidRequest, ServiceUnavailable } from "@wearflow/core/http"
import { Schema } from "effect"

export const AlertView = Schema.Struct({
  id: Schema.UUID,
  kind: Schema.Literal("connection.gap", "resource.volume_drop", "provider.silent", "endpoint.disabled", "message.attempt.exhausted"),
  status: Schema.Literal("open", "cleared"),
  team_id: Schema.NullOr(Schema.String),
  user_id: Schema.NullOr(Schema.String),
  provider: Schema.NullOr(Schema.String),
  resource: Schema.NullOr(Schema.String),
  endpoint_id: Schema.NullOr(Schema.String),
  message_id: Schema.NullOr(Schema.String),
  detail: Schema.NullOr(Schema.String),
  since: Schema.String.annotations({ description: "since when the problem stands: the last data before the silence, or when the notice happened" }),
  last_data_at: Schema.NullOr(Schema.String),
  opened_at: Schema.String,
  cleared_at: Schema.NullOr(Schema.String)
}).annotations({ identifier: "Alert" })

export const AlertsPage = Schema.Struct({
  data: Schema.Array(AlertView),
  next_cursor: Schema.NullOr(Schema.String).annotations({ description: "pass as `cursor` for the next page; null on the last" })
}).annotations({ identifier: "AlertsPage" })

export const AlertsQuery = Schema.Struct({
  status: Schema.optional(Schema.Literal("open", "cleared", "all").annotations({ description: "default: open" })),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100)).annotations({ description: "1..100, default 50" })),
  cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(200)))
})

/** The one listing, on a team's route and on the admin's. */
const listAlerts = (path: "/v2/alerts" | "/v2/admin/alerts", description: string) =>
  HttpApiEndpoint.get("list", path).setUrlParams(AlertsQuery).addSuccess(AlertsPage).annotate(OpenApi.Description, description)

export class AlertsApi extends HttpApiGroup.make("alerts")
  .add(listAlerts("/v2/alerts", "The team's operator alerts (silent connections and resources, webhook endpoint notices), newest first."))
  .addError(InvalidRequest)
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Alerts") {}

/** Every alert, of every team and provider-wide: admin keys only. */
export class AdminAlertsApi extends HttpApiGroup.make("adminAlerts")
  .add(listAlerts("/v2/admin/alerts", "Every operator alert — each team's, and provider-wide ones (a provider silent for everyone) — newest first. Admin keys only."))
  .addError(InvalidRequest)
  .addError(ServiceUnavailable)
  .addError(Forbidden)
  .middleware(AdminKeyAuth)
  .annotate(OpenApi.Title, "Alerts (admin)") {}
