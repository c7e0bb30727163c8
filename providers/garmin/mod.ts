/**
 * The Garmin provider plugin: Health and Activity API PUSH and PING notifications.
 *
 * The request path only verifies the `garmin-client-id` header, checks that the body is a JSON
 * object, commits it to the inbox and answers. Normalization, PING pulls and lifecycle
 * changes run in the ingest worker through the `GarminProvider` this plugin builds, which also
 * carries the OAuth connect flows and token upkeep (auth.ts).
 */
import { HttpApi, HttpApiBuilder, HttpClient, HttpMiddleware, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { constantTimeEquals } from "@wearflow/core/crypto"
import { ApiId, InvalidRequest, ServiceUnavailable, Unauthorized } from "@wearflow/core/http"
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

const webhooks = HttpApiBuilder.group(GarminHttpApi, "garmin", (handlers) =>
  Effect.gen(function* () {
    const config = yield* manifest.config
    const inbox = yield* Inbox
    const databaseWait = yield* DatabaseWait
    if (Option.isNone(config.clientId)) {
      yield* Effect.logWarning("GARMIN_CLIENT_ID is not set: every Garmin notification will be refused with 401")
    }

    const authorize = (header: string | undefined) =>
      Option.isSome(config.clientId) && header !== undefined && constantTimeEquals(header, Redacted.value(config.clientId.value))
        ? Effect.void
        : Effect.fail(new Unauthorized({ message: "missing or wrong garmin-client-id header" }))

    /**
     * What a 200 needs and nothing more: the header, a body that is a JSON object, the body
     * committed. Items are checked by the ingest worker, which records their problems on the
     * inbox row (Garmin never reads them), so the answer's `errors` stay empty.
     */
    const receive = (kind: NotificationKind) =>
      Effect.fn(`Garmin.${kind}`)(function* ({ request }: { readonly request: HttpServerRequest.HttpServerRequest }) {
        yield* authorize(request.headers["garmin-client-id"])
        const text = yield* Effect.mapError(request.text, () => new InvalidRequest({ message: "the request body could not be read" }))
        const body = yield* Either.mapLeft(inspect(text, inbox.partLimits), (message) => new InvalidRequest({ message }))
        const inboxId = yield* inbox.commit({
          provider: manifest.id,
          kind,
          body: text,
          itemCount: body.itemCount,
          items: body.items,
          redacted: body.redacted
        }).pipe(
          Effect.tapError((e) => Effect.logError("could not commit Garmin notification; answering 503", e.cause)),
          Effect.mapError(() => new ServiceUnavailable({ message: "notification not stored; retry later", retryable: true }))
        )
        // This line stands for the request's: the server's own line for it is left out.
        yield* HttpMiddleware.withLoggerDisabled(Effect.logInfo("Garmin notification stored").pipe(
          Effect.annotateLogs({ kind, inbox_id: inboxId, items: body.itemCount, ignored_keys: body.ignoredKeys, ignored_keys_omitted: body.ignoredKeysOmitted })
        ))
        // Answered as built: it is a NotificationAccepted by its type, so encoding it again buys nothing.
        return HttpServerResponse.unsafeJson({
          inbox_id: inboxId,
          accepted: body.accepted,
          ignored_keys: body.ignoredKeys,
          ignored_keys_omitted: body.ignoredKeysOmitted,
          errors: [],
          errors_omitted: 0
        } satisfies typeof NotificationAccepted.Type)
      }, (effect) =>
        effect.pipe(
          Effect.tapErrorTag("InvalidRequest", () => Metric.increment(rejected)),
          Effect.annotateLogs("plugin", manifest.id)
        ))

    return handlers
      .handleRaw("push", receive("push"))
      .handleRaw("ping", receive("ping"))
      .handle("health", () =>
        inbox.health.pipe(
          Effect.timeoutFail({ duration: databaseWait, onTimeout: () => new Error("no answer in time") }),
          Effect.as({ status: "ok" as const, provider: "garmin" as const }),
          Effect.mapError(() => new ServiceUnavailable({ message: "database unavailable", retryable: true }))
        ))
  })
)

export const layer = Layer.merge(webhooks, layerProvider)

export const plugin = {
  manifest,
  layer,
  provider: GarminProvider,
  providerLayer: layerProvider,
  routes: [GarminApi],
  commands: [migrateOAuth2]
} satisfies Plugin
