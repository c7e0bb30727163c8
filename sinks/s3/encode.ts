/**
 * A batch's rows as file bytes: gzipped NDJSON, or Parquet written by DuckDB with the column
 * types of the resource's Schema (rows.ts). Both run off the event loop (zlib's and DuckDB's
 * own threads).
 */
import { Data, Effect, Metric, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as zlib from "node:zlib"
import type { ResourceRows } from "./rows.ts"

export type Format = "ndjson" | "parquet"

export const extensionOf: Record<Format, string> = { ndjson: "ndjson.gz", parquet: "parquet" }
export const contentTypeOf: Record<Format, string> = { ndjson: "application/x-ndjson", parquet: "application/vnd.apache.parquet" }

/** Rows that could not be turned into a file: a value outside its schema, or the encoder could not start. */
export class EncodeError extends Data.TaggedError("EncodeError")<{ readonly message: string; readonly retryable: boolean }> {}

/**
 * Seconds a writer spent on each stage of writing batches (`read` a page of events, `render`
 * its lines, wait for `gzip`, `store` the file), summed over pages: reads overlap the
 * rendering and compression of the page before.
 */
export const writeSeconds = (stage: "read" | "render" | "gzip" | "store") =>
  Metric.counter("wearflow_etl_write_stage_seconds_total", { description: "Seconds spent per stage of writing ETL batches" }).pipe(
    Metric.tagged("stage", stage)
  )

const ndjson = (rows: ReadonlyArray<Record<string, unknown>>) => {
  let text = ""
  for (const row of rows) text += JSON.stringify(row) + "\n"
  return text
}

type Rows = ReadonlyArray<Record<string, unknown>>

export interface Encoder {
  readonly encode: (resource: ResourceRows, rows: Rows) => Effect.Effect<Uint8Array, EncodeError>
  /**
   * Pages of NDJSON lines (each line with its "\n"), in order, as one file: only a page's text
   * (two, while gzip compresses the one before) is held at a time.
   */
  readonly encodeLines: <E, R>(resource: ResourceRows, pages: Stream.Stream<string, E, R>) => Effect.Effect<Uint8Array, EncodeError | E, R>
}

/** An encoder from its paged form. */
const ofLines = (encodeLines: Encoder["encodeLines"]): Encoder => ({
  encode: (resource, rows) => encodeLines(resource, Stream.make(ndjson(rows))),
  encodeLines
})

/** The encoder itself failed (zlib, DuckDB starting, a scratch file): worth trying again. */
const failed = (what: string) => (e: unknown) =>
  new EncodeError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}`, retryable: true })

/** DuckDB's kinds of error that mean the rows themselves do not fit: trying again cannot help. */
const REFUSALS = new Set(["Conversion Error", "Invalid Input Error", "Out of Range Error", "Binder Error"])

/**
 * DuckDB failed to turn the rows into Parquet. Its message may quote the offending value, so
 * only its kind ("Conversion Error") is kept: no health data in logs or tables.
 */
const duckdbFailed = (resource: string) => (e: unknown) => {
  const kind = /^[A-Za-z ]*Error/.exec(e instanceof Error ? e.message : "")?.[0] ?? "Error"
  return REFUSALS.has(kind)
    ? new EncodeError({ message: `parquet (${resource}): a value does not fit its column type (DuckDB ${kind})`, retryable: false })
    : new EncodeError({ message: `parquet (${resource}): DuckDB ${kind}`, retryable: true })
}

/** Waits for zlib, counting the wait as the gzip stage. */
const waitingForGzip = (wait: () => Promise<void>) =>
  Effect.tryPromise({
    try: async () => {
      const start = performance.now()
      await wait()
      return (performance.now() - start) / 1000
    },
    catch: failed("gzip")
  }).pipe(Effect.flatMap((seconds) => Metric.incrementBy(writeSeconds("gzip"), seconds)))

/**
 * Gzipped NDJSON, one row per line, at zlib's `level` (1-9). Served as .ndjson.gz, no
 * Content-Encoding: the object is the gzip file.
 */
export const ndjsonGzip = (level: number): Encoder => ofLines((_resource, pages) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const gzip = zlib.createGzip({ level })
      const out: Array<Buffer> = []
      gzip.on("data", (chunk: Buffer) => out.push(chunk))
      const ended = new Promise<void>((resolve, reject) => {
        gzip.once("end", resolve)
        gzip.once("error", reject)
      })
      ended.catch(() => {})
      return { gzip, out, ended, written: Promise.resolve() }
    }),
    (state) =>
      // A page is read and rendered while zlib still compresses the one before (its own thread):
      // one page waits at most, so memory stays at two pages' text.
      Stream.runForEach(pages, (text) =>
        waitingForGzip(() => {
          const before = state.written
          state.written = new Promise<void>((resolve, reject) => state.gzip.write(text, (e) => (e ? reject(e) : resolve())))
          state.written.catch(() => {})
          return before
        })).pipe(
          Effect.zipRight(waitingForGzip(async () => {
            await state.written
            state.gzip.end()
            return state.ended
          })),
          Effect.map(() => {
            const b = Buffer.concat(state.out)
            return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
          })
        ),
    ({ gzip }) => Effect.sync(() => gzip.destroy())
  )
)

/**
 * Parquet through an in-process DuckDB: the rows are written as NDJSON to a scratch file,
 * read back with the schema's column types (so a value outside its type fails here, not in
 * the consumer's query) and copied to a zstd-compressed Parquet file.
 */
export const parquet = Effect.gen(function* () {
  const instance = yield* Effect.acquireRelease(
    // Loaded here, not at start: DuckDB costs tens of MB that an NDJSON-only server need not carry.
    Effect.tryPromise({ try: () => import("@duckdb/node-api").then(({ DuckDBInstance }) => DuckDBInstance.create(":memory:", { threads: "2" })), catch: failed("duckdb") }),
    (db) => Effect.sync(() => db.closeSync())
  )
  const scratch = yield* Effect.acquireRelease(
    Effect.tryPromise({ try: () => fs.mkdtemp(path.join(os.tmpdir(), "wearflow-etl-")), catch: failed("scratch directory") }),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
  )
  const encoder: Encoder = ofLines((resource, pages) =>
      Effect.acquireUseRelease(
        Effect.sync(() => path.join(scratch, randomBytes(8).toString("hex"))),
        (base) =>
          Effect.tryPromise({ try: () => fs.writeFile(`${base}.ndjson`, ""), catch: failed(`parquet scratch file (${resource.resource})`) }).pipe(
            Effect.zipRight(Stream.runForEach(pages, (text) =>
              Effect.tryPromise({ try: () => fs.appendFile(`${base}.ndjson`, text), catch: failed(`parquet scratch file (${resource.resource})`) }))),
            Effect.zipRight(Effect.tryPromise({
              try: async () => {
                const connection = await instance.connect()
                try {
                  await connection.run(
                    `COPY (SELECT * FROM read_json('${base}.ndjson', format = 'newline_delimited', columns = ${resource.duckColumns}))
                     TO '${base}.parquet' (FORMAT parquet, COMPRESSION zstd)`
                  )
                } finally {
                  connection.closeSync()
                }
              },
              catch: duckdbFailed(resource.resource)
            })),
            Effect.zipRight(Effect.tryPromise({ try: () => fs.readFile(`${base}.parquet`), catch: failed(`parquet (${resource.resource})`) })),
            Effect.map((bytes) => new Uint8Array(bytes))
          ),
        (base) => Effect.promise(() => Promise.all([fs.rm(`${base}.ndjson`, { force: true }), fs.rm(`${base}.parquet`, { force: true })]))
      ))
  return encoder
})
