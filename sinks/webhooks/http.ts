/** Handlers of the webhook endpoints API: the sink's services, mapped to wire errors. */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { ApiId, CurrentTeam, Forbidden, InvalidRequest, NotFound, ServiceUnavailable, unavailable, within } from "@wearflow/core/http"
import { decodeCursor, encodeCursor } from "@wearflow/core/paging"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Effect, Either, Option, Redacted, Schema } from "effect"
import { ENDPOINTS_PAGE, RotateSecret, WebhooksApi } from "./Api.ts"
import { WebhookEndpoints } from "./endpoints.ts"

/** The sink's failures as wire errors; messages never carry secrets or payloads. */
const wire = <A, R>(
  effect: Effect.Effect<A, { readonly _tag: string; readonly message: string }, R>
): Effect.Effect<A, NotFound | InvalidRequest | ServiceUnavailable, R> =>
  Effect.catchAll(effect, (e): Effect.Effect<never, NotFound | InvalidRequest | ServiceUnavailable> => {
    switch (e._tag) {
      case "EndpointNotFound":
      case "MessageNotFound":
        return Effect.fail(new NotFound({ message: e.message }))
      case "EndpointRefused":
      case "InvalidEndpoint":
        return Effect.fail(new InvalidRequest({ message: e.message }))
      default:
        return Effect.fail(unavailable())
    }
  })

const team = Effect.map(CurrentTeam, (t) => t.teamId)
/** The team, for a route that answers with a secret (signing secret, custom headers): read-only keys may not. */
const teamWithSecrets = Effect.flatMap(CurrentTeam, (t) =>
  t.readOnly === true ? Effect.fail(new Forbidden({ message: "this API key is read-only; secrets need a full key" })) : Effect.succeed(t.teamId))

/** The rotate route's body: none, or `{key?}`. */
const rotateBody = Effect.gen(function* () {
  const text = yield* Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.text).pipe(
    Effect.mapError(() => new InvalidRequest({ message: "invalid request: the body could not be read" }))
  )
  if (text.trim().length === 0) return Option.none<Redacted.Redacted<string>>()
  const body = yield* Schema.decodeUnknown(Schema.parseJson(RotateSecret))(text).pipe(
    Effect.mapError(() => new InvalidRequest({ message: "invalid request: the body must be {} or {\"key\": \"whsec_...\"}" }))
  )
  return Option.fromNullable(body.key)
})

/** The group built against Wearflow's API id, so the app can mount it in its HttpApi. */
const WebhooksHttpApi = HttpApi.make(ApiId).add(WebhooksApi)

export const WebhooksLive = HttpApiBuilder.group(WebhooksHttpApi, "webhooks", (handlers) =>
  Effect.gen(function* () {
    const endpoints = yield* WebhookEndpoints
    const deadline = within(yield* DatabaseWait)
    const call = <A, R>(effect: Effect.Effect<A, { readonly _tag: string; readonly message: string }, R>) => deadline(wire(effect))
    return handlers
      .handle("create", ({ payload }) => call(Effect.flatMap(team, (t) => endpoints.create(t, payload))))
      .handle("list", ({ urlParams }) => call(Effect.flatMap(team, (t) => endpoints.listPage(t, urlParams.limit ?? ENDPOINTS_PAGE.default, urlParams.cursor))))
      .handle("get", ({ path }) => call(Effect.flatMap(team, (t) => endpoints.get(t, path.id))))
      .handle("update", ({ path, payload }) => call(Effect.flatMap(team, (t) => endpoints.update(t, path.id, payload))))
      .handle("delete", ({ path }) => call(Effect.flatMap(team, (t) => endpoints.remove(t, path.id))))
      .handle("headers", ({ path }) => Effect.flatMap(teamWithSecrets, (t) => call(endpoints.headers(t, path.id))).pipe(Effect.map((headers) => ({ headers }))))
      .handle("setHeaders", ({ path, payload }) =>
        call(Effect.flatMap(team, (t) => endpoints.setHeaders(t, path.id, payload.headers))).pipe(Effect.map((headers) => ({ headers }))))
      .handle("secret", ({ path }) => Effect.flatMap(teamWithSecrets, (t) => call(endpoints.secret(t, path.id))).pipe(Effect.map((key) => ({ key: Redacted.value(key) }))))
      .handle("rotateSecret", ({ path }) =>
        call(Effect.flatMap(Effect.all([team, rotateBody]), ([t, key]) => endpoints.rotateSecret(t, path.id, key))).pipe(
          Effect.map((key) => ({ key: Redacted.value(key) }))
        ))
      .handle("messages", ({ path, urlParams }) =>
        Effect.gen(function* () {
          // The cursor is opaque: the last message's sequence number, encoded.
          const before = urlParams.cursor === undefined ? undefined : Either.getOrUndefined(decodeCursor(urlParams.cursor, 1))?.[0]
          if (urlParams.cursor !== undefined && (before === undefined || !/^\d{1,19}$/.test(before))) {
            return yield* new InvalidRequest({ message: "cursor is not one this API gave out" })
          }
          const page = yield* call(Effect.flatMap(team, (t) =>
            endpoints.messages(t, path.id, {
              limit: urlParams.limit ?? 50,
              ...(urlParams.status ? { status: urlParams.status } : {}),
              ...(before ? { before } : {})
            })))
          return { data: page.data, next_cursor: page.next_cursor === null ? null : encodeCursor([page.next_cursor]) }
        }))
      .handle("recover", ({ path, payload }) =>
        call(Effect.flatMap(team, (t) => endpoints.recover(t, path.id, payload.since))).pipe(Effect.map((recovered) => ({ recovered }))))
      .handle("resend", ({ path }) =>
        call(Effect.flatMap(team, (t) => endpoints.resend(t, path.message_id))).pipe(
          Effect.as({ message_id: path.message_id, status: "pending" as const })
        ))
      .handle("test", ({ path }) => call(Effect.flatMap(team, (t) => endpoints.test(t, path.id))).pipe(Effect.map((message_id) => ({ message_id }))))
  }))
