import { ConfigProvider, Duration, Effect, Either, Option } from "effect"
import { describe, expect, it } from "vitest"
import { callbackUrlOf, WithingsConfig } from "./config.ts"

const read = (env: Record<string, string>) =>
  Effect.runSync(Effect.either(Effect.withConfigProvider(WithingsConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))))

describe("Withings configuration", () => {
  it("defaults: Withings' hosts, 120 requests a minute for the application, no limit per user, hourly polls", () => {
    const config = Either.getOrThrow(read({}))
    expect(config.apiUrl.href).toBe("https://wbsapi.withings.net/")
    expect(config.rateLimit.requests).toBe(120)
    expect(Duration.toMillis(config.rateLimit.backoff)).toBe(60_000)
    // A per-user limit exists only when set: Withings documents none.
    expect(Option.isNone(config.userRateLimit)).toBe(true)
    expect(Duration.toMillis(config.sync.interval)).toBe(3_600_000)
    expect(config.scopes).toEqual(["user.metrics", "user.activity"])
    expect(config.notify.applis).toEqual([1, 2, 4, 16, 44, 46])
    expect(Option.isNone(callbackUrlOf(config))).toBe(true)
  })

  it("reads a per-user limit, a callback URL from the public URL and the secret, and comma- or space-separated lists", () => {
    const config = Either.getOrThrow(read({
      WITHINGS_USER_RATE_LIMIT: "10",
      WEARFLOW_PUBLIC_URL: "https://wearflow.example/",
      WITHINGS_NOTIFY_SECRET: "s3cret-path-segment-42",
      WITHINGS_SCOPES: "user.metrics user.activity,user.sleepevents",
      WITHINGS_NOTIFY_APPLIS: "1, 44"
    }))
    expect(config.userRateLimit).toEqual(Option.some(10))
    expect(callbackUrlOf(config)).toEqual(Option.some("https://wearflow.example/api/v1/webhooks/withings/s3cret-path-segment-42"))
    expect(config.scopes).toEqual(["user.metrics", "user.activity", "user.sleepevents"])
    expect(config.notify.applis).toEqual([1, 44])
  })

  it("refuses bad values without repeating them", () => {
    for (const env of [
      { WITHINGS_USER_RATE_LIMIT: "0" },
      { WITHINGS_RATE_LIMIT: "-1" },
      { WITHINGS_NOTIFY_SECRET: "short" },
      { WITHINGS_SCOPES: "user.everything" },
      { WITHINGS_NOTIFY_APPLIS: "53" },
      { WITHINGS_API_URL: "ftp://wbsapi.withings.net" }
    ]) {
      const result = read(env)
      expect(Either.isLeft(result), JSON.stringify(env)).toBe(true)
      const value = Object.values(env)[0]!
      if (Either.isLeft(result) && value.length > 2) expect(String(result.left)).not.toContain(value)
    }
  })
})
