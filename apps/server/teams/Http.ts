/**
 * Handlers of the admin API (teams/Api.ts). Each change is logged with the ids of the key and
 * team it touched and of the admin key that made it, never a secret.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Conflict, CurrentAdmin, InvalidRequest, NotFound, unavailable, within } from "@wearflow/core/http"
import { type ApiKeyView, ApiKeys, type CreatedApiKey } from "@wearflow/core/tenancy/api-keys"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Duration, Effect, Redacted } from "effect"
import { WearflowApi } from "../Api.ts"

const withSecret = (created: CreatedApiKey) => {
  const { key, ...view } = created
  return { ...view, key: Redacted.value(key) }
}

/** Core failures as wire errors; their messages name what is wrong, never the caller's values. */
const wireErrors = {
  TeamNotFound: () => Effect.fail(new NotFound({ message: "team not found" })),
  ApiKeyNotFound: () => Effect.fail(new NotFound({ message: "API key not found in this team" })),
  ApiKeyInactive: (e: { readonly message: string }) => Effect.fail(new Conflict({ message: e.message })),
  InvalidCursor: (e: { readonly message: string }) => Effect.fail(new InvalidRequest({ message: e.message })),
  InvalidKeyRequest: (e: { readonly message: string }) => Effect.fail(new InvalidRequest({ message: e.message })),
  SqlError: () => Effect.fail(unavailable())
} as const

const audit = (message: string, key: ApiKeyView) =>
  Effect.flatMap(CurrentAdmin, (admin) => Effect.logInfo(message).pipe(Effect.annotateLogs({ team_id: key.team_id, key_id: key.id, by_key_id: admin.keyId })))

export const TeamsLive = HttpApiBuilder.group(WearflowApi, "teams", (handlers) =>
  Effect.gen(function* () {
    const keys = yield* ApiKeys
    const deadline = within(yield* DatabaseWait)
    return handlers
      .handle("createTeam", ({ payload }) =>
        keys.createTeam(payload.name).pipe(
          Effect.tap((team) => Effect.flatMap(CurrentAdmin, (admin) => Effect.logInfo("team created").pipe(Effect.annotateLogs({ team_id: team.id, by_key_id: admin.keyId })))),
          Effect.catchTags({ SqlError: wireErrors.SqlError }),
          deadline
        ))
      .handle("listTeams", ({ urlParams }) =>
        keys.listTeams(urlParams).pipe(
          Effect.map((page) => ({ data: page.data, next_cursor: page.nextCursor })),
          Effect.catchTags({ InvalidCursor: wireErrors.InvalidCursor, SqlError: wireErrors.SqlError }),
          deadline
        ))
      .handle("createKey", ({ path, payload }) =>
        keys.createKey(path.team_id, { label: payload.label, scope: payload.scope, admin: payload.admin, expiresAt: payload.expires_at }).pipe(
          Effect.tap((created) => audit("API key created", created)),
          Effect.map(withSecret),
          Effect.catchTags({ TeamNotFound: wireErrors.TeamNotFound, InvalidKeyRequest: wireErrors.InvalidKeyRequest, SqlError: wireErrors.SqlError }),
          deadline
        ))
      .handle("listKeys", ({ path, urlParams }) =>
        keys.listKeys(path.team_id, urlParams).pipe(
          Effect.map((page) => ({ data: page.data, next_cursor: page.nextCursor })),
          Effect.catchTags({ TeamNotFound: wireErrors.TeamNotFound, InvalidCursor: wireErrors.InvalidCursor, SqlError: wireErrors.SqlError }),
          deadline
        ))
      .handle("revokeKey", ({ path }) =>
        keys.revokeKey(path.team_id, path.key_id).pipe(
          Effect.tap((key) => audit("API key revoked", key)),
          Effect.catchTags({ ApiKeyNotFound: wireErrors.ApiKeyNotFound, SqlError: wireErrors.SqlError }),
          deadline
        ))
      .handle("rotateKey", ({ path, payload }) =>
        keys.rotateKey(path.team_id, path.key_id, payload.overlap_seconds === undefined ? undefined : Duration.seconds(payload.overlap_seconds)).pipe(
          Effect.tap(({ key, previous }) => Effect.zipRight(audit("API key rotated", previous), audit("API key created by rotation", key))),
          Effect.map(({ key, previous }) => ({ key: withSecret(key), previous })),
          Effect.catchTags({
            ApiKeyNotFound: wireErrors.ApiKeyNotFound,
            ApiKeyInactive: wireErrors.ApiKeyInactive,
            InvalidKeyRequest: wireErrors.InvalidKeyRequest,
            SqlError: wireErrors.SqlError
          }),
          deadline
        ))
  })
)
