/**
 * Fetching a PING item (a pointer): GET its callbackURL, off the request path. OAuth 2.0 era URLs carry
 * their own token (the user's Bearer token is added when known); OAuth 1.0a era URLs are
 * signed with the consumer key/secret and the user's token/secret. Only declared hosts are
 * reached (the plugin host refuses others), so a callbackURL elsewhere is refused, not fetched.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { type Credentials, type Fetched, FetchError, type NotificationItem } from "@wearflow/core/provider"
import { Duration, Effect, Option } from "effect"
import { consumerOf, type GarminConfig } from "./config.ts"
import { authorizationHeader } from "./oauth1.ts"
import { usableOAuth1 } from "./state.ts"

const PULL_TIMEOUT = Duration.seconds(60)

interface PingItem {
  readonly callbackURL: string
  readonly summaryId?: unknown
  readonly activityId?: unknown
  readonly fileType?: unknown
}

/** Garmin's error text (e.g. InvalidPullTokenException), short, for the item's problem report. */
const garminError = (response: HttpClientResponse.HttpClientResponse) =>
  response.text.pipe(
    Effect.map((text) => {
      const parsed = (() => {
        try {
          return (JSON.parse(text) as { errorMessage?: unknown }).errorMessage
        } catch {
          return undefined
        }
      })()
      return typeof parsed === "string" ? `: ${parsed.slice(0, 120)}` : ""
    }),
    Effect.orElseSucceed(() => "")
  )

const failureOf = (response: HttpClientResponse.HttpClientResponse) =>
  Effect.flatMap(garminError(response), (detail) => {
    const status = response.status
    if (status === 429 || status >= 500) return Effect.fail(new FetchError({ message: `Garmin answered ${status}${detail}`, retryable: true, status }))
    if (status === 401 || status === 403) return Effect.fail(new FetchError({ message: `not authorized to pull (${status})${detail}`, retryable: false, status }))
    if (status === 410) return Effect.fail(new FetchError({ message: "gone: the callback URL expired or was already used (410)", retryable: false, status }))
    return Effect.fail(new FetchError({ message: `Garmin answered ${status}${detail}`, retryable: false, status }))
  })

export const makePull = (client: HttpClient.HttpClient, config: GarminConfig) =>
  (item: NotificationItem, credentials: Credentials | undefined): Effect.Effect<Fetched, FetchError> =>
    Effect.gen(function* () {
      const raw = item.raw as PingItem
      const url = raw.callbackURL
      if (!URL.canParse(url)) return yield* new FetchError({ message: "callbackURL is not a URL", retryable: false })
      const hasPullToken = new URL(url).searchParams.has("token")
      let request = HttpClientRequest.get(url)
      const oauth1 = usableOAuth1(credentials)
      if (!hasPullToken && oauth1) {
        // OAuth 1.0a era: no token in the URL; the request itself is signed.
        const consumer = consumerOf(config)
        if (Option.isNone(consumer)) {
          return yield* new FetchError({ message: "GARMIN_CLIENT_ID and GARMIN_CLIENT_SECRET are needed to sign OAuth 1.0a pulls", retryable: false })
        }
        const header = authorizationHeader(consumer.value, { key: oauth1.token, secret: oauth1.secret }, { method: "GET", url })
        request = HttpClientRequest.setHeader(request, "authorization", header)
      } else if (credentials?.bearer) {
        request = HttpClientRequest.bearerToken(request, credentials.bearer)
      }
      const response = yield* client.execute(request).pipe(
        Effect.timeoutFail({ duration: PULL_TIMEOUT, onTimeout: () => new FetchError({ message: "Garmin did not answer in time", retryable: true }) }),
        Effect.catchTag("RequestError", (error) => {
          if ((error.cause as { _tag?: string } | undefined)?._tag === "NetPermissionDenied") {
            return Effect.logWarning("refused a callbackURL outside Garmin's hosts").pipe(
              Effect.annotateLogs({ host: new URL(url).host, key: item.key }),
              Effect.zipRight(Effect.fail(new FetchError({ message: `callbackURL host ${new URL(url).host} is not a Garmin host`, retryable: false })))
            )
          }
          return Effect.fail(new FetchError({ message: `could not reach Garmin (${error.reason})`, retryable: true }))
        }),
        Effect.catchTag("ResponseError", (error) => Effect.fail(new FetchError({ message: `Garmin's answer could not be read (${error.reason})`, retryable: true })))
      )
      if (response.status !== 200) return yield* failureOf(response)
      const unreadable = () => new FetchError({ message: "Garmin's answer could not be read", retryable: true, status: 200 })
      if (item.key === "activityFiles") {
        const bytes = yield* Effect.mapError(response.arrayBuffer, unreadable)
        const contentType = response.headers["content-type"] ?? "application/octet-stream"
        return {
          _tag: "File",
          sourceId: String(raw.summaryId ?? raw.activityId ?? `file-${item.index}`),
          activityId: raw.activityId === undefined ? undefined : String(raw.activityId),
          fileType: typeof raw.fileType === "string" ? raw.fileType : "FIT",
          contentType,
          bytes: new Uint8Array(bytes)
        } satisfies Fetched
      }
      const records = yield* Effect.mapError(response.json, unreadable)
      if (!Array.isArray(records)) return yield* new FetchError({ message: "Garmin's answer is not a list of summaries", retryable: false, status: 200 })
      // Stored as a PUSH body would be: its items are the records.
      return { _tag: "Records", kind: "push", key: item.key, records } satisfies Fetched
    }).pipe(Effect.scoped, Effect.withSpan("Garmin.pull"))
