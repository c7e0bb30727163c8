/**
 * The ETL sink's read route for a team: its events staged but not yet in files, and the
 * batches (sealed, waiting to be written, or set aside as failed) that hold them, with the
 * team's share of each. Batches mix every team's events (one bucket, one batch per resource
 * and time), so a team sees only its own counts; a written batch's events are no longer
 * staged and it drops out of this view. Failure messages are not sent (they may describe a
 * row), only whether the last write failed.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { ApiKeyAuth, ServiceUnavailable } from "@wearflow/core/http"
import { Schema } from "effect"

export const EtlStatus = Schema.Struct({
  enabled: Schema.Boolean.annotations({ description: "false: the ETL sink is off (WEARFLOW_ETL_ENABLED=false)" }),
  staged: Schema.Array(Schema.Struct({
    resource: Schema.String,
    events: Schema.Int,
    records: Schema.Int,
    oldest_staged_at: Schema.String
  })).annotations({ description: "per resource, the team's events not yet written to a file" }),
  batches: Schema.Array(Schema.Struct({
    id: Schema.String,
    resource: Schema.String,
    format: Schema.String,
    status: Schema.Literal("sealed", "failed").annotations({ description: "sealed: waiting to be written; failed: its rows could not be encoded, set aside for an operator" }),
    sealed_at: Schema.String,
    attempts: Schema.Int,
    failing: Schema.Boolean.annotations({ description: "the last attempt to write it failed" }),
    events: Schema.Int.annotations({ description: "the team's events in the batch" }),
    records: Schema.Int.annotations({ description: "the team's rows in the batch" })
  })).annotations({ description: "the batches holding the team's staged events, newest first (at most 100)" })
}).annotations({ identifier: "EtlStatus" })

export class EtlApi extends HttpApiGroup.make("etl")
  .add(
    HttpApiEndpoint.get("batches", "/v2/etl/batches")
      .addSuccess(EtlStatus)
      .annotate(OpenApi.Description, "The team's data on its way to ETL files: staged events per resource and the batches waiting to be written.")
  )
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "ETL") {}
