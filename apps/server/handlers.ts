/**
 * Handlers for the app's own groups (users, data) and the API-key security middleware.
 * Core failures map to wire errors here: unknown users are 404 (also across teams, so a team
 * cannot probe another team's ids), storage outages 503.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Accounts } from "@wearflow/core/accounts"
import { Conflict, InvalidRequest, NotFound, ServiceUnavailable, Unauthorized } from "@wearflow/core/http"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import type { SummaryResource, TimeseriesResource } from "@wearflow/core/schema"
import { Effect, Layer, Option } from "effect"
import { ApiKeyAuth, CurrentTeam, WearflowApi } from "./Api.ts"

const unavailable = () => new ServiceUnavailable({ message: "storage unavailable; retry later", retryable: true })
const notFound = (e: { readonly userId: string }) => new NotFound({ message: `user ${e.userId} not found` })

export const ApiKeyAuthLive = Layer.effect(
  ApiKeyAuth,
  Effect.gen(function* () {
    const accounts = yield* Accounts
    return {
      apiKey: (key) =>
        accounts.teamForApiKey(key).pipe(
          Effect.mapError(unavailable),
          Effect.flatMap(
            Option.match({
              onNone: () => Effect.fail(new Unauthorized({ message: "missing or unknown x-api-key" })),
              onSome: (teamId) => Effect.succeed({ teamId })
            })
          )
        )
    }
  })
)

export const UsersLive = HttpApiBuilder.group(WearflowApi, "users", (handlers) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    return handlers
      .handle("create", ({ payload }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const user = yield* accounts.createUser(teamId, payload.client_user_id)
          return { user_id: user.user_id, client_user_id: user.client_user_id }
        }).pipe(
          Effect.catchTags({
            UserExists: (e) => Effect.fail(new Conflict({ message: "a user with this client_user_id exists", user_id: e.userId })),
            SqlError: () => Effect.fail(unavailable())
          })
        ))
      .handle("get", ({ path }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const user = yield* accounts.getUser(teamId, path.user_id)
          const connections = yield* accounts.connectionsOf(user.user_id)
          return {
            user_id: user.user_id,
            team_id: user.team_id,
            client_user_id: user.client_user_id,
            created_on: user.created_at,
            connected_sources: connections.map((c) => ({
              provider: c.provider,
              provider_user_id: c.provider_user_id,
              status: c.status,
              scopes: c.scopes,
              created_on: c.created_at
            }))
          }
        }).pipe(Effect.catchTags({ UserNotFound: (e) => Effect.fail(notFound(e)), SqlError: () => Effect.fail(unavailable()) })))
      .handle("linkGarmin", ({ path, payload }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const { connection, replayed } = yield* accounts.link(teamId, path.user_id, "garmin", payload.provider_user_id, {
            accessToken: payload.oauth2?.access_token ?? payload.oauth1?.token,
            refreshToken: payload.oauth2?.refresh_token,
            tokenSecret: payload.oauth1?.token_secret,
            accessTokenExpiresAt: payload.oauth2?.expires_at,
            scopes: payload.oauth2?.scopes
          })
          yield* Effect.logInfo("Garmin connection linked").pipe(Effect.annotateLogs({ user_id: path.user_id, replayed }))
          return {
            user_id: path.user_id,
            provider: connection.provider,
            provider_user_id: connection.provider_user_id,
            status: connection.status,
            replayed_notifications: replayed
          }
        }).pipe(
          Effect.catchTags({
            UserNotFound: (e) => Effect.fail(notFound(e)),
            ProviderUserTaken: () => Effect.fail(new Conflict({ message: "this Garmin account is linked in another team" })),
            SqlError: () => Effect.fail(unavailable()),
            PersistedQueueError: () => Effect.fail(unavailable()),
            ParseError: () => Effect.fail(unavailable())
          })
        ))
  })
)

export const DataLive = HttpApiBuilder.group(WearflowApi, "data", (handlers) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const query = yield* DataQuery

    /** Resolves the user within the caller's team and the date range, or fails on the wire. */
    const scope = (userId: string, params: { readonly start_date: string; readonly end_date?: string | undefined }) =>
      Effect.gen(function* () {
        const { teamId } = yield* CurrentTeam
        const range = yield* Effect.mapError(parseDateRange(params.start_date, params.end_date), (e) => new InvalidRequest({ message: e.message }))
        const user = yield* accounts.getUser(teamId, userId)
        return { user, range }
      })

    const summary = <R extends SummaryResource>(resource: R) =>
      ({ path, urlParams }: { readonly path: { readonly user_id: string }; readonly urlParams: { readonly start_date: string; readonly end_date?: string | undefined } }) =>
        Effect.gen(function* () {
          const { user, range } = yield* scope(path.user_id, urlParams)
          const items = yield* query.summaries(user.user_id, resource, range)
          return { [resource]: items } as never
        }).pipe(Effect.catchTags({ UserNotFound: (e) => Effect.fail(notFound(e)), SqlError: () => Effect.fail(unavailable()) }))

    const series = <R extends TimeseriesResource>(resource: R) =>
      ({ path, urlParams }: { readonly path: { readonly user_id: string }; readonly urlParams: { readonly start_date: string; readonly end_date?: string | undefined } }) =>
        Effect.gen(function* () {
          const { user, range } = yield* scope(path.user_id, urlParams)
          return yield* query.samples(user.user_id, resource, range)
        }).pipe(Effect.catchTags({ UserNotFound: (e) => Effect.fail(notFound(e)), SqlError: () => Effect.fail(unavailable()) }))

    return handlers
      .handle("activity", summary("activity"))
      .handle("sleep", summary("sleep"))
      .handle("workouts", summary("workouts"))
      .handle("body", summary("body"))
      .handle("menstrual_cycle", summary("menstrual_cycle"))
      .handle("workout_stream", summary("workout_stream"))
      .handle("heartrate", series("heartrate"))
      .handle("hrv", series("hrv"))
      .handle("stress_level", series("stress_level"))
      .handle("blood_oxygen", series("blood_oxygen"))
      .handle("respiratory_rate", series("respiratory_rate"))
      .handle("blood_pressure", series("blood_pressure"))
      .handle("body_temperature_delta", series("body_temperature_delta"))
      .handle("vo2_max", series("vo2_max"))
      .handle("weight", series("weight"))
      .handle("fat", series("fat"))
      .handle("steps", series("steps"))
      .handle("calories_active", series("calories_active"))
      .handle("distance", series("distance"))
  })
)
