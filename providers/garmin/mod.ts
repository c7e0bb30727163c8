/**
 * The Garmin provider plugin: Health and Activity API PUSH and PING notifications.
 *
 * The request path only verifies the `garmin-client-id` header, checks that the body is a JSON
 * object, commits it to the inbox and answers. Normalization, PING pulls and lifecycle
 * changes run in the ingest worker through the `GarminProvider` this plugin builds, which also
 * carries the OAuth connect flows and token upkeep (auth.ts).
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { constantTimeEquals } from "@wearflow/core/crypto"
import { ApiId, rawJson, type RawRoute, ServiceUnavailable } from "@wearflow/core/http"
import { Inbox } from "@wearflow/core/pipeline/inbox"
import { DatabaseWait } from "@wearflow/core/storage/database"
import type { Manifest, Plugin } from "@wearflow/core/plugin"
import type { Provider } from "@wearflow/core/provider"
import { Context, Effect, Either, Layer, Metric, Option, Redacted } from "effect"
import { GarminApi, type NotificationAccepted } from "./Api.ts"
import { GarminConfig, GarminHosts } from "./config.ts"
import { normalizers } from "./normalize.ts"
import { inspect, itemsOf, lifecycleOf, type NotificationKind, problemsOf, redactToken } from "./notifications.ts"
import { makePull } from "./pull.ts"
import { makeAuth } from "./auth.ts"
import { makeBackfill } from "./backfill.ts"
import { linkPayload } from "./link.ts"
import { GarminAuthFlows, migrateOAuth2 } from "./commands.ts"
import { aliasesOf, legacyState } from "./state.ts"

export { GarminApi } from "./Api.ts"

export const manifest: Manifest<GarminConfig> = {
  id: "garmin",
  kind: "provider",
  version: "0.1.0",
  permissions: { net: GarminHosts, env: ["GARMIN_*"] },
  config: GarminConfig
}

/** The Garmin permission each produced resource needs (Garmin's consent screen toggles). */
export const resourceScopes: Readonly<Record<string, string>> = {
  activity: "HEALTH_EXPORT",
  sleep: "HEALTH_EXPORT",
  body: "HEALTH_EXPORT",
  heartrate: "HEALTH_EXPORT",
  hrv: "HEALTH_EXPORT",
  stress_level: "HEALTH_EXPORT",
  blood_oxygen: "HEALTH_EXPORT",
  respiratory_rate: "HEALTH_EXPORT",
  blood_pressure: "HEALTH_EXPORT",
  body_temperature_delta: "HEALTH_EXPORT",
  vo2_max: "HEALTH_EXPORT",
  weight: "HEALTH_EXPORT",
  fat: "HEALTH_EXPORT",
  steps: "HEALTH_EXPORT",
  calories_active: "HEALTH_EXPORT",
  distance: "HEALTH_EXPORT",
  workouts: "ACTIVITY_EXPORT",
  workout_stream: "ACTIVITY_EXPORT",
  menstrual_cycle: "MCT_EXPORT"
}

/** The Garmin Provider (normalizers, pulls, lifecycle), built with the plugin's sandboxed HttpClient. */
export class GarminProvider extends Context.Tag("wearflow/providers/GarminProvider")<GarminProvider, Provider>() {}

const layerAuth = Layer.effect(
  GarminAuthFlows,
  Effect.gen(function* () {
    return makeAuth(yield* HttpClient.HttpClient, yield* manifest.config)
  })
)

const layerGarminProvider = Layer.effect(
  GarminProvider,
  Effect.gen(function* () {
    const config = yield* manifest.config
    const client = yield* HttpClient.HttpClient
    const pull = makePull(client, config)
    const auth = yield* GarminAuthFlows
    return {
      id: manifest.id,
      name: "Garmin",
      itemsOf,
      problemsOf,
      normalizers,
      // Pulled records are stored like a PUSH body: without OAuth 1.0a tokens.
      fetch: (item, credentials) =>
        pull(item, credentials).pipe(
          Effect.map((pulled) => (pulled._tag === "Records" ? { ...pulled, records: pulled.records.map(redactPulled) } : pulled))
        ),
      lifecycle: lifecycleOf,
      requiredPermissions: ["HEALTH_EXPORT", "ACTIVITY_EXPORT"],
      resourceScopes,
      auth,
      backfill: { ...makeBackfill(client, config), forbiddenHint: "the user may not have granted historical data access (HISTORICAL_DATA_EXPORT)" },
      aliasesOf,
      legacyState,
      linkPayload
    } satisfies Provider
  })
)

/** The Provider and the auth flows it uses (the CLI's migrate-oauth2 needs the latter too). */
export const layerProvider = layerGarminProvider.pipe(Layer.provideMerge(layerAuth))

const redactPulled = (record: unknown) =>
  typeof record === "object" && record !== null && !Array.isArray(record) ? redactToken(record as Record<string, unknown>) : record

const rejected = Metric.counter("wearflow_notifications_rejected_total").pipe(Metric.tagged("provider", manifest.id))

/** The Garmin group built against Wearflow's API id, so the app can mount it in its HttpApi. */
const GarminHttpApi = HttpApi.make(ApiId).add(GarminApi)

/** Garmin's PUSH and PING endpoints, answered before the HttpApi router (see `RawRoute`). */
export class GarminRawRoutes extends Context.Tag("wearflow/providers/GarminRawRoutes")<GarminRawRoutes, ReadonlyArray<RawRoute>>() {}

const refusal = (status: 400 | 401, _tag: "InvalidRequest" | "Unauthorized", message: string) => ({ status, body: { _tag, message } })

const notStored = { _tag: "ServiceUnavailable", message: "notification not stored; retry later", retryable: true } as const

const layerRawRoutes = Layer.effect(
  GarminRawRoutes,
  Effect.gen(function* () {
    const config = yield* manifest.config
    const inbox = yield* Inbox
    if (Option.isNone(config.clientId)) {
      yield* Effect.logWarning("GARMIN_CLIENT_ID is not set: every Garmin notification will be refused with 401")
    }
    const authorized = (header: string | null) =>
      Option.isSome(config.clientId) && header !== null && constantTimeEquals(header, Redacted.value(config.clientId.value))

    /**
     * What a 200 needs and nothing more: the header, a body that is a JSON object, the body
     * committed. Items are checked by the ingest worker, which records their problems on the
     * inbox row (Garmin never reads them), so the answer's `errors` stay empty. Refusals name
     * what is wrong, never the request's values.
     */
    const receive = (kind: NotificationKind) => (request: Request): Effect.Effect<Response> =>
      Effect.gen(function* () {
        if (!authorized(request.headers.get("garmin-client-id"))) {
          return refusal(401, "Unauthorized", "missing or wrong garmin-client-id header")
        }
        const text = yield* Effect.either(Effect.tryPromise(() => request.text()))
        if (Either.isLeft(text)) return refusal(400, "InvalidRequest", "the request body could not be read")
        const body = inspect(text.right, inbox.partLimits)
        if (Either.isLeft(body)) return refusal(400, "InvalidRequest", body.left)
        const { accepted, ignoredKeys, ignoredKeysOmitted, itemCount, items, redacted } = body.right
        const stored = yield* Effect.either(inbox.commit({ provider: manifest.id, kind, body: text.right, itemCount, items, redacted }))
        if (Either.isLeft(stored)) {
          yield* Effect.logError("could not commit Garmin notification; answering 503", stored.left.cause)
          return { status: 503, body: notStored }
        }
        yield* Effect.logInfo("Garmin notification stored").pipe(
          Effect.annotateLogs({ kind, inbox_id: stored.right, items: itemCount, ignored_keys: ignoredKeys, ignored_keys_omitted: ignoredKeysOmitted })
        )
        // Answered as built: it is a NotificationAccepted by its type, so encoding it again buys nothing.
        return {
          status: 200,
          body: {
            inbox_id: stored.right,
            accepted,
            ignored_keys: ignoredKeys,
            ignored_keys_omitted: ignoredKeysOmitted,
            errors: [],
            errors_omitted: 0
          } satisfies typeof NotificationAccepted.Type
        }
      }).pipe(
        // The line of a refused request stands for the server's request line, which this route has not.
        Effect.tap(({ status }) =>
          status === 200 ? Effect.void : Effect.logInfo("Garmin notification refused").pipe(Effect.annotateLogs({ kind, status }))),
        Effect.tap(({ status }) => (status === 400 ? Metric.increment(rejected) : Effect.void)),
        Effect.map(({ body, status }) => rawJson(body, status)),
        Effect.annotateLogs("plugin", manifest.id)
      )

    return [
      { method: "POST", path: "/api/v1/webhooks/garmin/push", handle: receive("push") },
      { method: "POST", path: "/api/v1/webhooks/garmin/ping", handle: receive("ping") }
    ]
  })
)

/**
 * The Garmin group: the server answers PUSH and PING on their raw routes before the router
 * reaches these handlers; a request the raw routes do not match exactly (a test client
 * without the server) is answered here by the same code.
 */
const webhooks = HttpApiBuilder.group(GarminHttpApi, "garmin", (handlers) =>
  Effect.gen(function* () {
    const inbox = yield* Inbox
    const databaseWait = yield* DatabaseWait
    const routes = yield* GarminRawRoutes
    const viaRawRoute = (name: "push" | "ping") => ({ request }: { readonly request: HttpServerRequest.HttpServerRequest }) =>
      HttpServerRequest.toWeb(request).pipe(
        Effect.flatMap((web) => routes.find((route) => route.path.endsWith(`/${name}`))!.handle(web)),
        Effect.map((response) => HttpServerResponse.raw(response, { status: response.status })),
        Effect.orDie,
        HttpMiddleware.withLoggerDisabled
      )
    return handlers
      .handleRaw("push", viaRawRoute("push"))
      .handleRaw("ping", viaRawRoute("ping"))
      .handle("health", () =>
        inbox.health.pipe(
          Effect.timeoutFail({ duration: databaseWait, onTimeout: () => new Error("no answer in time") }),
          Effect.as({ status: "ok" as const, provider: "garmin" as const }),
          Effect.mapError(() => new ServiceUnavailable({ message: "database unavailable", retryable: true }))
        ))
  })
).pipe(Layer.provideMerge(layerRawRoutes))

export const layer = Layer.merge(webhooks, layerProvider)

export const plugin = {
  manifest,
  layer,
  provider: GarminProvider,
  providerLayer: layerProvider,
  routes: [GarminApi],
  rawRoutes: GarminRawRoutes,
  commands: [migrateOAuth2]
} satisfies Plugin
