/**
 * The dashboard's own read route: the ingest backlog as counts (no ids, no bodies, nothing of
 * any team's data), behind the API key like every `/v2` route. The ingest queue is shared by
 * every team (a provider's notification may carry several teams' users), so its figures are
 * the pipeline's, the same `/health` shows without a key.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { ApiKeyAuth, ServiceUnavailable } from "@wearflow/core/http"
import { Schema } from "effect"

export const IngestStatus = Schema.Struct({
  pending_jobs: Schema.Int.annotations({ description: "ingest jobs waiting or running (every process)" }),
  oldest_job_age_seconds: Schema.Number,
  seconds_since_completion: Schema.NullOr(Schema.Number).annotations({ description: "null: no job completed yet" })
}).annotations({ identifier: "IngestStatus" })

export class DashboardApi extends HttpApiGroup.make("dashboard")
  .add(
    HttpApiEndpoint.get("ingest", "/v2/introspect/ingest")
      .addSuccess(IngestStatus)
      .annotate(OpenApi.Description, "The ingest backlog: how many stored notifications wait to be processed, and for how long.")
  )
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Operations") {}
