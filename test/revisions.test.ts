/**
 * Garmin revisions through inbox → ingest worker → store + outbox, against a real Postgres:
 * a final sleep replaces the tentative one of the same night, a full epoch replaces its
 * partial, and a re-sent summary changes the store only when its content changed.
 * Bodies are the recorded fixtures, revised in the test.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import { Inbox } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import { Effect, Either, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freshDatabaseUrl } from "./support/database.ts"
import { pipelineServices } from "./support/pipeline.ts"

type Raw = Record<string, unknown>
const fixture = (name: string): Array<Raw> =>
  JSON.parse(readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8"))[name]

const url = await freshDatabaseUrl()

const Services = pipelineServices({
  databaseUrl: url,
  tokenKeys: [randomBytes(32)],
  filesDir: path.join(os.tmpdir(), "wearflow-revisions-files"),
  pollInterval: "20 millis"
})

const range = Either.getOrThrow(parseDateRange("2000-01-01", "2100-01-01"))

/** The provider as `Accounts.link` needs it; the connection event's availability is not under test. */
const garmin = { id: "garmin", name: "Garmin", resourceScopes: {} }

/** A fresh user linked to a fresh Garmin user id, so every test sees only its own data. */
const linkedUser = (name: string) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const garminUserId = `garmin-${name}-${randomBytes(4).toString("hex")}`
    const teamId = yield* accounts.ensureTeamKey(name, Redacted.make(`key-${name}`))
    const user = yield* accounts.createUser(teamId, `${name}-${randomBytes(4).toString("hex")}`)
    yield* links.link(teamId, user.user_id, garmin, garminUserId, {})
    return { ...user, garminUserId }
  })

/** Commits a PUSH body to the inbox (as the webhook does) without processing it. */
const commit = (body: Raw) => Effect.flatMap(Inbox, (inbox) => inbox.commit({ provider: "garmin", kind: "push", body: JSON.stringify(body), itemCount: 0 }))
const processItem = (inboxId: number) => Effect.flatMap(IngestWorker, (worker) => worker.process({ inboxId }))
const ingest = (body: Raw) => Effect.flatMap(commit(body), processItem)

const eventTypes = (userId: string, resource: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ event_type: string }>`
      select event_type from outbox where user_id = ${userId} and event_type like ${`daily.data.${resource}.%`} order by position`
  ).pipe(Effect.map((rows) => rows.map((r) => r.event_type)))

const sleepsOf = (userId: string) => Effect.flatMap(DataQuery, (query) => query.summaries(userId, "sleep", range))
const samplesOf = (userId: string, resource: "steps" | "calories_active" | "distance" | "blood_oxygen" | "respiratory_rate") =>
  Effect.flatMap(DataQuery, (query) => query.samples(userId, resource, range)).pipe(
    Effect.map((samples) => samples.map((s) => [s.timestamp, (s as { value?: number }).value]))
  )

const iso = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString()

// Sleeps: the fixture's night of 2016-01-10, first as Garmin's tentative record, then as the
// final one: a start two minutes later, revised stages and samples, and another summaryId
// (Garmin's ids embed start and duration).
// Without the fixture's nap and stage map, so the counts and times here are the night's own.
const night = { ...fixture("sleeps")[0]!, naps: [], sleepLevelsMap: null }
const TENTATIVE_START = 1452467493
const FINAL_START = TENTATIVE_START + 120
const sleepId = (start: number, duration: number) => `x153a9f3-${start.toString(16)}-${duration.toString(16)}`

const tentativeSleep = (garminUserId: string): Raw => ({
  ...night,
  userId: garminUserId,
  summaryId: sleepId(TENTATIVE_START, 11900),
  validation: "AUTO_TENTATIVE"
})

const finalSleep = (garminUserId: string): Raw => ({
  ...night,
  userId: garminUserId,
  summaryId: sleepId(FINAL_START, 11700),
  validation: "AUTO_FINAL",
  startTimeInSeconds: FINAL_START,
  durationInSeconds: 11700,
  deepSleepDurationInSeconds: 8000,
  lightSleepDurationInSeconds: 1200,
  awakeDurationInSeconds: 358,
  overallSleepScore: { value: 90, qualifierKey: "EXCELLENT" },
  timeOffsetSleepRespiration: { "60": 14, "120": 13, "180": 12.5 },
  timeOffsetSleepSpo2: { "0": 94, "60": 95, "120": 96 }
})

/** What the stored sleep must look like once the final record is in. */
const finalValues = {
  calendar_date: "2016-01-10",
  bedtime_start: iso(FINAL_START),
  bedtime_stop: iso(FINAL_START + 11700),
  duration: 11700,
  deep: 8000,
  light: 1200,
  rem: 2142,
  awake: 358,
  total: 8000 + 1200 + 2142,
  score: 90,
  respiratory_rate: 13.2 // (14 + 13 + 12.5) / 3
}
const finalSpo2 = [[iso(FINAL_START), 94], [iso(FINAL_START + 60), 95], [iso(FINAL_START + 120), 96]]

// Epochs: the fixture's partial WALKING epoch (840 s), then the full one (900 s) for the same
// slice under another summaryId, next to a SEDENTARY record of the same slice.
const [partialRaw, sedentaryRaw] = fixture("epochs")
const SLICE = 1519679700

const partialEpoch = (garminUserId: string): Raw => ({ ...partialRaw, userId: garminUserId })
const fullEpoch = (garminUserId: string): Raw => ({
  ...partialRaw,
  userId: garminUserId,
  summaryId: `x153a9f3-${SLICE.toString(16)}-384`,
  durationInSeconds: 900,
  steps: 120,
  activeKilocalories: 30,
  distanceInMeters: 63.5
})
const sedentaryEpoch = (garminUserId: string): Raw => ({
  ...sedentaryRaw,
  userId: garminUserId,
  summaryId: `x153a9f3-${SLICE.toString(16)}-0`,
  startTimeInSeconds: SLICE,
  startTimeOffsetInSeconds: -21600
})

layer(Services, { timeout: 60_000 })("revisions", (it) => {
  it.effect("a final sleep under another summaryId replaces the tentative one: one sleep, .updated, the final's values", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("final-sleep")
      const first = yield* ingest({ sleeps: [tentativeSleep(user.garminUserId)] })
      expect(first).toMatchObject({ items: 1, created: 3, updated: 0, errors: [] }) // sleep, respiration, SpO2
      const [tentative] = yield* sleepsOf(user.user_id)

      const second = yield* ingest({ sleeps: [finalSleep(user.garminUserId)] })
      expect(second).toMatchObject({ items: 1, created: 0, updated: 3, unchanged: 0, errors: [] })

      const sleeps = yield* sleepsOf(user.user_id)
      expect(sleeps).toHaveLength(1)
      expect(sleeps[0]).toMatchObject(finalValues)
      expect(sleeps[0]!.id).toBe(tentative!.id)
      expect(yield* eventTypes(user.user_id, "sleep")).toEqual(["daily.data.sleep.created", "daily.data.sleep.updated"])
      expect(yield* eventTypes(user.user_id, "blood_oxygen")).toEqual(["daily.data.blood_oxygen.created", "daily.data.blood_oxygen.updated"])

      // The event carries the final values too, so sinks replace the row they hold.
      const sql = yield* SqlClient.SqlClient
      const [updated] = yield* sql<{ payload: { data: Record<string, unknown> } }>`
        select payload from outbox where user_id = ${user.user_id} and event_type = 'daily.data.sleep.updated'`
      expect(updated!.payload.data).toMatchObject({ ...finalValues, id: tentative!.id })

      // Every final sample is stored with the final's value.
      const spo2 = new Map((yield* samplesOf(user.user_id, "blood_oxygen")).map(([ts, value]) => [ts, value]))
      for (const [ts, value] of finalSpo2) expect(spo2.get(ts as string)).toBe(value)
    }))

  it.effect("an identical re-send of the final sleep writes nothing and emits nothing", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("resent-sleep")
      yield* ingest({ sleeps: [tentativeSleep(user.garminUserId)] })
      yield* ingest({ sleeps: [finalSleep(user.garminUserId)] })
      const events = yield* eventTypes(user.user_id, "%")

      const again = yield* ingest({ sleeps: [finalSleep(user.garminUserId)] })
      expect(again).toMatchObject({ items: 1, created: 0, updated: 0, unchanged: 3 })
      expect(yield* eventTypes(user.user_id, "%")).toEqual(events)
      expect(yield* sleepsOf(user.user_id)).toHaveLength(1)
    }))

  it.effect("the older tentative inbox item, processed after the final one, does not overwrite it", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("late-tentative-item")
      const older = yield* commit({ sleeps: [tentativeSleep(user.garminUserId)] })
      const newer = yield* commit({ sleeps: [finalSleep(user.garminUserId)] })
      yield* processItem(newer)
      const late = yield* processItem(older)
      expect(late).toMatchObject({ items: 1, created: 0, updated: 0, unchanged: 3 })

      const sleeps = yield* sleepsOf(user.user_id)
      expect(sleeps).toHaveLength(1)
      expect(sleeps[0]).toMatchObject(finalValues)
      expect(yield* eventTypes(user.user_id, "sleep")).toEqual(["daily.data.sleep.created"])
    }))

  it.effect("a sleep re-sent under its summaryId with new content emits .updated; identical content emits nothing", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("same-summary-id")
      const sleep = { ...night, userId: user.garminUserId }
      yield* ingest({ sleeps: [sleep] })
      const revised = yield* ingest({ sleeps: [{ ...sleep, overallSleepScore: { value: 80, qualifierKey: "GOOD" } }] })
      // Only the summary changed; the samples are the same.
      expect(revised).toMatchObject({ created: 0, updated: 1, unchanged: 2 })
      const again = yield* ingest({ sleeps: [{ ...sleep, overallSleepScore: { value: 80, qualifierKey: "GOOD" } }] })
      expect(again).toMatchObject({ created: 0, updated: 0, unchanged: 3 })

      expect(yield* eventTypes(user.user_id, "sleep")).toEqual(["daily.data.sleep.created", "daily.data.sleep.updated"])
      const sleeps = yield* sleepsOf(user.user_id)
      expect(sleeps.map((s) => s.score)).toEqual([80])
    }))

  it.effect("the full epoch replaces the partial one: one sample per slice and activity type, with the full epoch's values", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("full-epoch")
      const partial = yield* ingest({ epochs: [partialEpoch(user.garminUserId)] })
      expect(partial).toMatchObject({ items: 1, created: 3, errors: [] }) // steps, calories, distance
      expect(yield* samplesOf(user.user_id, "steps")).toEqual([[iso(SLICE), 93]])

      const full = yield* ingest({ epochs: [sedentaryEpoch(user.garminUserId), fullEpoch(user.garminUserId)] })
      // The sedentary record of the slice is a record of its own, with its measured zeros.
      expect(full).toMatchObject({ items: 2, created: 3, updated: 3, unchanged: 0, errors: [] })

      const sorted = (samples: ReadonlyArray<ReadonlyArray<unknown>>) => [...samples].sort((a, b) => Number(a[1]) - Number(b[1]))
      expect(sorted(yield* samplesOf(user.user_id, "steps"))).toEqual([[iso(SLICE), 0], [iso(SLICE), 120]])
      expect(sorted(yield* samplesOf(user.user_id, "calories_active"))).toEqual([[iso(SLICE), 0], [iso(SLICE), 30]])
      expect(sorted(yield* samplesOf(user.user_id, "distance"))).toEqual([[iso(SLICE), 0], [iso(SLICE), 63.5]])
      const steps = ["daily.data.steps.created", "daily.data.steps.created", "daily.data.steps.updated"]
      expect(yield* eventTypes(user.user_id, "steps")).toEqual(steps)

      const sql = yield* SqlClient.SqlClient
      const [records] = yield* sql<{ n: number }>`
        select count(*)::int as n from records where user_id = ${user.user_id} and resource = 'steps'`
      expect(records!.n).toBe(2)

      const again = yield* ingest({ epochs: [fullEpoch(user.garminUserId)] })
      expect(again).toMatchObject({ created: 0, updated: 0, unchanged: 3 })
      expect(yield* eventTypes(user.user_id, "steps")).toEqual(steps)
    }))

  it.effect("the older partial epoch inbox item, processed after the full one, does not overwrite it", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("late-partial-item")
      const older = yield* commit({ epochs: [partialEpoch(user.garminUserId)] })
      const newer = yield* commit({ epochs: [fullEpoch(user.garminUserId)] })
      yield* processItem(newer)
      const late = yield* processItem(older)
      expect(late).toMatchObject({ items: 1, created: 0, updated: 0, unchanged: 3 })
      expect(yield* samplesOf(user.user_id, "steps")).toEqual([[iso(SLICE), 120]])
      expect(yield* samplesOf(user.user_id, "distance")).toEqual([[iso(SLICE), 63.5]])
    }))

  it.effect("an epoch re-sent under its summaryId with new content emits .updated; identical content emits nothing", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("same-epoch-id")
      const epoch = fullEpoch(user.garminUserId)
      yield* ingest({ epochs: [epoch] })
      const revised = yield* ingest({ epochs: [{ ...epoch, steps: 150 }] })
      expect(revised).toMatchObject({ created: 0, updated: 1, unchanged: 2 })
      const again = yield* ingest({ epochs: [{ ...epoch, steps: 150 }] })
      expect(again).toMatchObject({ created: 0, updated: 0, unchanged: 3 })
      expect(yield* samplesOf(user.user_id, "steps")).toEqual([[iso(SLICE), 150]])
      expect(yield* eventTypes(user.user_id, "steps")).toEqual(["daily.data.steps.created", "daily.data.steps.updated"])
    }))

  it.effect("samples the tentative sleep had and the final one lacks are removed", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("stale-samples")
      yield* ingest({ sleeps: [tentativeSleep(user.garminUserId)] })
      yield* ingest({ sleeps: [finalSleep(user.garminUserId)] })
      // The tentative's seven SpO2 samples started two minutes earlier than the final's three.
      expect(yield* samplesOf(user.user_id, "blood_oxygen")).toEqual(finalSpo2)
    }))
})
