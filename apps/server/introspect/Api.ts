/**
 * `GET /v2/introspect/resources`: per user, provider and resource, what arrived (Junction's
 * introspection shape), a page of users at a time.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { ApiKeyAuth, InvalidRequest, ServiceUnavailable } from "@wearflow/core/http"
import { PageParams } from "@wearflow/core/paging"
import { Schema } from "effect"

export const RESOURCES_PAGE = { default: 20, max: 100 }

const ResourceStats = Schema.Struct({
  last_attempt: Schema.NullOr(Schema.Struct({
    timestamp: Schema.String,
    status: Schema.Literal("success", "failure")
  })).annotations({ description: "the latest data stored for this resource, or the latest poll of the connection when later (failed if it did)" }),
  oldest_data: Schema.NullOr(Schema.String).annotations({ description: "the earliest time the stored data describes" }),
  newest_data: Schema.NullOr(Schema.String).annotations({ description: "the latest time the stored data describes" }),
  sent_count: Schema.Int.annotations({ description: "items stored and sent on to the sinks (summaries, or timeseries samples)" })
})

export const UserResources = Schema.Struct({
  data: Schema.Array(Schema.Struct({
    user_id: Schema.String,
    client_user_id: Schema.String,
    provider: Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: ResourceStats }) })
      .annotations({ description: "provider slug → resource → its statistics; a connection without data yet has no resources" })
  })),
  next_cursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "UserResources" })

export class IntrospectApi extends HttpApiGroup.make("introspect")
  .add(
    HttpApiEndpoint.get("resources", "/v2/introspect/resources")
      .setUrlParams(Schema.Struct({
        user_id: Schema.optional(Schema.String),
        provider: Schema.optional(Schema.String),
        ...PageParams(RESOURCES_PAGE.max)
      }))
      .addSuccess(UserResources)
      .annotate(OpenApi.Description, `Per user, provider and resource: the last attempt, the oldest and newest data, how many items were sent. A page of users at a time (limit, default ${RESOURCES_PAGE.default}); follow next_cursor.`)
  )
  .addError(InvalidRequest)
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Introspection") {}
