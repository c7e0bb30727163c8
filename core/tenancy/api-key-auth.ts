/**
 * The API-key checks behind `ApiKeyAuth` and `AdminKeyAuth` (core/http.ts). Every request asks
 * the database (ApiKeys.authenticate), so a key revoked through any process is refused by
 * every process at once. A key that is unknown, revoked or expired is a 401; a read-only key
 * on anything but GET/HEAD, and a team key on an admin route, a 403. A database that does not
 * answer within WEARFLOW_DATABASE_WAIT is a 503, not a hung request. The app's groups and
 * plugins' groups share them.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, Layer, Option, type Redacted } from "effect"
import { ApiKeys, type KeyIdentity } from "./api-keys.ts"
import { AdminKeyAuth, ApiKeyAuth, Forbidden, unavailable, Unauthorized, within } from "../http.ts"
import { DatabaseWait } from "../storage/database.ts"

const READS = new Set(["GET", "HEAD"])

/** The key's identity, refused when it opens nothing now or may not make this request's kind of call. */
const check = Effect.gen(function* () {
  const keys = yield* ApiKeys
  const deadline = within(yield* DatabaseWait)
  return (key: Redacted.Redacted<string>) =>
    keys.authenticate(key).pipe(
      Effect.mapError(unavailable),
      deadline,
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new Unauthorized({ message: "missing, unknown, revoked or expired x-api-key" })),
        onSome: (identity) => Effect.succeed(identity)
      })),
      Effect.tap((identity) =>
        identity.scope === "read_only"
          ? Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
            READS.has(request.method) ? Effect.void : Effect.fail(new Forbidden({ message: "this API key is read-only" })))
          : Effect.void
      )
    )
})

const adminOnly = (identity: KeyIdentity) =>
  identity.admin ? Effect.succeed({ keyId: identity.keyId, teamId: identity.teamId }) : Effect.fail(new Forbidden({ message: "this route needs an admin API key" }))

export const layer = Layer.effect(
  ApiKeyAuth,
  Effect.map(check, (authenticate) => ApiKeyAuth.of({ apiKey: (key) => Effect.map(authenticate(key), ({ scope, teamId }) => ({ teamId, readOnly: scope === "read_only" })) }))
).pipe(Layer.provide(ApiKeys.Default))

export const layerAdmin = Layer.effect(
  AdminKeyAuth,
  Effect.map(check, (authenticate) => AdminKeyAuth.of({ apiKey: (key) => Effect.flatMap(authenticate(key), adminOnly) }))
).pipe(Layer.provide(ApiKeys.Default))
