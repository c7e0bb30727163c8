/** The ETL sink's settings (WEARFLOW_ETL_*, AWS_*), read through the plugin's sandbox. */
import { type S3Location, s3LocationConfig } from "@wearflow/core/storage/s3"
import { Config, ConfigError, Duration, Either, Option } from "effect"
import * as path from "node:path"
import type { Format } from "./encode.ts"

export type Destination =
  | { readonly _tag: "Directory"; readonly path: string }
  | { readonly _tag: "Bucket"; readonly location: S3Location }

export interface Settings {
  /** Off: no files are written and nothing is staged. */
  readonly enabled: boolean
  readonly destination: Destination
  readonly format: Format
  /**
   * zlib's level for NDJSON files: lower writes faster and larger (bench:etl measures both).
   * 4 by default: on summary rows 2% larger than 6 for a third less compression time.
   */
  readonly gzipLevel: number
  /** A resource's staged events are sealed into a batch at whichever limit comes first. */
  readonly batch: {
    readonly records: number
    /** Of the events' JSON, before compression. */
    readonly bytes: number
    readonly age: Duration.Duration
  }
  /** Whether data that answers a backfill is written too (Junction's push_historical_data). */
  readonly historicalData: boolean
}

const positiveInteger = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

export const config: Config.Config<Settings> = Config.all({
  enabled: Config.boolean("WEARFLOW_ETL_ENABLED").pipe(Config.withDefault(true)),
  destination: Config.all({
    bucket: s3LocationConfig("WEARFLOW_ETL_S3", "wearflow"),
    // The default follows the app's data directory: ./.wearflow/etl unless it moved.
    dir: Config.option(Config.string("WEARFLOW_ETL_DIR")),
    dataDir: Config.string("WEARFLOW_DATA_DIR").pipe(Config.withDefault("./.wearflow")),
    endpoint: Config.option(Config.string("WEARFLOW_ETL_S3_ENDPOINT"))
  }).pipe(
    Config.mapOrFail(({ bucket, dataDir, dir, endpoint }): Either.Either<Destination, ConfigError.ConfigError> =>
      Option.match(bucket, {
        onSome: (location) => Either.right({ _tag: "Bucket", location }),
        // An endpoint without a bucket would quietly write to the local directory instead.
        onNone: () =>
          Option.isSome(endpoint)
            ? Either.left(ConfigError.InvalidData([], "WEARFLOW_ETL_S3_ENDPOINT is set but WEARFLOW_ETL_S3_BUCKET is not"))
            : Either.right({ _tag: "Directory", path: Option.getOrElse(dir, () => path.join(dataDir, "etl")) })
      })
    )
  ),
  format: Config.literal("ndjson", "parquet")("WEARFLOW_ETL_FORMAT").pipe(Config.withDefault("ndjson" as const)),
  gzipLevel: Config.integer("WEARFLOW_ETL_GZIP_LEVEL").pipe(
    Config.withDefault(4),
    Config.validate({ message: "WEARFLOW_ETL_GZIP_LEVEL must be 1-9", validation: (n) => n >= 1 && n <= 9 })
  ),
  batch: Config.all({
    records: positiveInteger("WEARFLOW_ETL_BATCH_RECORDS", 100_000),
    bytes: positiveInteger("WEARFLOW_ETL_BATCH_BYTES", 64 * 1024 * 1024),
    age: Config.number("WEARFLOW_ETL_BATCH_SECONDS").pipe(
      Config.withDefault(60),
      Config.validate({ message: "WEARFLOW_ETL_BATCH_SECONDS must be positive", validation: (n) => n > 0 }),
      Config.map((s) => Duration.millis(s * 1000))
    )
  }),
  historicalData: Config.boolean("WEARFLOW_ETL_HISTORICAL_DATA").pipe(Config.withDefault(true))
})
