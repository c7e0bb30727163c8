/**
 * Notify-then-fetch: a notification names one changed document; it is fetched from
 * `/v2/usercollection/{collection}/{object_id}` with the connection's bearer token, off the
 * request path, and returned as a one-document page for the inbox. Only Oura's configured
 * host is reached (the plugin host refuses others). A `delete` names no pointer (it is a
 * deletion item, notifications.ts): nothing is fetched for it.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { type Credentials, type NotificationItem, FetchError, type Fetched } from "@wearflow/core/provider"
import { Duration, Effect } from "effect"
import { apiUrlOf, type OuraConfig } from "./config.ts"
import { collectionPath } from "./normalize.ts"
import { type OuraNotification, PAGE_KIND, pageOf } from "./notifications.ts"

const FETCH_TIMEOUT = Duration.seconds(60)

/** Nothing to store: the fetched body has no page. */
const nothing = (key: string): Fetched => ({ _tag: "Records", kind: PAGE_KIND, key, records: [] })

/** A failed answer as a FetchError; messages name the status, never Oura's body. */
const failureOf = (response: HttpClientResponse.HttpClientResponse): FetchError => {
  const status = response.status
  // Refreshing the token is core's job (Connections refreshes ahead of expiry); a 401 here
  // means the token is revoked or expired anyway, and retrying with it cannot help.
  if (status === 401) return new FetchError({ message: "Oura refused the access token (401): the connection needs a fresh token", retryable: false, status })
  if (status === 403) return new FetchError({ message: "Oura refused access (403): a scope is missing or the user's membership lapsed", retryable: false, status })
  if (status === 426) return new FetchError({ message: "Oura refused (426): the user's Oura app is too old to share this data type", retryable: false, status })
  if (status === 429) {
    // Oura says when its window reopens (seconds); the worker waits at least that long.
    const seconds = Number(response.headers["retry-after"])
    const retryAfter = Number.isFinite(seconds) && seconds > 0 ? Duration.seconds(Math.min(seconds, 600)) : undefined
    return new FetchError({ message: "Oura's rate limit was reached (429)", retryable: true, status, retryAfter })
  }
  if (status >= 500) return new FetchError({ message: `Oura answered ${status}`, retryable: true, status })
  return new FetchError({ message: `Oura answered ${status}`, retryable: false, status })
}

export const makeFetch = (client: HttpClient.HttpClient, config: OuraConfig) =>
  (item: NotificationItem, credentials: Credentials | undefined): Effect.Effect<Fetched, FetchError> =>
    Effect.gen(function* () {
      const notification = item.raw as OuraNotification
      if (credentials?.bearer === undefined) return yield* new FetchError({ message: "the Oura connection has no access token", retryable: false })
      const url = apiUrlOf(config.apiUrl, `/v2/usercollection/${collectionPath(item.key)}/${encodeURIComponent(notification.object_id)}`)
      const response = yield* client.execute(HttpClientRequest.bearerToken(HttpClientRequest.get(url), credentials.bearer)).pipe(
        Effect.timeoutFail({ duration: FETCH_TIMEOUT, onTimeout: () => new FetchError({ message: "Oura did not answer in time", retryable: true }) }),
        Effect.catchTag("RequestError", (error) => Effect.fail(new FetchError({ message: `could not reach Oura (${error.reason})`, retryable: true }))),
        Effect.catchTag("ResponseError", (error) => Effect.fail(new FetchError({ message: `Oura's answer could not be read (${error.reason})`, retryable: true })))
      )
      // Created and then removed before we asked: nothing to store, not an error.
      if (response.status === 404) return nothing(item.key)
      if (response.status !== 200) return yield* failureOf(response)
      const document = yield* Effect.mapError(response.json, () => new FetchError({ message: "Oura's answer could not be read", retryable: true, status: 200 }))
      if (typeof document !== "object" || document === null || Array.isArray(document)) {
        return yield* new FetchError({ message: "Oura's answer is not a document", retryable: false, status: 200 })
      }
      return { _tag: "Records", kind: PAGE_KIND, key: item.key, records: [pageOf(item.key, notification.user_id, [document])] } satisfies Fetched
    }).pipe(Effect.scoped, Effect.withSpan("Oura.fetch"))
