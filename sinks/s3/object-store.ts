/**
 * Where ETL files go: an S3-compatible bucket, or a local directory (the embedded default).
 * A put under an existing key replaces it whole: that is how a re-sent batch overwrites its
 * own files instead of adding a copy.
 */
import { NetPermissionDenied } from "@wearflow/core/host"
import { allowsHost } from "@wearflow/core/plugin"
import { objectKey, s3Client, type S3Location, s3Sdk } from "@wearflow/core/storage/s3"
import { writeWholeFile } from "@wearflow/core/storage/whole-file"
import * as HttpHandler from "./http-handler.ts"
import { Data, Duration, Effect, Option } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"

/** The storage refused or could not be reached; always worth retrying later. */
export class StorageError extends Data.TaggedError("StorageError")<{ readonly message: string }> {
  readonly retryable = true
}

export interface ObjectStore {
  /** Where objects go, for logs and manifests: `s3://bucket/prefix` or a directory. */
  readonly location: string
  /** The full key of `key`: with the bucket's prefix, or relative to the directory. */
  readonly keyOf: (key: string) => string
  readonly put: (key: string, body: Uint8Array, contentType: string) => Effect.Effect<void, StorageError>
  readonly remove: (key: string) => Effect.Effect<void, StorageError>
}

const failure = (where: string, key: string) => (e: unknown) =>
  new StorageError({ message: `${where}: cannot write ${key}: ${e instanceof Error ? e.message : String(e)}` })

/** Objects below 16 MiB go up in one request; larger ones in 16 MiB parts, four at a time. */
export const PART_SIZE = 16 * 1024 * 1024

const PUT_TIMEOUT = Duration.minutes(10)

/** What the plugin declares it may reach: its id and its `net` hosts. */
export interface Declared {
  readonly plugin: string
  readonly hosts: ReadonlyArray<string>
}

/** The service the client is made for: the configured endpoint, or AWS S3's in the region. */
const endpointOf = (location: S3Location) =>
  new URL(Option.getOrElse(location.endpoint, () => `https://s3.${location.region}.amazonaws.com`))

/**
 * The bucket, reached through the plugin's HttpClient (http-handler.ts), which refuses every
 * undeclared host per request; a bucket whose endpoint is not declared is refused up front,
 * when the client would be made.
 */
export const bucket = (location: S3Location, declared: Declared, partSize = PART_SIZE) =>
  Effect.gen(function* () {
    const endpoint = endpointOf(location)
    if (!allowsHost(declared.hosts, endpoint)) return yield* new NetPermissionDenied({ plugin: declared.plugin, host: endpoint.host })
    const client = yield* s3Client(location, yield* HttpHandler.make)
    // The SDK loads only when a bucket is configured (core/storage/s3.ts).
    const { DeleteObjectCommand } = yield* s3Sdk
    const { Upload } = yield* Effect.promise(() => import("@aws-sdk/lib-storage"))
    const where = `s3://${location.bucket}${location.prefix === "" ? "" : `/${location.prefix}`}`
    return {
      location: where,
      keyOf: (key) => objectKey(location, key),
      put: (key, body, contentType) =>
        Effect.async<void, StorageError>((resume) => {
          const upload = new Upload({
            client,
            params: { Bucket: location.bucket, Key: objectKey(location, key), Body: body, ContentType: contentType },
            partSize,
            queueSize: 4,
            leavePartsOnError: false
          })
          upload.done().then(() => resume(Effect.void), (e) => resume(Effect.fail(failure(where, key)(e))))
          return Effect.promise(() => upload.abort().catch(() => undefined))
        }).pipe(
          // A connection that hangs must not hold the writer for ever: aborted, retried later.
          Effect.timeoutFail({ duration: PUT_TIMEOUT, onTimeout: () => failure(where, key)(`no answer within ${Duration.format(PUT_TIMEOUT)}`) })
        ),
      remove: (key) =>
        Effect.tryPromise({
          try: (signal) => client.send(new DeleteObjectCommand({ Bucket: location.bucket, Key: objectKey(location, key) }), { abortSignal: signal }),
          catch: failure(where, key)
        }).pipe(Effect.asVoid)
    } satisfies ObjectStore
  })

export const directory = (root: string): ObjectStore => {
  const absolute = path.resolve(root)
  return {
    location: absolute,
    keyOf: (key) => key,
    put: (key, body) =>
      Effect.tryPromise({ try: () => writeWholeFile(path.join(absolute, key), body), catch: failure(absolute, key) }),
    remove: (key) => Effect.tryPromise({ try: () => fs.rm(path.join(absolute, key), { force: true }), catch: failure(absolute, key) })
  }
}
