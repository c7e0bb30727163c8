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

export const OuraConfig = Config.all({
  /** The application's client id: OAuth, and the `x-client-id` of subscription calls. */
  clientId: Config.option(Config.redacted("OURA_CLIENT_ID")),
  /** The client secret: OAuth, subscription calls, and the key of the notifications' signature. */
  clientSecret: Config.option(Config.redacted("OURA_CLIENT_SECRET")),
  apiUrl: ApiUrl,
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
