/**
 * An S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, GCS interop, …) as the activity
 * files and the ETL sink configure it, and the SDK client that reaches it.
 */
import type { S3ClientConfig } from "@aws-sdk/client-s3"
import { Config, ConfigError, Effect, Either, Option, Redacted } from "effect"

export interface S3Location {
  readonly bucket: string
  /** Key prefix, without leading or trailing slashes; "" for the bucket's root. */
  readonly prefix: string
  readonly region: string
  /** Another S3-compatible service's URL; AWS when absent. */
  readonly endpoint: Option.Option<string>
  readonly forcePathStyle: boolean
  /** Explicit keys; the SDK's default chain (environment, profile, instance role) when absent. */
  readonly credentials: Option.Option<{ readonly accessKeyId: Redacted.Redacted<string>; readonly secretAccessKey: Redacted.Redacted<string> }>
}

/** `key` under the location's prefix. */
export const objectKey = (location: S3Location, key: string) => (location.prefix === "" ? key : `${location.prefix}/${key}`)

/**
 * The AWS SDK, loaded on first use: it costs tens of MB of memory, which a server with no
 * bucket configured need not pay.
 */
export const s3Sdk = Effect.promise(() => import("@aws-sdk/client-s3"))

/**
 * A client for `location`, destroyed with the scope. `requestHandler` replaces the SDK's own
 * HTTP stack (a plugin passes one over its permission-checked HttpClient).
 */
export const s3Client = (location: S3Location, requestHandler?: S3ClientConfig["requestHandler"]) =>
  Effect.acquireRelease(
    Effect.map(s3Sdk, (sdk) =>
      new sdk.S3Client({
        region: location.region,
        forcePathStyle: location.forcePathStyle,
        ...(requestHandler === undefined ? {} : { requestHandler }),
        ...Option.match(location.endpoint, { onNone: () => ({}), onSome: (endpoint) => ({ endpoint }) }),
        ...Option.match(location.credentials, {
          onNone: () => ({}),
          onSome: (c) => ({ credentials: { accessKeyId: Redacted.value(c.accessKeyId), secretAccessKey: Redacted.value(c.secretAccessKey) } })
        })
      })
    ),
    (client) => Effect.sync(() => client.destroy())
  )

/** The AWS key pair; none means the SDK's default chain. Half a pair is a mistake to report, not a fallback. */
const credentialsConfig: Config.Config<S3Location["credentials"]> = Config.all({
  accessKeyId: Config.option(Config.redacted("AWS_ACCESS_KEY_ID")),
  secretAccessKey: Config.option(Config.redacted("AWS_SECRET_ACCESS_KEY"))
}).pipe(
  Config.mapOrFail(({ accessKeyId, secretAccessKey }) =>
    Option.isSome(accessKeyId) === Option.isSome(secretAccessKey)
      ? Either.right(Option.all({ accessKeyId, secretAccessKey }))
      : Either.left(ConfigError.InvalidData([], "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both or neither"))
  )
)

/**
 * A bucket configured by `<name>_BUCKET`, `_PREFIX`, `_REGION`, `_ENDPOINT`,
 * `_FORCE_PATH_STYLE` and the AWS key pair (activity files: `WEARFLOW_FILES_S3`, ETL files:
 * `WEARFLOW_ETL_S3`); none when `<name>_BUCKET` is unset.
 */
export const s3LocationConfig = (name: string, defaultPrefix: string): Config.Config<Option.Option<S3Location>> =>
  Config.option(
    Config.all({
      bucket: Config.string(`${name}_BUCKET`).pipe(
        Config.validate({ message: `${name}_BUCKET must be a bucket name`, validation: (s) => /^[a-zA-Z0-9.\-_]{1,255}$/.test(s) })
      ),
      prefix: Config.string(`${name}_PREFIX`).pipe(Config.withDefault(defaultPrefix), Config.map((s) => s.replace(/^\/+|\/+$/g, ""))),
      region: Config.string(`${name}_REGION`).pipe(Config.withDefault("us-east-1")),
      endpoint: Config.option(Config.url(`${name}_ENDPOINT`).pipe(Config.map((u) => u.toString()))),
      forcePathStyle: Config.boolean(`${name}_FORCE_PATH_STYLE`).pipe(Config.withDefault(false)),
      credentials: credentialsConfig
    })
  )
