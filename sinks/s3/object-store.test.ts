/**
 * The ETL sink's object stores against a real S3-protocol server (s3rver) on loopback and a
 * real directory: multipart uploads for large objects, overwrites under the same key, and
 * clear errors when the storage refuses.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type { S3Location } from "@wearflow/core/storage/s3"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Host from "@wearflow/core/host"
import * as OutboundHttp from "@wearflow/core/http-client"
import { Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { type S3Server, startS3 } from "../../test/support/s3.ts"
import { bucket, directory } from "./object-store.ts"

const BUCKET = "object-store-test"
let s3: S3Server
let scratch = ""

const location = (overrides: Partial<S3Location> = {}): S3Location => ({
  bucket: BUCKET,
  prefix: "etl",
  region: "us-east-1",
  endpoint: Option.some(s3.url),
  forcePathStyle: true,
  credentials: Option.some({ accessKeyId: Redacted.make("S3RVER"), secretAccessKey: Redacted.make("S3RVER") }),
  ...overrides
})

beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-object-store-"))
  s3 = await startS3(BUCKET)
})

afterAll(async () => {
  await s3.close()
  await fs.rm(scratch, { recursive: true, force: true })
})

const read = (key: string) => s3.get(key)

/** The plugin's HttpClient as the host gives it: undici, refusing hosts outside `net`. */
const guarded = (net: () => ReadonlyArray<string>) =>
  Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, (client) => Host.guardHttpClient("s3", net(), client))).pipe(
    Layer.provide(OutboundHttp.layer())
  )
const declared = guarded(() => [new URL(s3.url).host])
/** The manifest's `net` as the sink passes it when it makes the bucket's client. */
const permitted = () => ({ plugin: "s3", hosts: [new URL(s3.url).host] })

describe("bucket", () => {
  it.scoped("uploads a large object in parts, under the prefix", () =>
    Effect.gen(function* () {
      const store = yield* bucket(location(), permitted(), 5 * 1024 * 1024)
      const body = randomBytes(12 * 1024 * 1024)
      yield* store.put("resource=steps/date=2026-11-22/big.parquet", body, "application/vnd.apache.parquet")
      const requests = s3.requests.map(decodeURIComponent).filter((r) => r.includes("/etl/resource=steps/"))
      expect(requests.filter((r) => r.startsWith("POST") && r.includes("?uploads"))).toHaveLength(1)
      expect(requests.filter((r) => r.includes("x-id=UploadPart"))).toHaveLength(3)
      expect((yield* Effect.promise(() => read("etl/resource=steps/date=2026-11-22/big.parquet"))).equals(body)).toBe(true)
      expect(store.keyOf("x.json")).toBe("etl/x.json")
      expect(store.location).toBe(`s3://${BUCKET}/etl`)
    }).pipe(Effect.provide(declared)))

  it.scoped("overwrites an object put again under the same key, and removes it", () =>
    Effect.gen(function* () {
      const store = yield* bucket(location(), permitted())
      yield* store.put("same.json", Buffer.from("first"), "application/json")
      yield* store.put("same.json", Buffer.from("second"), "application/json")
      expect((yield* Effect.promise(() => read("etl/same.json"))).toString()).toBe("second")
      yield* store.remove("same.json")
      const gone = yield* Effect.either(Effect.tryPromise(() => read("etl/same.json")))
      expect(gone._tag).toBe("Left")
    }).pipe(Effect.provide(declared)))

  it.scoped("fails with a StorageError naming the bucket when it does not exist", () =>
    Effect.gen(function* () {
      const store = yield* bucket(location({ bucket: "no-such-bucket" }), permitted())
      const error = yield* Effect.flip(store.put("x.json", Buffer.from("{}"), "application/json"))
      expect(error._tag).toBe("StorageError")
      expect(error.message).toContain("s3://no-such-bucket/etl")
    }).pipe(Effect.provide(declared)))

  it.scoped("reaches only the hosts the manifest declares: anything else is refused before connecting", () =>
    Effect.gen(function* () {
      const before = s3.requests.length
      const store = yield* bucket(location(), permitted())
      const error = yield* Effect.flip(store.put("x.json", Buffer.from("{}"), "application/json"))
      expect(error._tag).toBe("StorageError")
      expect(error.message).toContain("may not connect")
      expect(s3.requests.length).toBe(before)
    }).pipe(Effect.provide(guarded(() => ["s3.us-east-1.amazonaws.com"]))))

  it.scoped("refuses to make a client for an endpoint the manifest does not declare, naming plugin and host", () =>
    Effect.gen(function* () {
      const before = s3.requests.length
      const refused = yield* Effect.flip(bucket(location(), { plugin: "s3", hosts: ["s3.us-east-1.amazonaws.com", "*.s3.us-east-1.amazonaws.com"] }))
      expect(refused).toMatchObject({ _tag: "NetPermissionDenied", plugin: "s3", host: new URL(s3.url).host })
      expect(refused.message).toBe(`plugin s3 may not connect to ${new URL(s3.url).host}: not in its declared net permissions`)
      // Without an endpoint: AWS S3 in the region, which must be declared too.
      const aws = location({ endpoint: Option.none(), region: "eu-west-1" })
      expect(yield* Effect.flip(bucket(aws, permitted()))).toMatchObject({ _tag: "NetPermissionDenied", host: "s3.eu-west-1.amazonaws.com" })
      yield* bucket(aws, { plugin: "s3", hosts: ["s3.eu-west-1.amazonaws.com"] })
      expect(s3.requests.length).toBe(before)
    }).pipe(Effect.provide(declared)))
})

describe("directory", () => {
  it.effect("writes whole files (no partials left), overwrites and removes them", () =>
    Effect.gen(function* () {
      const root = path.join(scratch, "dir")
      const store = directory(root)
      yield* store.put("resource=hrv/date=2026-11-22/a.ndjson.gz", Buffer.from("one"), "application/x-ndjson")
      yield* store.put("resource=hrv/date=2026-11-22/a.ndjson.gz", Buffer.from("two"), "application/x-ndjson")
      const folder = path.join(root, "resource=hrv/date=2026-11-22")
      expect(yield* Effect.promise(() => fs.readdir(folder))).toEqual(["a.ndjson.gz"])
      expect((yield* Effect.promise(() => fs.readFile(path.join(folder, "a.ndjson.gz")))).toString()).toBe("two")
      yield* store.remove("resource=hrv/date=2026-11-22/a.ndjson.gz")
      expect(yield* Effect.promise(() => fs.readdir(folder))).toEqual([])
    }))

  it.effect("fails with a StorageError when the directory cannot be written", () =>
    Effect.gen(function* () {
      const file = path.join(scratch, "a-file")
      yield* Effect.promise(() => fs.writeFile(file, "not a directory"))
      const error = yield* Effect.flip(directory(file).put("x.json", Buffer.from("{}"), "application/json"))
      expect(error._tag).toBe("StorageError")
    }))
})
