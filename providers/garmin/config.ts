/**
 * The Garmin plugin's configuration, read through its sandboxed environment (GARMIN_*).
 * Garmin's base URLs are configurable so tests and staging can point at a fake; the hosts the
 * plugin may reach follow them.
 */
import { hostsOf } from "@wearflow/core/plugin"
import { Config, Option, type Redacted } from "effect"

const baseUrl = (name: string, fallback: string) =>
  Config.string(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be an http(s) URL`, validation: (s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) }),
    Config.map((s) => new URL(s.endsWith("/") ? s.slice(0, -1) : s))
  )

export const GarminUrls = Config.all({
  /** Health/Activity API: pulls, user endpoints, backfill, token exchange. */
  api: baseUrl("GARMIN_API_URL", "https://apis.garmin.com"),
  /** Where users approve access (oauth2Confirm, oauthConfirm). */
  connect: baseUrl("GARMIN_CONNECT_URL", "https://connect.garmin.com"),
  /** OAuth 1.0a request and access tokens. */
  connectApi: baseUrl("GARMIN_CONNECTAPI_URL", "https://connectapi.garmin.com"),
  /** OAuth 2.0 token endpoint. */
  auth: baseUrl("GARMIN_AUTH_URL", "https://diauth.garmin.com")
})
export type GarminUrls = Config.Config.Success<typeof GarminUrls>

export const GarminConfig = Config.all({
  /** Consumer key / OAuth2 client id; Garmin also sends it in the `garmin-client-id` header. */
  clientId: Config.option(Config.redacted("GARMIN_CLIENT_ID")),
  /** Consumer secret / OAuth2 client secret. */
  clientSecret: Config.option(Config.redacted("GARMIN_CLIENT_SECRET")),
  urls: GarminUrls
})
export type GarminConfig = Config.Config.Success<typeof GarminConfig>

/** The consumer key and secret, when both are configured. */
export const consumerOf = (config: GarminConfig): Option.Option<{ readonly key: Redacted.Redacted<string>; readonly secret: Redacted.Redacted<string> }> =>
  Option.all({ key: config.clientId, secret: config.clientSecret })

/** The hosts the plugin declares: those of its configured base URLs. */
export const GarminHosts = Config.map(GarminUrls, (urls) => hostsOf([urls.api, urls.connect, urls.connectApi, urls.auth]))
