/**
 * Activity files into an S3-compatible bucket: the real server pulls a file a PING announces
 * and puts it in a real S3-protocol server (s3rver) on loopback; with the bucket down, the
 * single-use file is kept on local disk rather than lost.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeGarmin } from "../providers/garmin/testing/fake-garmin.ts"
import { type S3Server, startS3 } from "./support/s3.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { type RunningServer } from "./support/server.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "files-consumer-key", consumerSecret: "files-consumer-secret" }
const API_KEY = "files-api-key"
const BUCKET = "wearflow-files"

let stack: GarminStack
let garmin: FakeGarmin
let s3: S3Server
let server: RunningServer
let db: pg.Client

const api = wearflowApi(() => server.baseUrl, API_KEY)
const ping = garminWebhook(() => server.baseUrl, CONSUMER.consumerKey, "ping")
const outcomeOf = inboxOutcomes(() => db, 30_000)

const linkedUser = async (clientUserId: string, garminUserId: string) => {
  garmin.addUser(garminUserId)
  const created = await api("POST", "/v2/user", { client_user_id: clientUserId })
  const userId = created.body.user_id as string
  const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, { provider_user_id: garminUserId })
  expect(linked.status).toBe(200)
  return userId
}

beforeAll(async () => {
  s3 = await startS3(BUCKET)
  stack = await startGarminStack({
    name: "files",
    consumer: CONSUMER,
    apiKey: API_KEY,
    env: {
      WEARFLOW_FILES_S3_BUCKET: BUCKET,
      WEARFLOW_FILES_S3_ENDPOINT: s3.url,
      WEARFLOW_FILES_S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER"
    }
  })
  ;({ garmin, server, db } = stack)
})

afterAll(async () => {
  await stack?.close()
  await s3?.close()
})

describe("activity files in an S3-compatible bucket", () => {
  it("puts a pulled FIT file into the bucket, named by its SHA-256, and links it to the user and activity", async () => {
    const userId = await linkedUser("s3-file", "garmin-s3-file")
    const bytes = new Uint8Array([14, 16, 0x9b, 0x08, 0x2e, 0x46, 0x49, 0x54, 1, 2, 3])
    const callbackURL = garmin.addActivityFile("garmin-s3-file", { id: "s3-file-1", bytes })
    const inboxId = await ping({ activityFiles: [{ userId: "garmin-s3-file", summaryId: "s3-file-1", activityId: 7001, fileType: "FIT", callbackURL }] })
    expect((await outcomeOf(inboxId)).pulled).toBe(1)

    const row = (await db.query("select activity_id, size_bytes, location, encode(sha256, 'hex') as sha from activity_files where user_id = $1", [userId])).rows[0]
    expect(row).toMatchObject({ activity_id: "7001", size_bytes: "11", location: `s3://${BUCKET}/activity-files/garmin/${row.sha}.fit` })
    expect(new Uint8Array(await s3.get(`activity-files/garmin/${row.sha}.fit`))).toEqual(bytes)
  })

  it("keeps the single-use file on local disk when the bucket is down", async () => {
    const userId = await linkedUser("s3-down", "garmin-s3-down")
    s3.down = true
    const bytes = new Uint8Array([14, 16, 0x9b, 0x08, 0x2e, 0x46, 0x49, 0x54, 9, 9])
    const callbackURL = garmin.addActivityFile("garmin-s3-down", { id: "s3-file-2", bytes })
    const inboxId = await ping({ activityFiles: [{ userId: "garmin-s3-down", summaryId: "s3-file-2", fileType: "FIT", callbackURL }] })
    expect((await outcomeOf(inboxId)).pulled).toBe(1)
    const row = (await db.query("select location from activity_files where user_id = $1", [userId])).rows[0]
    expect(row.location.startsWith(path.resolve(stack.dataDir, "files"))).toBe(true)
    expect(new Uint8Array(await fs.readFile(row.location))).toEqual(bytes)
    expect(server.logs()).toContain("the bucket refused an activity file; kept it on local disk")
    s3.down = false
  })
})
