/**
 * The admin API: teams and their API keys. Only admin keys reach it (`AdminKeyAuth`); a team
 * key is answered 403. A key's secret is in the answer that creates it (or rotates to it) and
 * nowhere else; lists carry labels, scopes and times. Lists are paged by cursor.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { AdminKeyAuth, Conflict, InvalidRequest, NotFound, PrintableId, ServiceUnavailable } from "@wearflow/core/http"
import { MAX_PAGE } from "@wearflow/core/tenancy/api-keys"
import { Schema } from "effect"

const TeamId = HttpApiSchema.param("team_id", Schema.String)
const KeyId = HttpApiSchema.param("key_id", Schema.String)

export const Team = Schema.Struct({ id: Schema.UUID, name: Schema.String, created_at: Schema.String }).annotations({ identifier: "Team" })

export const CreateTeam = Schema.Struct({ name: PrintableId(256) })

export const ApiKey = Schema.Struct({
  id: Schema.UUID.annotations({ description: "the key's id, to revoke or rotate it by (not the key)" }),
  team_id: Schema.UUID,
  label: Schema.String,
  scope: Schema.Literal("full", "read_only"),
  admin: Schema.Boolean,
  status: Schema.Literal("active", "expired", "revoked"),
  created_at: Schema.String,
  last_used_at: Schema.NullOr(Schema.String).annotations({ description: "to the minute: recorded at most once a minute" }),
  expires_at: Schema.NullOr(Schema.String),
  revoked_at: Schema.NullOr(Schema.String)
}).annotations({ identifier: "ApiKey" })

export const CreatedApiKey = Schema.Struct({
  ...ApiKey.fields,
  key: Schema.String.annotations({ description: "the key itself, shown this once: only its hash is stored" })
}).annotations({ identifier: "CreatedApiKey" })

export const CreateApiKey = Schema.Struct({
  label: PrintableId(128).annotations({ description: "what the key is for, e.g. the service that holds it" }),
  scope: Schema.optional(Schema.Literal("full", "read_only").annotations({ description: "read_only: GET and HEAD only (default full)" })),
  admin: Schema.optional(Schema.Boolean.annotations({ description: "the key manages teams and keys (default false)" })),
  expires_at: Schema.optional(Schema.Date.annotations({
    description: "when the key stops working (ISO 8601, in the future); default never"
  }))
})

export const RotateApiKey = Schema.Struct({
  overlap_seconds: Schema.optional(Schema.Int.pipe(Schema.between(0, 30 * 86_400)).annotations({
    description: "how long the old key keeps working beside the new one (default 86400, one day; 0: it stops now)"
  }))
})

export const RotatedApiKey = Schema.Struct({
  key: CreatedApiKey,
  previous: ApiKey.annotations({ description: "the old key, with the expiry the overlap gave it" })
})

const PageParams = Schema.Struct({
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, MAX_PAGE)).annotations({ description: `page size, 1..${MAX_PAGE} (default 50)` })),
  cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(512)).annotations({ description: "next_cursor of the previous page" }))
})

const pageOf = <S extends Schema.Schema.Any>(item: S) =>
  Schema.Struct({ data: Schema.Array(item), next_cursor: Schema.NullOr(Schema.String).annotations({ description: "null on the last page" }) })

export class TeamsApi extends HttpApiGroup.make("teams")
  .add(HttpApiEndpoint.post("createTeam", "/v2/teams").setPayload(CreateTeam).addSuccess(Team, { status: 201 }))
  .add(HttpApiEndpoint.get("listTeams", "/v2/teams").setUrlParams(PageParams).addSuccess(pageOf(Team)))
  .add(
    HttpApiEndpoint.post("createKey")`/v2/teams/${TeamId}/api_keys`
      .setPayload(CreateApiKey)
      .addSuccess(CreatedApiKey, { status: 201 })
      .addError(NotFound)
      .annotate(OpenApi.Description, "A new key for the team; the answer is the only place its secret appears.")
  )
  .add(
    HttpApiEndpoint.get("listKeys")`/v2/teams/${TeamId}/api_keys`
      .setUrlParams(PageParams)
      .addSuccess(pageOf(ApiKey))
      .addError(NotFound)
      .annotate(OpenApi.Description, "The team's keys, oldest first, revoked and expired ones included; never a secret.")
  )
  .add(
    HttpApiEndpoint.del("revokeKey")`/v2/teams/${TeamId}/api_keys/${KeyId}`
      .addSuccess(ApiKey)
      .addError(NotFound)
      .annotate(OpenApi.Description, "Revokes the key: every server process refuses it from now on.")
  )
  .add(
    HttpApiEndpoint.post("rotateKey")`/v2/teams/${TeamId}/api_keys/${KeyId}/rotate`
      .setPayload(RotateApiKey)
      .addSuccess(RotatedApiKey, { status: 201 })
      .addError(NotFound)
      .addError(Conflict)
      .annotate(OpenApi.Description, "A new key with the old one's label, scope and admin flag; the old one keeps working for `overlap_seconds`.")
  )
  .addError(InvalidRequest)
  .addError(ServiceUnavailable)
  .middleware(AdminKeyAuth)
  .annotate(OpenApi.Title, "Teams and API keys (admin)") {}
