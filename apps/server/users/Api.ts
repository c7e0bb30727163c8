/**
 * A team's users over their lifetime: the list (paged), deletion and its undo. The user's own
 * shape (UserView) lives here too; Api.ts uses it for `GET /v2/user/{user_id}`.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { ApiKeyAuth, Conflict, InvalidRequest, NotFound, ServiceUnavailable } from "@wearflow/core/http"
import { Schema } from "effect"

export const ConnectedSource = Schema.Struct({
  provider: Schema.String,
  provider_user_id: Schema.String,
  status: Schema.String,
  scopes: Schema.Array(Schema.String),
  created_on: Schema.String
})

export const UserView = Schema.Struct({
  user_id: Schema.UUID,
  team_id: Schema.UUID,
  client_user_id: Schema.String,
  created_on: Schema.String,
  connected_sources: Schema.Array(ConnectedSource)
}).annotations({ identifier: "User" })

/** Users per page: 50 unless asked, at most 500. */
export const PAGE_DEFAULT = 50
export const PAGE_MAX = 500

export const UserPage = Schema.Struct({
  users: Schema.Array(UserView),
  next_cursor: Schema.NullOr(Schema.String).annotations({ description: "pass as `cursor` for the next page; null on the last" })
}).annotations({ identifier: "UserPage" })

const EndedConnection = Schema.Struct({
  provider: Schema.String,
  provider_deregistered: Schema.Boolean.annotations({ description: "the provider confirmed it stops sending this user's data" }),
  shared_account: Schema.Boolean.annotations({ description: "another user is linked to the same provider account, so the provider was not told" })
})

export const DeletedUserView = Schema.Struct({
  user_id: Schema.UUID,
  status: Schema.Literal("deleted"),
  deleted_at: Schema.String,
  erase_after: Schema.String.annotations({ description: "when the user's data is erased; until then POST /v2/user/undo_delete restores the user" }),
  connections: Schema.Array(EndedConnection),
  cancelled_backfills: Schema.Int
}).annotations({ identifier: "DeletedUser" })

const UserId = HttpApiSchema.param("user_id", Schema.String)

export class UserLifecycleApi extends HttpApiGroup.make("userLifecycle")
  .add(
    HttpApiEndpoint.get("list", "/v2/user")
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, PAGE_MAX)).annotations({
          description: `users per page, 1..${PAGE_MAX} (default ${PAGE_DEFAULT})`
        })),
        cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(256)).annotations({ description: "the `next_cursor` of the previous page" }))
      }))
      .addSuccess(UserPage)
      .annotate(OpenApi.Description, "The team's users, oldest first, a page at a time. Deleted users are not listed.")
  )
  .add(
    HttpApiEndpoint.del("delete")`/v2/user/${UserId}`
      .addSuccess(DeletedUserView)
      .addError(NotFound)
      .annotate(
        OpenApi.Description,
        "Deletes the user at once: every provider connection is ended (the provider is told to stop sending data), backfills and polls stop, " +
          "and the user answers 404. After the grace period (WEARFLOW_USER_DELETION_GRACE, default 7 days) all of the user's data is erased " +
          "and a `user.deleted` event is sent. If a provider cannot be reached, nothing changes: retry."
      )
  )
  .add(
    HttpApiEndpoint.post("undoDelete", "/v2/user/undo_delete")
      .setPayload(Schema.Struct({ user_id: Schema.String }))
      .addSuccess(UserView)
      .addError(NotFound)
      .addError(Conflict)
      .annotate(OpenApi.Description, "Restores a deleted user within the grace period. Their connections stay ended: link the user again.")
  )
  .addError(InvalidRequest)
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Users: list and deletion") {}
