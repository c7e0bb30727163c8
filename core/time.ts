/** Time conversions shared by normalizers and the query API. */

/** Epoch seconds → ISO 8601 UTC timestamp (`2016-01-11T00:00:00.000Z`). */
export const timestampFromEpochSeconds = (seconds: number): string => new Date(seconds * 1000).toISOString()

/** Epoch seconds + device offset → the device-local calendar date, `YYYY-MM-DD`. */
export const localDateFromEpochSeconds = (seconds: number, offsetSeconds: number): string =>
  new Date((seconds + offsetSeconds) * 1000).toISOString().slice(0, 10)
