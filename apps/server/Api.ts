/**
 * Wearflow's own HTTP contract: users and connections, the data API (Junction's shapes) and
 * backfills. The server adds the groups of the plugins it runs (`withPluginRoutes`); OpenAPI and
 * the docs page are generated from the result.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { ApiId, Conflict, InvalidRequest, NotFound, PrintableId, ServiceUnavailable } from "@wearflow/core/http"
import { Activity, Body, MenstrualCycle, Resources, Sleep, type TimeseriesResource, Workout, WorkoutStream } from "@wearflow/core/schema"
import { Schema } from "effect"
import { ApiKeyAuth } from "@wearflow/core/http"
import { DashboardApi } from "./dashboard/Api.ts"
import { TeamsApi } from "./teams/Api.ts"
import { ConnectedSource, UserLifecycleApi, UserView } from "./users/Api.ts"
import { PageParams } from "@wearflow/core/paging"
import { IntrospectApi } from "./introspect/Api.ts"
import { AdminAlertsApi, AlertsApi } from "./alerts/Api.ts"

export { ApiKeyAuth, CurrentTeam } from "@wearflow/core/http"

const UserId = HttpApiSchema.param("user_id", Schema.String)

const Id = PrintableId

export const CreateUser = Schema.Struct({
  client_user_id: Id(256).annotations({
    description: "your own id for this user"
  })
})

export const CreatedUser = Schema.Struct({ user_id: Schema.UUID, client_user_id: Schema.String })

export { ConnectedSource, UserView }

export const LinkedConnection = Schema.Struct({
  user_id: Schema.UUID,
  provider: Schema.String,
  provider_user_id: Schema.String,
  status: Schema.String,
  replayed_notifications: Schema.Int.annotations({ description: "stored notifications queued for this user because they arrived before the link" })
})

const HttpUrl = Schema.String.pipe(
  Schema.maxLength(2048),
  Schema.filter((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), { message: () => "must be an http(s) URL" })
)

export const LinkTokenRequest = Schema.Struct({
  user_id: Schema.String,
  provider: Id(64).annotations({ description: "provider slug, as the provider plugin names itself" }),
  redirect_url: Schema.optional(HttpUrl.annotations({
    description: "where the user lands afterwards, with `state=success|error`, `provider` and on error `error_type` query parameters"
  })),
  oauth_version: Schema.optional(Schema.Literal("oauth2", "oauth1").annotations({ description: "default: the provider's first connect flow; oauth1 only for providers that still offer a legacy OAuth 1.0a flow" }))
})

export const LinkToken = Schema.Struct({
  link_token: Schema.String,
  link_web_url: Schema.String.annotations({ description: "open in the user's browser: it sends them to the provider's consent page" }),
  expires_at: Schema.String
})

export const ProviderSlug = HttpApiSchema.param("provider", Id(64))

export const Disconnected = Schema.Struct({
  user_id: Schema.UUID,
  provider: Schema.String,
  status: Schema.Literal("disconnected"),
  provider_deregistered: Schema.Boolean.annotations({ description: "the provider confirmed it stops sending this user's data" }),
  shared_account: Schema.Boolean.annotations({ description: "another user is linked to the same provider account, so the provider was not told" })
})

export class UsersApi extends HttpApiGroup.make("users")
  .add(HttpApiEndpoint.post("create", "/v2/user").setPayload(CreateUser).addSuccess(CreatedUser).addError(Conflict))
  .add(HttpApiEndpoint.get("get")`/v2/user/${UserId}`.addSuccess(UserView).addError(NotFound))
  .add(
    HttpApiEndpoint.post("link")`/v2/user/${UserId}/connections/${ProviderSlug}`
      .setPayload(Schema.Unknown.annotations({ description: "the provider's own link payload (its account id and the tokens you hold); see the provider's documentation" }))
      .addSuccess(LinkedConnection)
      .addError(NotFound)
      .addError(Conflict)
      .annotate(OpenApi.Description, "Links a provider account the caller already holds tokens for. Tokens are stored encrypted.")
  )
  .add(
    HttpApiEndpoint.del("disconnect")`/v2/user/${UserId}/connections/${ProviderSlug}`
      .addSuccess(Disconnected)
      .addError(NotFound)
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "Ends the connection: tells the provider to stop sending the user's data and erases the tokens.")
  )
  .add(
    HttpApiEndpoint.post("linkToken", "/v2/link/token")
      .setPayload(LinkTokenRequest)
      .addSuccess(LinkToken)
      .addError(NotFound)
      .annotate(OpenApi.Description, "A single-use link (valid one hour) that connects the user to a provider through its OAuth consent page.")
  )
  .addError(InvalidRequest)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Users and connections") {}

const RequestedRange = Schema.Struct({
  type: Schema.String.annotations({ description: "the provider's backfill type" }),
  resource: Schema.String,
  range_start: Schema.String,
  range_end: Schema.String
})

const AlreadyRequested = Schema.Struct({
  ...RequestedRange.fields,
  requested_at: Schema.NullOr(Schema.String)
})

export const BackfillRequest = Schema.Struct({
  days: Schema.optional(Schema.Int.pipe(Schema.between(1, 1825)).annotations({ description: "days of history (default WEARFLOW_BACKFILL_DAYS)" })),
  types: Schema.optional(Schema.Array(Id(64)).annotations({ description: "provider backfill types (default: those enabled)" }))
})

export const BackfillStarted = Schema.Struct({
  backfill_id: Schema.UUID,
  status: Schema.Literal("scheduled"),
  planned: Schema.Array(RequestedRange).annotations({ description: "the windows to request, one at a time, in order" }),
  already_requested: Schema.Array(AlreadyRequested).annotations({
    description: "ranges the provider was already asked for since the user connected: it would not send them again, so they are left out"
  }),
  message: Schema.String
})

/** Nothing new can be requested, or a backfill is already running. */
export class BackfillConflict extends Schema.TaggedError<BackfillConflict>()(
  "BackfillConflict",
  { message: Schema.String, already_requested: Schema.Array(AlreadyRequested) },
  HttpApiSchema.annotations({ status: 409 })
) {}

export const BackfillCancelled = Schema.Struct({ backfill_id: Schema.UUID, status: Schema.Literal("cancelled") })

const HistoricalPull = Schema.Struct({
  status: Schema.Literal("scheduled", "in_progress", "success", "failure", "retrying"),
  range_start: Schema.NullOr(Schema.String),
  range_end: Schema.NullOr(Schema.String),
  timeline: Schema.Struct({ scheduled_at: Schema.String, started_at: Schema.NullOr(Schema.String), ended_at: Schema.NullOr(Schema.String) }),
  days_with_data: Schema.Int,
  windows: Schema.Struct({ total: Schema.Int, done: Schema.Int }),
  error_details: Schema.NullOr(Schema.String)
})

export const HistoricalPulls = Schema.Struct({
  data: Schema.Array(Schema.Struct({
    backfill_id: Schema.UUID,
    user_id: Schema.UUID,
    client_user_id: Schema.String,
    provider: Schema.Struct({ name: Schema.String, slug: Schema.String, logo: Schema.Null }),
    status: Schema.String,
    origin: Schema.String,
    created_at: Schema.String,
    ended_at: Schema.NullOr(Schema.String),
    historical_pulls: Schema.Record({ key: Schema.String, value: HistoricalPull })
  })),
  next_cursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "HistoricalPulls" })

export const HISTORICAL_PULLS_PAGE = { default: 100, max: 500 }

/** Each polled connection of a user: where its poll stands. */
export const ConnectionSyncs = Schema.Struct({
  data: Schema.Array(Schema.Struct({
    provider: Schema.String,
    state: Schema.Literal("polling", "waiting", "starting", "ended"),
    cursor: Schema.NullOr(Schema.String),
    rounds: Schema.Int,
    last_poll_at: Schema.NullOr(Schema.String),
    next_poll_at: Schema.NullOr(Schema.String),
    last_error: Schema.NullOr(Schema.String),
    end_reason: Schema.NullOr(Schema.String)
  }))
}).annotations({ identifier: "ConnectionSyncs" })

/** Backfills: start, cancel, and the historical-pull status (Junction's introspection shape). */
export class BackfillApi extends HttpApiGroup.make("backfill")
  .add(
    HttpApiEndpoint.post("start")`/v2/user/${UserId}/backfill/${ProviderSlug}`
      .setPayload(BackfillRequest)
      .addSuccess(BackfillStarted, { status: 202 })
      .addError(NotFound)
      .addError(BackfillConflict)
      .annotate(OpenApi.Description, "Fetches the user's history from the provider, one window at a time. Ranges already requested since the user connected are explained, not re-sent.")
  )
  .add(
    HttpApiEndpoint.del("cancel")`/v2/user/${UserId}/backfill/${ProviderSlug}`
      .addSuccess(BackfillCancelled)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("status", "/v2/introspect/historical_pull")
      .setUrlParams(Schema.Struct({ user_id: Schema.optional(Schema.String), provider: Schema.optional(Schema.String), ...PageParams(HISTORICAL_PULLS_PAGE.max) }))
      .addSuccess(HistoricalPulls)
      .annotate(OpenApi.Description, `Per user and provider, the latest backfill's status per resource; a page at a time (limit, default ${HISTORICAL_PULLS_PAGE.default}), follow next_cursor.`)
  )
  .add(
    HttpApiEndpoint.get("sync")`/v2/user/${UserId}/sync`
      .addSuccess(ConnectionSyncs)
      .addError(NotFound)
      .annotate(OpenApi.Description, "For each of the user's polled connections: its last poll, cursor, next poll and last error.")
  )
  .addError(InvalidRequest)
  .addError(ServiceUnavailable)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Backfills") {}

/** The connect flow's browser-facing pages: no API key, the link token is the credential. */
export class LinkApi extends HttpApiGroup.make("link")
  .add(
    HttpApiEndpoint.get("start")`/v2/link/${ProviderSlug}/start`
      .setUrlParams(Schema.Struct({ token: Schema.String }))
      .addSuccess(HttpApiSchema.Empty(302))
      .annotate(OpenApi.Description, "Redirects to the provider's consent page.")
  )
  .add(
    HttpApiEndpoint.get("callback")`/v2/link/${ProviderSlug}/callback`
      .addSuccess(HttpApiSchema.Empty(302))
      .annotate(OpenApi.Description, "The provider's OAuth callback; register `<WEARFLOW_PUBLIC_URL>/v2/link/<provider>/callback` in the provider's portal.")
  )
  .annotate(OpenApi.Title, "Connect flow") {}

/** Paging of the data API: summaries and timeseries samples, a page at a time. */
export const DATA_PAGES = {
  summaries: { default: 100, max: 1000, unpaged: 10_000 },
  samples: { default: 1000, max: 10_000, unpaged: 100_000 }
} as const

const DateRange = (pages: { readonly default: number; readonly max: number; readonly unpaged: number }) =>
  Schema.Struct({
    start_date: Schema.String.annotations({ description: "YYYY-MM-DD (whole local day) or ISO 8601 date-time" }),
    end_date: Schema.optional(Schema.String.annotations({ description: "inclusive; YYYY-MM-DD or ISO 8601 date-time" })),
    ...PageParams(pages.max)
  })

const pagingNote = (pages: { readonly default: number; readonly unpaged: number }, shape: string) =>
  `Without limit or cursor, the whole range in one answer (at most ${pages.unpaged} items: a larger range is refused with 400, page it). ` +
  `With either, a page of limit items (default ${pages.default}) ${shape}; follow next_cursor (null on the last page).`

const summary = <const R extends string, S extends Schema.Schema.Any>(resource: R, item: S) =>
  HttpApiEndpoint.get(resource, `/v2/summary/${resource}/:user_id`)
    .setPath(Schema.Struct({ user_id: Schema.String }))
    .setUrlParams(DateRange(DATA_PAGES.summaries))
    .addSuccess(
      Schema.Struct({ [resource]: Schema.Array(item), next_cursor: Schema.optional(Schema.NullOr(Schema.String)) } as {
        [K in R]: Schema.Array$<S>
      } & { next_cursor: Schema.optional<Schema.NullOr<typeof Schema.String>> })
    )
    .addError(NotFound)
    .annotate(OpenApi.Description, pagingNote(DATA_PAGES.summaries, `as { ${resource}: [...], next_cursor }`))

const timeseries = <const R extends TimeseriesResource>(resource: R) => {
  const sample = Resources[resource].schema as (typeof Resources)[R]["schema"]
  return HttpApiEndpoint.get(resource, `/v2/timeseries/:user_id/${resource}`)
    .setPath(Schema.Struct({ user_id: Schema.String }))
    .setUrlParams(DateRange(DATA_PAGES.samples))
    .addSuccess(Schema.Union(Schema.Array(sample), Schema.Struct({ data: Schema.Array(sample), next_cursor: Schema.NullOr(Schema.String) })))
    .addError(NotFound)
    .annotate(OpenApi.Description, pagingNote(DATA_PAGES.samples, "as { data: [...], next_cursor }"))
}

export class DataApi extends HttpApiGroup.make("data")
  .add(summary("activity", Activity))
  .add(summary("sleep", Sleep))
  .add(summary("workouts", Workout))
  .add(summary("body", Body))
  .add(summary("menstrual_cycle", MenstrualCycle))
  .add(summary("workout_stream", WorkoutStream))
  .add(timeseries("heartrate"))
  .add(timeseries("hrv"))
  .add(timeseries("stress_level"))
  .add(timeseries("blood_oxygen"))
  .add(timeseries("respiratory_rate"))
  .add(timeseries("blood_pressure"))
  .add(timeseries("body_temperature"))
  .add(timeseries("body_temperature_delta"))
  .add(timeseries("vo2_max"))
  .add(timeseries("weight"))
  .add(timeseries("fat"))
  .add(timeseries("steps"))
  .add(timeseries("calories_active"))
  .add(timeseries("distance"))
  .addError(InvalidRequest)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Data") {}

export class WearflowApi extends HttpApi.make(ApiId)
  .add(UsersApi)
  .add(UserLifecycleApi)
  .add(LinkApi)
  .add(DataApi)
  .add(BackfillApi)
  .add(TeamsApi)
  .add(DashboardApi)
  .add(IntrospectApi)
  .add(AlertsApi)
  .add(AdminAlertsApi)
  .annotate(OpenApi.Title, "Wearflow")
  .annotate(OpenApi.Description, "Self-hosted wearable-data pipeline: provider webhooks in, normalized data out.") {}

/** The API with the groups of the plugins this process runs (their handlers come with their layers). */
export const withPluginRoutes = (groups: ReadonlyArray<HttpApiGroup.HttpApiGroup.Any>): typeof WearflowApi =>
  groups.reduce<HttpApi.HttpApi.Any>((api, group) => (api as typeof WearflowApi).add(group as never), WearflowApi) as typeof WearflowApi
