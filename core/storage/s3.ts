/**
 * An S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, GCS interop, …) as the activity
 * files and the ETL sink configure it, and the SDK client that reaches it.
 */
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3"
import { Effect, Option, Redacted } from "effect"

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
 * A client for `location`, destroyed with the scope. `requestHandler` replaces the SDK's own
 * HTTP stack (a plugin passes one over its permission-checked HttpClient).
 */
export const s3Client = (location: S3Location, requestHandler?: S3ClientConfig["requestHandler"]) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new S3Client({
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
