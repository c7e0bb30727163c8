/** Time conversions shared by normalizers and the query API. */
import { Duration } from "effect"

/** Epoch seconds → ISO 8601 UTC timestamp (`2016-01-11T00:00:00.000Z`). */
export const timestampFromEpochSeconds = (seconds: number): string => new Date(seconds * 1000).toISOString()

/** Epoch seconds + device offset → the device-local calendar date, `YYYY-MM-DD`. */
export const localDateFromEpochSeconds = (seconds: number, offsetSeconds: number): string =>
  new Date((seconds + offsetSeconds) * 1000).toISOString().slice(0, 10)

/**
 * A duration in whole milliseconds, rounded up. The workflow engine stores wake-up times as
 * bigint epoch milliseconds: a fraction (a computed wait) would be refused by Postgres.
 */
export const wholeMillis = (duration: Duration.DurationInput): Duration.Duration => {
  const decoded = Duration.decode(duration)
  const millis = Duration.toMillis(decoded)
  return Number.isFinite(millis) && !Number.isInteger(millis) ? Duration.millis(Math.ceil(millis)) : decoded
}
