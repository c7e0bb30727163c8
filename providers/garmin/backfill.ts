/**
 * Garmin backfill: asking Garmin to resend a user's history. A request answers 202 and the
 * data arrives later through the ordinary PING/PUSH notifications, so this module only asks
 * and classifies the answer; the chaining and the "is it done?" inference live in core.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
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

/** Instants a message names: ISO 8601 dates or date-times, epoch seconds (10 digits) or milliseconds (13). */
const instantsIn = (message: string): Array<Date> => {
  const found: Array<{ at: number; date: Date }> = []
  const iso = /\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)?/g
  for (const match of message.matchAll(iso)) {
    const text = match[0].replace(" ", "T").replace(/\s?(UTC|GMT)$/, "Z")
    // A date alone, or a time without zone, is UTC (Garmin's times are).
    const zoned = text.length === 10 ? `${text}T00:00:00Z` : /(Z|[+-]\d{2}:?\d{2})$/.test(text) ? text : `${text}Z`
    const date = new Date(zoned)
    if (!Number.isNaN(date.getTime())) found.push({ at: match.index, date })
  }
  for (const match of message.matchAll(/(?<![\d.-])(\d{13}|\d{10})(?![\d.])/g)) {
    const n = Number(match[1])
    found.push({ at: match.index, date: new Date(match[1]!.length === 13 ? n : n * 1000) })
  }
  return found.sort((a, b) => a.at - b.at).map((f) => f.date)
}

/**
 * How far back Garmin allows, when its 400 says so. The wording is unverified, so any
 * instant the message names is a candidate, except the request's own start and end echoed
 * back; the first one after the requested start wins (the limit lies after what was asked).
 */
export const earliestStartIn = (message: string, range?: { readonly start: Date; readonly end: Date }): Date | undefined => {
  const seconds = (d: Date) => Math.floor(d.getTime() / 1000)
  const echoed = range ? new Set([seconds(range.start), seconds(range.end)]) : new Set<number>()
  const candidates = instantsIn(message).filter((d) => !echoed.has(seconds(d)))
  if (range === undefined) return candidates[0]
  return candidates.find((d) => d.getTime() > range.start.getTime()) ?? candidates[0]
}

/** Words for "asked further back than allowed", in any of the ways an API might put it. */
const TOO_FAR_BACK = new RegExp(
  [
    String.raw`\b(min(imum)?|earliest|oldest)\b[\s_-]*(allowed[\s_-]*|permitted[\s_-]*|supported[\s_-]*)?(start|date|backfill)`,
    String.raw`\bmin[\s_-]*start`,
    String.raw`too\s+(far\s+(back|in\s+the\s+past)|old)`,
    String.raw`(before|prior\s+to|older\s+than|earlier\s+than)\s+(the\s+)?(min|minimum|earliest|allowed|permitted|retention)`,
    String.raw`(retention|history)\s+(period|limit|window)`
  ].join("|"),
  "i"
)

/**
 * Whether a 400 says the window starts further back than Garmin allows: its wording says so,
 * or it speaks of the start and names an instant after the requested start (the limit).
 */
export const isTooFarBack = (message: string, range: { readonly start: Date; readonly end: Date }): boolean => {
  if (TOO_FAR_BACK.test(message)) return true
  if (!/start/i.test(message)) return false
  const limit = earliestStartIn(message, range)
  return limit !== undefined && limit.getTime() > range.start.getTime()
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
      if (status === 400 && isTooFarBack(message, range)) {
        return { _tag: "TooFarBack", earliest: earliestStartIn(message, range), message } satisfies BackfillAnswer
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
