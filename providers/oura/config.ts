/**
 * The Oura plugin's configuration, read through its sandboxed environment (OURA_*, and
 * WEARFLOW_PUBLIC_URL for the default callback URL). Oura's base URL is configurable so tests
 * and staging can point at a fake; the one host the plugin may reach follows it.
 */
import { hostsOf } from "@wearflow/core/plugin"
import { Config, Duration, Option, type Redacted } from "effect"
import { normalizers, storedOnly } from "./normalize.ts"

/** Every data type Oura's webhook subscriptions take (ExtApiV2DataType, OpenAPI 1.37). */
export const WEBHOOK_DATA_TYPES = [
  "tag",
  "enhanced_tag",
  "workout",
  "session",
  "sleep",
  "daily_sleep",
  "daily_readiness",
  "daily_activity",
  "daily_spo2",
  "sleep_time",
  "rest_mode_period",
  "ring_configuration",
  "daily_stress",
  "daily_cardiovascular_age",
  "daily_resilience",
  "vo2_max",
  "meal"
] as const

export const EVENT_TYPES = ["create", "update", "delete"] as const
export type EventType = (typeof EVENT_TYPES)[number]

const notifiable: ReadonlySet<string> = new Set(WEBHOOK_DATA_TYPES)

/** What is subscribed by default: each data type with a normalizer or kept raw that Oura can notify (heartrate cannot). */
export const DEFAULT_DATA_TYPES: ReadonlyArray<string> = [...Object.keys(normalizers), ...storedOnly].filter((type) => notifiable.has(type))

/** Where Oura posts notifications, under the server's public URL. */
export const CALLBACK_PATH = "/api/v1/webhooks/oura"

const isHttpUrl = (s: string) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)

const url = (name: string) =>
  Config.string(name).pipe(Config.validate({ message: `${name} must be an http(s) URL`, validation: isHttpUrl }))

const withoutSlash = (s: string) => (s.endsWith("/") ? s.slice(0, -1) : s)

/** api.ouraring.com: data, tokens, webhook subscriptions. */
const ApiUrl = url("OURA_API_URL").pipe(Config.withDefault("https://api.ouraring.com"), Config.map((s) => new URL(withoutSlash(s))))

/** The Oura scope each collection needs, as the live API enforces it (the reference's collection → scope table). */
export const COLLECTION_SCOPES: Readonly<Record<string, string>> = {
  daily_activity: "daily",
  daily_readiness: "daily",
  daily_sleep: "daily",
  daily_stress: "daily",
  sleep: "daily",
  sleep_time: "daily",
  rest_mode_period: "daily",
  heartrate: "heartrate",
  workout: "workout",
  session: "session",
  tag: "tag",
  enhanced_tag: "tag",
  daily_spo2: "spo2",
  vo2_max: "heart_health",
  daily_cardiovascular_age: "heart_health",
  daily_resilience: "stress",
  ring_configuration: "ring_configuration"
}

/** What a connection asks for by default: `personal` (the user's id and profile) and the scope of every data type the plugin keeps. */
export const DEFAULT_SCOPES: ReadonlyArray<string> = [
  ...new Set(["personal", ...[...Object.keys(normalizers), ...storedOnly].flatMap((type) => COLLECTION_SCOPES[type] ?? [])])
]

/** Where users approve access: cloud.ouraring.com, called by their browser, never by the plugin. */
const AuthorizeUrl = url("OURA_AUTH_URL").pipe(Config.withDefault("https://cloud.ouraring.com/oauth/authorize"))

export const OuraConfig = Config.all({
  /** The application's client id: OAuth, and the `x-client-id` of subscription calls. */
  clientId: Config.option(Config.redacted("OURA_CLIENT_ID")),
  /** The client secret: OAuth, subscription calls, and the key of the notifications' signature. */
  clientSecret: Config.option(Config.redacted("OURA_CLIENT_SECRET")),
  apiUrl: ApiUrl,
  authorizeUrl: AuthorizeUrl,
  /** Scopes asked for on the consent screen (space- or comma-separated); the user may untick some. */
  scopes: Config.string("OURA_SCOPES").pipe(
    Config.map((text) => [...new Set(text.split(/[\s,]+/).filter((scope) => scope.length > 0))]),
    Config.validate({ message: "OURA_SCOPES must name Oura scopes (letters, digits and _)", validation: (scopes) => scopes.every((s) => /^[A-Za-z0-9_]{1,40}$/.test(s)) }),
    Config.withDefault(DEFAULT_SCOPES)
  ),
  /** Oura's rate limit (5,000 requests per 5 minutes per application), shared by every process through the database. */
  rateLimit: Config.all({
    requests: Config.integer("OURA_RATE_LIMIT").pipe(
      Config.validate({ message: "OURA_RATE_LIMIT must be a positive number of requests", validation: (n) => n > 0 }),
      Config.withDefault(5000)
    ),
    window: Config.duration("OURA_RATE_LIMIT_WINDOW").pipe(Config.withDefault(Duration.minutes(5)))
  }),
  webhook: Config.all({
    /** Sent when subscribing; Oura's verification GET must carry it back. */
    verificationToken: Config.option(Config.redacted("OURA_WEBHOOK_VERIFICATION_TOKEN")),
    /** Where Oura posts; default `<WEARFLOW_PUBLIC_URL>/api/v1/webhooks/oura`. None: no public URL known, so no subscriptions. */
    callbackUrl: Config.option(url("OURA_WEBHOOK_CALLBACK_URL")).pipe(
      Config.zipWith(Config.option(url("WEARFLOW_PUBLIC_URL")), (callback, publicUrl) =>
        Option.orElse(callback, () => Option.map(publicUrl, (base) => `${withoutSlash(base)}${CALLBACK_PATH}`)))
    ),
    dataTypes: Config.array(Config.string(), "OURA_WEBHOOK_DATA_TYPES").pipe(
      Config.map((types) => [...new Set(types.map((type) => type.trim()).filter((type) => type.length > 0))]),
      Config.validate({
        message: `OURA_WEBHOOK_DATA_TYPES must name Oura webhook data types (${WEBHOOK_DATA_TYPES.join(", ")})`,
        validation: (types) => types.every((type) => notifiable.has(type))
      }),
      Config.withDefault(DEFAULT_DATA_TYPES)
    ),
    /** How often subscriptions are listed, created and renewed (default daily). */
    checkInterval: Config.duration("OURA_WEBHOOK_CHECK_INTERVAL").pipe(Config.withDefault(Duration.days(1)))
  })
})
export type OuraConfig = Config.Config.Success<typeof OuraConfig>

/** The client id and secret, when both are configured. */
export const clientOf = (config: OuraConfig): Option.Option<{ readonly id: Redacted.Redacted<string>; readonly secret: Redacted.Redacted<string> }> =>
  Option.all({ id: config.clientId, secret: config.clientSecret })

/** A URL under Oura's API base (which may carry a path prefix, e.g. behind a proxy). */
export const apiUrlOf = (base: URL, path: string) => new URL(`${base.href.replace(/\/$/, "")}${path}`)

/** The hosts the plugin declares: Oura's API (the callback URL is called by Oura, never by us). */
export const OuraHosts = Config.map(ApiUrl, (apiUrl) => hostsOf([apiUrl]))

/** The environment the plugin reads. */
export const OuraEnv = ["OURA_*", "WEARFLOW_PUBLIC_URL"]
