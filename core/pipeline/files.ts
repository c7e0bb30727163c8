/**
 * Activity files (FIT, TCX, GPX) fetched for pointer items: stored once by content (its SHA-256
 * names it) in a local directory or an S3-compatible bucket, and recorded for every user the
 * provider account is linked to. Erasing a user removes the files no other user has.
 */
import type { S3Client } from "@aws-sdk/client-s3"
import { SqlClient } from "@effect/sql"
import { Context, Data, Effect, Layer, Schedule } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Fetched } from "../provider.ts"
import { objectKey, s3Client, type S3Location, s3Sdk } from "../storage/s3.ts"
import { writeWholeFile } from "../storage/whole-file.ts"
import type { Recipient } from "./store.ts"

export class FileStoreError extends Data.TaggedError("FileStoreError")<{ readonly message: string }> {
  readonly retryable = true
}

type FetchedFile = Extract<Fetched, { readonly _tag: "File" }>

/** Where files go: `put` stores bytes under a key and says where they are; `remove` deletes what is at such a place (if anything). */
interface FileStore {
  readonly put: (key: string, bytes: Uint8Array, contentType: string) => Effect.Effect<string, FileStoreError>
  readonly remove: (location: string) => Effect.Effect<void, FileStoreError>
}

/** The bucket activity files go to. */
export type S3FilesOptions = S3Location

const failure = (what: string) => (e: unknown) =>
  new FileStoreError({ message: `cannot store activity file (${what}): ${e instanceof Error ? e.message : String(e)}` })

const localStore = (directory: string): FileStore => ({
  put: (key, bytes) =>
    Effect.tryPromise({
      try: async () => {
        const location = path.resolve(directory, key)
        await writeWholeFile(location, bytes)
        return location
      },
      catch: failure("local directory")
    }),
  // Only what a local store writes (`<dir>/<provider>/<sha-256>.<ext>`), possibly another
  // process's directory on this machine; a file on another machine's disk is out of reach.
  remove: (location) =>
    path.isAbsolute(location) && /^[0-9a-f]{64}\.[a-z0-9]+$/.test(path.basename(location))
      ? Effect.tryPromise({ try: () => fs.rm(location, { force: true }), catch: failure("local directory") })
      : Effect.void
})

const s3Store = (client: S3Client, sdk: typeof import("@aws-sdk/client-s3"), options: S3FilesOptions): FileStore => ({
  put: (key, bytes, contentType) => {
    const fullKey = objectKey(options, key)
    return Effect.tryPromise({
      try: (signal) =>
        client.send(new sdk.PutObjectCommand({ Bucket: options.bucket, Key: fullKey, Body: bytes, ContentType: contentType }), { abortSignal: signal }),
      catch: failure(`bucket ${options.bucket}`)
    }).pipe(Effect.as(`s3://${options.bucket}/${fullKey}`))
  },
  remove: (location) => {
    const prefix = `s3://${options.bucket}/`
    if (!location.startsWith(prefix)) return Effect.void
    return Effect.tryPromise({
      try: (signal) => client.send(new sdk.DeleteObjectCommand({ Bucket: options.bucket, Key: location.slice(prefix.length) }), { abortSignal: signal }),
      catch: failure(`bucket ${options.bucket}`)
    }).pipe(Effect.asVoid)
  }
})

export class ActivityFiles extends Context.Tag("wearflow/ActivityFiles")<
  ActivityFiles,
  {
    readonly save: (provider: string, recipients: ReadonlyArray<Recipient>, file: FetchedFile) => Effect.Effect<string, FileStoreError | import("@effect/sql").SqlError.SqlError>
    /** Deletes stored files by their `location` (as activity_files records it); a missing one is no error. */
    readonly remove: (locations: ReadonlyArray<string>) => Effect.Effect<void, FileStoreError>
  }
>() {
  /** Files kept in a local directory (`<data dir>/files` in the app). */
  static readonly layerLocal = (directory: string) => Layer.effect(ActivityFiles, make(localStore(directory)))

  /**
   * Files kept in an S3-compatible bucket. A provider's file URLs may be single use, so a file the
   * bucket will not take (after retries) is kept in `fallbackDirectory` instead of lost.
   */
  static readonly layerS3 = (options: S3FilesOptions, fallbackDirectory: string) =>
    Layer.scoped(
      ActivityFiles,
      Effect.gen(function* () {
        const client = yield* s3Client(options)
        const bucket = s3Store(client, yield* s3Sdk, options)
        const local = localStore(fallbackDirectory)
        return yield* make({
          // A file may have fallen back to local disk: each store removes only what it wrote.
          remove: (location) => Effect.zipRight(bucket.remove(location), local.remove(location)),
          put: (key, bytes, contentType) =>
            bucket.put(key, bytes, contentType).pipe(
              Effect.retry(Schedule.exponential("500 millis").pipe(Schedule.intersect(Schedule.recurs(4)))),
              Effect.catchAll((error) =>
                Effect.logWarning("the bucket refused an activity file; kept it on local disk").pipe(
                  Effect.annotateLogs({ bucket: options.bucket, reason: error.message }),
                  Effect.zipRight(local.put(key, bytes, contentType))
                ))
            )
        })
      })
    )
}

const make = (store: FileStore) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const save = Effect.fn("ActivityFiles.save")(function* (provider: string, recipients: ReadonlyArray<Recipient>, file: FetchedFile) {
      const sha256 = createHash("sha256").update(file.bytes).digest()
      const extension = file.fileType.toLowerCase().replace(/[^a-z0-9]/g, "") || "bin"
      const location = yield* store.put(`${provider}/${sha256.toString("hex")}.${extension}`, file.bytes, file.contentType)
      for (const recipient of recipients) {
        yield* sql`
          insert into activity_files (user_id, provider, source_id, activity_id, file_type, content_type, location, size_bytes, sha256)
          values (${recipient.userId}, ${provider}, ${file.sourceId}, ${file.activityId ?? null}, ${file.fileType}, ${file.contentType},
                  ${location}, ${file.bytes.length}, ${sha256})
          on conflict (user_id, provider, source_id) do update set
            activity_id = excluded.activity_id, file_type = excluded.file_type, content_type = excluded.content_type,
            location = excluded.location, size_bytes = excluded.size_bytes, sha256 = excluded.sha256, downloaded_at = now()`
      }
      return location
    })
    const remove = (locations: ReadonlyArray<string>) => Effect.forEach(locations, store.remove, { discard: true })
    return { save, remove }
  })
