/**
 * The Withings plugin's configuration, read through its sandboxed environment (WITHINGS_*,
 * and WEARFLOW_PUBLIC_URL for the default callback URL). Both Withings hosts are
 * configurable so tests and staging can point at a fake; the API host is the one the plugin
 * may reach (the authorize page is only ever opened by the user's browser).
 */
import { hostsOf } from "@wearflow/core/plugin"
import { Config, Duration, Option, Redacted } from "effect"

/** Where Withings posts notifications, under the server's public URL; an unguessable segment follows. */
export const CALLBACK_PATH = "/api/v1/webhooks/withings"

/** Scopes Withings grants; `user.info` is documented for SDK partners only and never required. */
export const KNOWN_SCOPES = ["user.info", "user.metrics", "user.activity", "user.sleepevents"] as const

/**
 * Notification categories (`appli`) the plugin subscribes to, each with the scope that allows
 * it (reference: "Appli codes"); 46 (the user unlinked or deleted their account) needs none.
 */
export const APPLI_SCOPES: Readonly<Record<number, string | null>> = {
  1: "user.metrics", // weight and body composition
  2: "user.metrics", // temperature
  4: "user.metrics", // blood pressure, heart rate, SpO2
  16: "user.activity", // activity, intraday, workouts
  44: "user.activity", // sleep
  46: null // user events: unlink, delete
}

const isHttpUrl = (s: string) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)

const url = (name: string) =>
  Config.string(name).pipe(Config.validate({ message: `${name} must be an http(s) URL`, validation: isHttpUrl }))

const withoutSlash = (s: string) => (s.endsWith("/") ? s.slice(0, -1) : s)

/** wbsapi.withings.net: tokens, data, notification subscriptions. */
const ApiUrl = url("WITHINGS_API_URL").pipe(Config.withDefault("https://wbsapi.withings.net"), Config.map((s) => new URL(withoutSlash(s))))

/** Where users approve access (account.withings.com), called by their browser, never by the plugin. */
const AuthorizeUrl = url("WITHINGS_AUTH_URL").pipe(Config.withDefault("https://account.withings.com/oauth2_user/authorize2"))

const positive = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive whole number`, validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

/** A list from `a,b c` text, without blanks or repeats. */
const list = (text: string) => [...new Set(text.split(/[\s,]+/).filter((item) => item.length > 0))]

export const WithingsConfig = Config.all({
  clientId: Config.option(Config.redacted("WITHINGS_CLIENT_ID")),
  /** OAuth, and the key of signed calls (nonce, revoke). */
  clientSecret: Config.option(Config.redacted("WITHINGS_CLIENT_SECRET")),
  apiUrl: ApiUrl,
  authorizeUrl: AuthorizeUrl,
  /** Scopes asked for on the consent screen (comma- or space-separated); the user may untick some. */
  scopes: Config.string("WITHINGS_SCOPES").pipe(
    Config.map(list),
    Config.validate({
      message: `WITHINGS_SCOPES must name Withings scopes (${KNOWN_SCOPES.join(", ")})`,
      validation: (scopes) => scopes.length > 0 && scopes.every((s) => (KNOWN_SCOPES as ReadonlyArray<string>).includes(s))
    }),
    Config.withDefault(["user.metrics", "user.activity"])
  ),
  /**
   * Withings' rate limit, for all users of the application together (120 requests a minute
   * on the public plan), shared by every process through the database.
   */
  rateLimit: Config.all({
    requests: positive("WITHINGS_RATE_LIMIT", 120),
    window: Config.duration("WITHINGS_RATE_LIMIT_WINDOW").pipe(Config.withDefault(Duration.minutes(1))),
    /** How long to wait after Withings answers "too many requests" (status 601); Withings asks for at least a minute. */
    backoff: Config.duration("WITHINGS_RATE_LIMIT_BACKOFF").pipe(Config.withDefault(Duration.minutes(1)))
  }),
  /** An optional limit per Withings user (Withings documents none), in the same window. */
  userRateLimit: Config.option(
    Config.integer("WITHINGS_USER_RATE_LIMIT").pipe(
      Config.validate({ message: "WITHINGS_USER_RATE_LIMIT must be a positive whole number", validation: (n) => n > 0 })
    )
  ),
  sync: Config.all({
    /** How long between two polls of one connection; a notification polls at once. */
    interval: Config.duration("WITHINGS_SYNC_INTERVAL").pipe(Config.withDefault(Duration.hours(1))),
    /** How far back a connection's first poll looks (its history is the backfill's). */
    lookback: Config.duration("WITHINGS_SYNC_LOOKBACK").pipe(Config.withDefault(Duration.days(7))),
    /** Pages one poll fetches at most before it hands over to the next round (which starts at once). */
    maxPages: positive("WITHINGS_SYNC_MAX_PAGES", 50)
  }),
  notify: Config.all({
    /**
     * The secret path segment of the callback URL: Withings signs nothing, so the URL itself
     * is the credential (reference: "Put an unguessable path segment in the callback URL").
     * None: notifications are refused and nothing is subscribed; polls still run.
     */
    pathSecret: Config.option(
      Config.redacted("WITHINGS_NOTIFY_SECRET").pipe(
        Config.validate({ message: "WITHINGS_NOTIFY_SECRET must be 16 to 128 letters, digits, - or _", validation: (secret) => /^[A-Za-z0-9_-]{16,128}$/.test(Redacted.value(secret)) })
      )
    ),
    /** The server's public URL; the callback is `<it>/api/v1/webhooks/withings/<secret>`. */
    publicUrl: Config.option(url("WEARFLOW_PUBLIC_URL").pipe(Config.map(withoutSlash))),
    applis: Config.string("WITHINGS_NOTIFY_APPLIS").pipe(
      Config.map((text) => list(text).map(Number)),
      Config.validate({
        message: `WITHINGS_NOTIFY_APPLIS must name notification categories (${Object.keys(APPLI_SCOPES).join(", ")})`,
        validation: (applis) => applis.every((appli) => Object.hasOwn(APPLI_SCOPES, appli))
      }),
      Config.withDefault(Object.keys(APPLI_SCOPES).map(Number))
    ),
    /** How often a connection's subscriptions are listed and what vanished subscribed again. */
    checkInterval: Config.duration("WITHINGS_NOTIFY_CHECK_INTERVAL").pipe(Config.withDefault(Duration.days(1)))
  })
})
export type WithingsConfig = Config.Config.Success<typeof WithingsConfig>

/** The client id and secret, when both are configured. */
export const clientOf = (config: WithingsConfig): Option.Option<{ readonly id: Redacted.Redacted<string>; readonly secret: Redacted.Redacted<string> }> =>
  Option.all({ id: config.clientId, secret: config.clientSecret })

/** A URL under Withings' API base (which may carry a path prefix, e.g. behind a proxy). */
export const apiUrlOf = (base: URL, path: string) => new URL(`${base.href.replace(/\/$/, "")}${path}`)

/** Where Withings is asked to post notifications; none without a public URL and a secret. */
export const callbackUrlOf = (config: WithingsConfig): Option.Option<string> =>
  Option.map(
    Option.all({ base: config.notify.publicUrl, secret: config.notify.pathSecret }),
    ({ base, secret }) => `${base}${CALLBACK_PATH}/${Redacted.value(secret)}`
  )

/** The hosts the plugin declares: Withings' API (the callback URL is called by Withings, never by us). */
export const WithingsHosts = Config.map(ApiUrl, (apiUrl) => hostsOf([apiUrl]))

/** The environment the plugin reads. */
export const WithingsEnv = ["WITHINGS_*", "WEARFLOW_PUBLIC_URL"]
