/**
 * Activity files (FIT, TCX, GPX) fetched for PING items: stored once by content under the
 * files directory, and recorded for every user the provider account is linked to.
 */
import { SqlClient } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Pulled } from "../provider.ts"
import type { Recipient } from "./store.ts"

export class FileStoreError extends Data.TaggedError("FileStoreError")<{ readonly message: string }> {
  readonly retryable = true
}

type PulledFile = Extract<Pulled, { readonly _tag: "File" }>

export class ActivityFiles extends Context.Tag("wearflow/ActivityFiles")<
  ActivityFiles,
  { readonly save: (provider: string, recipients: ReadonlyArray<Recipient>, file: PulledFile) => Effect.Effect<string, FileStoreError | import("@effect/sql").SqlError.SqlError> }
>() {
  /** Files kept in a local directory (`<data dir>/files` in the app). */
  static readonly layerLocal = (directory: string) =>
    Layer.effect(
      ActivityFiles,
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const write = (location: string, bytes: Uint8Array) =>
          Effect.tryPromise({
            try: async () => {
              await fs.mkdir(path.dirname(location), { recursive: true })
              // Written aside and renamed: a crash never leaves half a file under the final name.
              const partial = `${location}.${randomBytes(4).toString("hex")}.partial`
              await fs.writeFile(partial, bytes)
              await fs.rename(partial, location)
            },
            catch: (e) => new FileStoreError({ message: `cannot store activity file: ${e instanceof Error ? e.message : String(e)}` })
          })

        const save = Effect.fn("ActivityFiles.save")(function* (provider: string, recipients: ReadonlyArray<Recipient>, file: PulledFile) {
          const sha256 = createHash("sha256").update(file.bytes).digest()
          const extension = file.fileType.toLowerCase().replace(/[^a-z0-9]/g, "") || "bin"
          const location = path.resolve(directory, provider, `${sha256.toString("hex")}.${extension}`)
          yield* write(location, file.bytes)
          for (const recipient of recipients) {
            yield* sql`
              insert into activity_files (user_id, provider, summary_id, activity_id, file_type, content_type, location, size_bytes, sha256)
              values (${recipient.userId}, ${provider}, ${file.summaryId}, ${file.activityId ?? null}, ${file.fileType}, ${file.contentType},
                      ${location}, ${file.bytes.length}, ${sha256})
              on conflict (user_id, provider, summary_id) do update set
                activity_id = excluded.activity_id, file_type = excluded.file_type, content_type = excluded.content_type,
                location = excluded.location, size_bytes = excluded.size_bytes, sha256 = excluded.sha256, downloaded_at = now()`
          }
          return location
        })
        return { save }
      })
    )
}
