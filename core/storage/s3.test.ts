/** The bucket configuration activity files and ETL files share (s3.ts). */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option, Redacted } from "effect"
import { s3LocationConfig } from "./s3.ts"

const read = (env: Record<string, string>) =>
  s3LocationConfig("WEARFLOW_ETL_S3", "wearflow").pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))), Effect.either)

describe("s3LocationConfig", () => {
  it.effect("is none without a bucket, and fills the defaults with one", () =>
    Effect.gen(function* () {
      expect(yield* read({})).toMatchObject({ _tag: "Right", right: Option.none() })
      const some = yield* read({ WEARFLOW_ETL_S3_BUCKET: "data", WEARFLOW_ETL_S3_PREFIX: "/etl/raw/", WEARFLOW_ETL_S3_ENDPOINT: "http://127.0.0.1:9000" })
      expect(some).toMatchObject({
        _tag: "Right",
        right: Option.some({ bucket: "data", prefix: "etl/raw", region: "us-east-1", endpoint: Option.some("http://127.0.0.1:9000/"), forcePathStyle: false, credentials: Option.none() })
      })
    }))

  it.effect("takes a whole AWS key pair, redacted, and refuses half of one", () =>
    Effect.gen(function* () {
      const both = yield* read({ WEARFLOW_ETL_S3_BUCKET: "data", AWS_ACCESS_KEY_ID: "id", AWS_SECRET_ACCESS_KEY: "secret" })
      const credentials = both._tag === "Right" ? Option.getOrThrow(Option.getOrThrow(both.right).credentials) : undefined
      expect(credentials && Redacted.value(credentials.secretAccessKey)).toBe("secret")
      expect(String(credentials?.secretAccessKey)).not.toContain("secret")
      const half = yield* read({ WEARFLOW_ETL_S3_BUCKET: "data", AWS_ACCESS_KEY_ID: "id" })
      expect(half._tag).toBe("Left")
      expect(String(half._tag === "Left" ? half.left : "")).toContain("set both or neither")
    }))

  it.effect("refuses a bucket name S3 would not take", () =>
    Effect.gen(function* () {
      expect((yield* read({ WEARFLOW_ETL_S3_BUCKET: "no spaces/allowed" }))._tag).toBe("Left")
    }))
})
