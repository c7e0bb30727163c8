/**
 * Handlers for the app's own groups (users, data) and the API-key security middleware.
 * Core failures map to wire errors here: unknown users are 404 (also across teams, so a team
 * cannot probe another team's ids), storage outages 503.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Accounts, isUuid } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import { Backfills, interruptChain, startChain } from "@wearflow/core/backfill/backfills"
import { BackfillStatus } from "@wearflow/core/backfill/status"
import { SyncStatus } from "@wearflow/core/sync/status"
import { Connections, type LinkOutcome } from "@wearflow/core/connections/connections"
import { describeParseError } from "@wearflow/core/normalizer"
import { Providers } from "@wearflow/core/provider"
import { Conflict, InvalidRequest, NotFound, ServiceUnavailable, unavailable, within } from "@wearflow/core/http"
import { decodeCursor, pageOf } from "@wearflow/core/paging"
import { DataQuery, isSampleKey, isSummaryKey, parseDateRange } from "@wearflow/core/query"
import { DatabaseWait } from "@wearflow/core/storage/database"
import type { SummaryResource, TimeseriesResource } from "@wearflow/core/schema"
import { Duration, Effect, Option, Schema } from "effect"
import { BackfillConflict, CurrentTeam, DATA_PAGES, HISTORICAL_PULLS_PAGE, WearflowApi } from "./Api.ts"
import { deletedNotFound } from "./users/Http.ts"

/** The longest a provider call inside a request may take (the providers' own request timeout). */
const PROVIDER_WAIT = Duration.seconds(30)

// Error bodies name what was wrong, never the caller's value (ids, slugs, types).
const notFound = () => new NotFound({ message: "user not found" })
const unsupportedProvider = "this provider is not loaded, or has no connect flow for this oauth_version"

/** The provider's OAuth callback under the server's public URL. */
const callbackUrl = (publicUrl: string, provider: string) => `${publicUrl}/v2/link/${encodeURIComponent(provider)}/callback`

export const UsersLive = (publicUrl: string) => HttpApiBuilder.group(WearflowApi, "users", (handlers) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const connections = yield* Connections
    const providers = yield* Providers
    const wait = yield* DatabaseWait
    const deadline = within(wait)
    const deadlineWithProvider = within(Duration.sum(wait, PROVIDER_WAIT))
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
          }),
          deadline
        ))
      .handle("get", ({ path }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const user = yield* accounts.getUser(teamId, path.user_id)
          const connections = yield* links.connectionsOf(user.user_id)
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
        }).pipe(
          Effect.catchTags({
            UserNotFound: (e) => Effect.fail(e.deleted ? deletedNotFound() : notFound()),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadline
        ))
      .handle("link", ({ path, payload }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const provider = providers.get(path.provider)
          if (provider?.linkPayload === undefined) return yield* new NotFound({ message: "this provider is not loaded, or cannot link existing accounts" })
          const input = yield* Schema.decodeUnknown(provider.linkPayload, { errors: "all", onExcessProperty: "ignore" })(payload).pipe(
            Effect.mapError((error) => new InvalidRequest({ message: `invalid link payload: ${describeParseError(error)}` }))
          )
          const { connection, replayed, backfillId } = yield* links.link(teamId, path.user_id, provider, input.providerUserId, input.tokens, input.flow)
          yield* Effect.logInfo("provider connection linked").pipe(Effect.annotateLogs({ user_id: path.user_id, provider: provider.id, replayed }))
          if (backfillId !== undefined) yield* startChain(backfillId)
          return {
            user_id: path.user_id,
            provider: connection.provider,
            provider_user_id: connection.provider_user_id,
            status: connection.status,
            replayed_notifications: replayed
          }
        }).pipe(
          Effect.catchTags({
            UserNotFound: () => Effect.fail(notFound()),
            ProviderUserTaken: () => Effect.fail(new Conflict({ message: "this provider account is linked in another team" })),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadline
        ))
      .handle("disconnect", ({ path }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const result = yield* connections.disconnect(teamId, path.user_id, path.provider)
          yield* Effect.logInfo("provider disconnected").pipe(Effect.annotateLogs({ user_id: path.user_id, provider: path.provider, ...result }))
          return {
            user_id: path.user_id,
            provider: path.provider,
            status: "disconnected" as const,
            provider_deregistered: result.providerDeregistered,
            shared_account: result.sharedAccount
          }
        }).pipe(
          Effect.catchTags({
            UserNotFound: () => Effect.fail(notFound()),
            NotConnected: () => Effect.fail(new NotFound({ message: "the user has no connection to this provider" })),
            AuthError: (e) => Effect.fail(new ServiceUnavailable({ message: `${e.message}; nothing was changed, retry later`, retryable: true })),
            DecryptionError: () => Effect.fail(unavailable()),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadlineWithProvider
        ))
      .handle("linkToken", ({ payload }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const { token, expiresAt } = yield* connections.createLink(teamId, payload.user_id, payload.provider, {
            redirectUrl: payload.redirect_url,
            flow: payload.oauth_version
          })
          const start = new URL(`${publicUrl}/v2/link/${encodeURIComponent(payload.provider)}/start`)
          start.searchParams.set("token", token)
          return { link_token: token, link_web_url: start.toString(), expires_at: expiresAt.toISOString() }
        }).pipe(
          Effect.catchTags({
            UserNotFound: () => Effect.fail(notFound()),
            ProviderUnsupported: () => Effect.fail(new InvalidRequest({ message: unsupportedProvider })),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadline
        ))
  })
)

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** A minimal page for the user's browser when there is no redirect_url to send them to. */
const page = (status: number, title: string, message: string) =>
  HttpServerResponse.text(
    `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title>` +
      `<body style="font-family:system-ui;max-width:32rem;margin:4rem auto;padding:0 1rem"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>`,
    { status, contentType: "text/html; charset=utf-8" }
  )

/** Where the browser goes once a connect flow ends: the customer's redirect_url, or a page. */
const finished = (provider: string, outcome: LinkOutcome, redirectUrl: string | undefined) => {
  if (redirectUrl !== undefined) {
    const target = new URL(redirectUrl)
    target.searchParams.set("state", outcome._tag === "Connected" ? "success" : "error")
    target.searchParams.set("provider", provider)
    if (outcome._tag === "Failed") target.searchParams.set("error_type", outcome.errorType)
    return HttpServerResponse.redirect(target, { status: 302 })
  }
  return outcome._tag === "Connected"
    ? page(200, "Connected", "Your account is connected. You can close this window.")
    : page(400, "Not connected", outcome.message)
}

export const LinkLive = (publicUrl: string) => HttpApiBuilder.group(WearflowApi, "link", (handlers) =>
  Effect.gen(function* () {
    const connections = yield* Connections
    // Starting and finishing a connect flow may ask the provider (request token, token exchange).
    const deadline = within(Duration.sum(yield* DatabaseWait, PROVIDER_WAIT))
    const failedPage = (e: { readonly _tag: string; readonly message?: string }) =>
      Effect.succeed(
        e._tag === "LinkInvalid"
          ? page(404, "Link not usable", e.message ?? "")
          : e._tag === "ProviderUnsupported"
          ? page(404, "Link not usable", unsupportedProvider)
          : page(503, "Try again later", "The connection could not be started or finished right now. Please try again in a few minutes.")
      )
    return handlers
      .handleRaw("start", ({ path, urlParams }) =>
        connections.beginLink(path.provider, urlParams.token, callbackUrl(publicUrl, path.provider)).pipe(
          Effect.map((authorizeUrl) => HttpServerResponse.redirect(authorizeUrl, { status: 302 })),
          deadline,
          Effect.tapError((e) => Effect.logWarning("could not start a connect flow").pipe(Effect.annotateLogs({ provider: path.provider, error: e._tag, reason: e.message }))),
          Effect.catchAll(failedPage)
        ))
      .handleRaw("callback", ({ path, request }) =>
        Effect.gen(function* () {
          const query = Object.fromEntries(new URL(request.url, "http://callback").searchParams)
          const { outcome, redirectUrl } = yield* connections.finishLink(path.provider, query, callbackUrl(publicUrl, path.provider))
          if (outcome._tag === "Connected" && outcome.backfillId !== undefined) yield* startChain(outcome.backfillId)
          return finished(path.provider, outcome, redirectUrl)
        }).pipe(
          deadline,
          Effect.tapError((e) => Effect.logWarning("could not finish a connect flow").pipe(Effect.annotateLogs({ provider: path.provider, error: e._tag }))),
          Effect.catchAll(failedPage)
        ))
  })
)

/** The data API's query parameters: a date range, and optionally a page. */
interface DataParams {
  readonly start_date: string
  readonly end_date?: string | undefined
  readonly limit?: number | undefined
  readonly cursor?: string | undefined
}

const invalidCursor = () => new InvalidRequest({ message: "cursor is not one this API gave out" })

export const DataLive = HttpApiBuilder.group(WearflowApi, "data", (handlers) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const query = yield* DataQuery
    const deadline = within(yield* DatabaseWait)

    /** Resolves the user within the caller's team and the date range, or fails on the wire. */
    const scope = (userId: string, params: DataParams) =>
      Effect.gen(function* () {
        const { teamId } = yield* CurrentTeam
        const range = yield* Effect.mapError(parseDateRange(params.start_date, params.end_date), (e) => new InvalidRequest({ message: e.message }))
        const user = yield* accounts.getUser(teamId, userId)
        return { user, range }
      })

    /**
     * The rows to read: one more than the page (so the answer knows whether another follows),
     * or, unpaged, one more than the most one answer holds (so a larger range is refused).
     */
    const pageFor = (params: DataParams, pages: { readonly default: number; readonly unpaged: number }, keySize: number, isKey: (key: ReadonlyArray<string>) => boolean) =>
      Effect.gen(function* () {
        if (params.limit === undefined && params.cursor === undefined) return { paged: false, limit: pages.unpaged, read: { limit: pages.unpaged + 1 } } as const
        const after = params.cursor === undefined ? undefined : yield* Effect.mapError(decodeCursor(params.cursor, keySize), invalidCursor)
        if (after !== undefined && !isKey(after)) return yield* invalidCursor()
        const limit = params.limit ?? pages.default
        return { paged: true, limit, read: { limit: limit + 1, after } } as const
      })

    const tooLarge = (max: number) => new InvalidRequest({ message: `the range holds more than ${max} items; page it with limit and cursor` })

    const summary = <R extends SummaryResource>(resource: R) =>
      ({ path, urlParams }: { readonly path: { readonly user_id: string }; readonly urlParams: DataParams }) =>
        Effect.gen(function* () {
          const page = yield* pageFor(urlParams, DATA_PAGES.summaries, 3, isSummaryKey)
          const { user, range } = yield* scope(path.user_id, urlParams)
          const rows = yield* query.summaryRows(user.user_id, resource, range, page.read)
          if (!page.paged) {
            if (rows.length > page.limit) return yield* tooLarge(page.limit)
            return { [resource]: rows.map((r) => r.item) } as never
          }
          const { items, next } = pageOf(rows, page.limit, (r) => r.key)
          return { [resource]: items.map((r) => r.item), next_cursor: next } as never
        }).pipe(Effect.catchTags({ UserNotFound: () => Effect.fail(notFound()), SqlError: () => Effect.fail(unavailable()) }), deadline)

    const series = <R extends TimeseriesResource>(resource: R) =>
      ({ path, urlParams }: { readonly path: { readonly user_id: string }; readonly urlParams: DataParams }) =>
        Effect.gen(function* () {
          const page = yield* pageFor(urlParams, DATA_PAGES.samples, 2, isSampleKey)
          const { user, range } = yield* scope(path.user_id, urlParams)
          const rows = yield* query.sampleRows(user.user_id, resource, range, page.read)
          if (!page.paged) {
            if (rows.length > page.limit) return yield* tooLarge(page.limit)
            return rows.map((r) => r.item)
          }
          const { items, next } = pageOf(rows, page.limit, (r) => r.key)
          return { data: items.map((r) => r.item), next_cursor: next }
        }).pipe(Effect.catchTags({ UserNotFound: () => Effect.fail(notFound()), SqlError: () => Effect.fail(unavailable()) }), deadline)

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
      .handle("body_temperature", series("body_temperature"))
      .handle("body_temperature_delta", series("body_temperature_delta"))
      .handle("vo2_max", series("vo2_max"))
      .handle("weight", series("weight"))
      .handle("fat", series("fat"))
      .handle("steps", series("steps"))
      .handle("calories_active", series("calories_active"))
      .handle("distance", series("distance"))
  })
)

export const BackfillLive = HttpApiBuilder.group(WearflowApi, "backfill", (handlers) =>
  Effect.gen(function* () {
    const backfills = yield* Backfills
    const status = yield* BackfillStatus
    const syncs = yield* SyncStatus
    const accounts = yield* Accounts
    const deadline = within(yield* DatabaseWait)
    return handlers
      .handle("start", ({ path, payload }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const started = yield* backfills.requestFor(teamId, path.user_id, path.provider, payload)
          yield* startChain(started.backfillId)
          const skipped = started.alreadyRequested.length
          return {
            backfill_id: started.backfillId,
            status: "scheduled" as const,
            planned: started.planned,
            already_requested: started.alreadyRequested,
            message: skipped === 0
              ? `${started.planned.length} windows will be requested, one at a time`
              : `${started.planned.length} windows will be requested; ${skipped} ranges were already requested since the user connected and are left out (the provider does not send a range twice)`
          }
        }).pipe(
          Effect.catchTags({
            UserNotFound: () => Effect.fail(notFound()),
            BackfillNotFound: (e) => Effect.fail(new NotFound({ message: e.message })),
            BackfillConflict: (e) => Effect.fail(new BackfillConflict({ message: e.message, already_requested: e.alreadyRequested })),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadline
        ))
      .handle("cancel", ({ path }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const cancelled = yield* backfills.cancel(teamId, path.user_id, path.provider)
          if (Option.isNone(cancelled)) return yield* new NotFound({ message: "no backfill from this provider is running for this user" })
          yield* interruptChain(cancelled.value)
          return { backfill_id: cancelled.value, status: "cancelled" as const }
        }).pipe(Effect.catchTags({ UserNotFound: () => Effect.fail(notFound()), SqlError: () => Effect.fail(unavailable()) }), deadline))
      .handle("status", ({ urlParams }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const after = urlParams.cursor === undefined ? undefined : yield* Effect.mapError(decodeCursor(urlParams.cursor, 2), invalidCursor)
          if (after !== undefined && !isUuid(after[0]!)) return yield* invalidCursor()
          // An id that cannot be a user's matches none (and never reaches a uuid column).
          if (urlParams.user_id !== undefined && !isUuid(urlParams.user_id)) return { data: [], next_cursor: null }
          const limit = urlParams.limit ?? HISTORICAL_PULLS_PAGE.default
          const rows = yield* status.status(teamId, { userId: urlParams.user_id, provider: urlParams.provider }, {
            limit: limit + 1,
            after: after && [after[0]!, after[1]!]
          })
          const { items, next } = pageOf(rows, limit, (b) => [b.user_id, b.provider.slug])
          return { data: items, next_cursor: next }
        }).pipe(Effect.catchTags({ SqlError: () => Effect.fail(unavailable()) }), deadline))
      .handle("sync", ({ path }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const user = yield* accounts.getUser(teamId, path.user_id)
          const data = yield* syncs.list(teamId, user.user_id)
          return { data: data.map(({ user_id: _user, ...rest }) => rest) }
        }).pipe(Effect.catchTags({ UserNotFound: () => Effect.fail(notFound()), SqlError: () => Effect.fail(unavailable()) }), deadline))
  })
)
