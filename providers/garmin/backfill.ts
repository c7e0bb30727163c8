/**
 * Garmin backfill: asking Garmin to resend a user's history. A request answers 202 and the
 * data arrives later through the ordinary PING/PUSH notifications, so this module only asks
 * and classifies the answer; the chaining and the "is it done?" inference live in core.
 */
import { type HttpClient, HttpClientRequest } from "@effect/platform"
import type { BackfillAnswer, BackfillType, NotificationItem, ProviderBackfill } from "@wearflow/core/provider"
import { Duration, Effect } from "effect"
import { endpoint, signFor } from "./auth.ts"
import type { GarminConfig } from "./config.ts"

const TIMEOUT = Duration.seconds(30)

/** Garmin allows 90 days per request for health and cycle data, 30 for activities. */
const health = (type: string, resource: string, key = type): BackfillType => ({ type, resource, keys: [key], maxDays: 90 })
const activity = (type: string, resource: string, key = type): BackfillType => ({ type, resource, keys: [key], maxDays: 30 })

/** Every backfill type, in the order a chain requests them. Three REST names differ from their notification keys. */
export const backfillTypes: ReadonlyArray<BackfillType> = [
  health("dailies", "activity"),
  health("sleeps", "sleep"),
  activity("activities", "workouts"),
  health("epochs", "steps"),
  health("bodyComps", "body"),
  health("hrv", "hrv"),
  health("stressDetails", "stress_level"),
  health("pulseOx", "blood_oxygen", "pulseox"),
  health("respiration", "respiratory_rate", "allDayRespiration"),
  health("userMetrics", "vo2_max"),
  health("bloodPressures", "blood_pressure"),
  health("skinTemp", "body_temperature_delta"),
  health("healthSnapshot", "heartrate"),
  activity("activityDetails", "workout_stream"),
  activity("moveiq", "workouts", "moveIQActivities"),
  health("mct", "menstrual_cycle")
]

/**
 * How far back Garmin allows, when its 400 says so. The wording is unverified, so any
 * ISO 8601 timestamp or epoch-seconds number in the message is taken as the earliest start.
 */
export const earliestStartIn = (message: string): Date | undefined => {
  const iso = /\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?/.exec(message)
  if (iso) {
    const date = new Date(iso[0].length === 10 ? `${iso[0]}T00:00:00Z` : iso[0])
    if (!Number.isNaN(date.getTime())) return date
  }
  const epoch = /\b(\d{10})\b/.exec(message)
  return epoch ? new Date(Number(epoch[1]) * 1000) : undefined
}

const errorMessageOf = (text: string) => {
  try {
    const parsed = (JSON.parse(text) as { errorMessage?: unknown }).errorMessage
    return typeof parsed === "string" ? parsed.slice(0, 300) : text.slice(0, 300)
  } catch {
    return text.slice(0, 300)
  }
}

const retryAfterOf = (header: string | undefined) => {
  const seconds = header === undefined ? Number.NaN : Number(header)
  return Number.isFinite(seconds) && seconds >= 0 ? Duration.seconds(seconds) : undefined
}

export const makeBackfill = (client: HttpClient.HttpClient, config: GarminConfig): ProviderBackfill => ({
  types: backfillTypes,

  request: (credentials, type, range) =>
    Effect.gen(function* () {
      const url = new URL(endpoint(config.urls.api, `/wellness-api/rest/backfill/${type}`))
      // Garmin refuses milliseconds: whole seconds only.
      url.searchParams.set("summaryStartTimeInSeconds", String(Math.floor(range.start.getTime() / 1000)))
      url.searchParams.set("summaryEndTimeInSeconds", String(Math.floor(range.end.getTime() / 1000)))
      const request = yield* signFor(config, HttpClientRequest.get(url.toString()), credentials)
      const response = yield* client.execute(request).pipe(Effect.timeout(TIMEOUT))
      const status = response.status
      if (status === 202 || status === 200) return { _tag: "Accepted" } satisfies BackfillAnswer
      if (status === 409) return { _tag: "AlreadyRequested" } satisfies BackfillAnswer
      if (status === 429) return { _tag: "RateLimited", retryAfter: retryAfterOf(response.headers["retry-after"]) } satisfies BackfillAnswer
      const message = errorMessageOf(yield* response.text.pipe(Effect.orElseSucceed(() => "")))
      if (status === 400 && /min(imum)?[\s_-]*start/i.test(message)) {
        return { _tag: "TooFarBack", earliest: earliestStartIn(message), message } satisfies BackfillAnswer
      }
      if (status === 401 || status === 403 || status === 412) {
        return { _tag: "Forbidden", status, message: `Garmin answered ${status}: ${message}` } satisfies BackfillAnswer
      }
      if (status >= 500) return { _tag: "Unavailable", message: `Garmin answered ${status}` } satisfies BackfillAnswer
      // Other 4xx (e.g. "Endpoint not enabled for summary type"): this type cannot be fetched.
      return { _tag: "Rejected", status, message: `Garmin answered ${status}: ${message}` } satisfies BackfillAnswer
    }).pipe(
      Effect.scoped,
      Effect.catchAll((error): Effect.Effect<BackfillAnswer> => {
        if (error._tag === "AuthError") {
          return Effect.succeed(
            error.reason === "misconfigured"
              ? { _tag: "Rejected", status: 0, message: error.message }
              : { _tag: "Forbidden", status: 401, message: error.message }
          )
        }
        const message = error._tag === "TimeoutException" ? "Garmin did not answer in time" : `could not reach Garmin (${error._tag})`
        return Effect.succeed({ _tag: "Unavailable", message })
      }),
      Effect.withSpan("Garmin.backfill", { attributes: { type } })
    ),

  itemTime: (item: NotificationItem) => {
    const raw = item.raw as {
      readonly startTimeInSeconds?: unknown
      readonly measurementTimeInSeconds?: unknown
      readonly summary?: { readonly startTimeInSeconds?: unknown }
      readonly calendarDate?: unknown
    }
    const seconds = raw.startTimeInSeconds ?? raw.measurementTimeInSeconds ?? raw.summary?.startTimeInSeconds
    if (typeof seconds === "number" && Number.isFinite(seconds)) return new Date(seconds * 1000)
    if (typeof raw.calendarDate === "string" && /^\d{4}-\d{2}-\d{2}$/.test(raw.calendarDate)) return new Date(`${raw.calendarDate}T00:00:00Z`)
    return undefined
  }
})
