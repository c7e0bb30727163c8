/** The webhooks sink's settings (WEARFLOW_WEBHOOK_*), read through the plugin's sandbox. */
import { Config, Context, Duration } from "effect"
import type { Reach } from "@wearflow/core/public-internet"

export interface Settings {
  /** The operator's allowances (http, private addresses), passed to the host's public-internet guard. */
  readonly reach: Reach
  /** Waits before each retry after a failed attempt; after the last, the message has failed. */
  readonly retrySchedule: ReadonlyArray<Duration.Duration>
  /** Deadline of one attempt: success is a 2xx within it. */
  readonly timeout: Duration.Duration
  /** An endpoint failing continuously this long is disabled. */
  readonly disableAfter: Duration.Duration
  /** After a rotation, messages are signed with the old secret too for this long. */
  readonly secretGrace: Duration.Duration
  /** Requests in flight per endpoint (per process). */
  readonly endpointConcurrency: number
  /** Whether data that answers a backfill is sent too (Junction's push_historical_data). */
  readonly historicalData: boolean
}

export class WebhookSettings extends Context.Tag("wearflow/webhooks/WebhookSettings")<WebhookSettings, Settings>() {}

/** Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
export const standardSchedule: ReadonlyArray<Duration.Duration> = [
  Duration.seconds(5), Duration.minutes(5), Duration.minutes(30), Duration.hours(2), Duration.hours(5), Duration.hours(10), Duration.hours(10)
]

const positive = (name: string, fallback: Duration.Duration) =>
  Config.duration(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive duration`, validation: (d) => Duration.toMillis(d) > 0 })
  )

export const config: Config.Config<Settings> = Config.all({
  reach: Config.all({
    allowHttp: Config.boolean("WEARFLOW_WEBHOOK_ALLOW_HTTP").pipe(Config.withDefault(false)),
    allowPrivate: Config.boolean("WEARFLOW_WEBHOOK_ALLOW_PRIVATE").pipe(Config.withDefault(false))
  }),
  retrySchedule: Config.array(Config.duration(), "WEARFLOW_WEBHOOK_RETRY_SCHEDULE").pipe(
    Config.withDefault(standardSchedule),
    Config.validate({
      message: "WEARFLOW_WEBHOOK_RETRY_SCHEDULE must be 0 to 20 durations, e.g. `5 seconds,5 minutes`",
      validation: (waits) => waits.length <= 20 && waits.every((d) => Duration.toMillis(d) >= 0)
    })
  ),
  timeout: positive("WEARFLOW_WEBHOOK_TIMEOUT", Duration.seconds(15)),
  disableAfter: positive("WEARFLOW_WEBHOOK_DISABLE_AFTER", Duration.days(5)),
  secretGrace: Config.duration("WEARFLOW_WEBHOOK_SECRET_GRACE").pipe(Config.withDefault(Duration.hours(24))),
  historicalData: Config.boolean("WEARFLOW_WEBHOOK_HISTORICAL_DATA").pipe(Config.withDefault(true)),
  endpointConcurrency: Config.integer("WEARFLOW_WEBHOOK_ENDPOINT_CONCURRENCY").pipe(
    Config.withDefault(32),
    Config.validate({ message: "WEARFLOW_WEBHOOK_ENDPOINT_CONCURRENCY must be 1..256", validation: (n) => n >= 1 && n <= 256 })
  )
})
