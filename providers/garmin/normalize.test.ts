import { Either, Schema } from "effect"
import { readFileSync, readdirSync } from "node:fs"
import { describe, expect, it } from "vitest"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import {
  ActivityFields,
  BloodPressureSample,
  BodyFields,
  IntervalSample,
  MenstrualCycleFields,
  Resources,
  Sample,
  SleepFields,
  TimeseriesBatch,
  TimeseriesBatchOf,
  WorkoutFields,
  WorkoutStreamFields
} from "@wearflow/core/schema"
import { dataKeys } from "./notifications.ts"
import { normalizers, sportOf } from "./normalize.ts"

const fixture = (name: string, key: string): Array<Record<string, unknown>> => {
  const body = JSON.parse(readFileSync(new URL(`./testing/fixtures/${name}.json`, import.meta.url), "utf8"))
  return body[key]
}

const first = <T>(items: ReadonlyArray<T>): T => {
  const item = items[0]
  if (item === undefined) throw new Error("no items")
  return item
}

/** Normalizes and fails the test on an ItemError. */
const ok = (normalizer: (raw: unknown) => Either.Either<ReadonlyArray<NormalizedRecord>, unknown>, raw: unknown) =>
  Either.getOrThrowWith(normalizer(raw), (e) => new Error(`unexpected Left: ${JSON.stringify(e)}`))

/** The error message of a Left, failing the test on a Right. */
const errorOf = (result: Either.Either<unknown, { message: string }>): string =>
  Either.match(result, {
    onLeft: (e) => e.message,
    onRight: () => {
      throw new Error("expected Left")
    }
  })

const summaryData = (records: ReadonlyArray<NormalizedRecord>, resource: string): unknown => {
  const record = records.find((r) => r.kind === "summary" && r.resource === resource)
  if (record === undefined) throw new Error(`no ${resource} record`)
  return record.data
}

const heartrate = (records: ReadonlyArray<NormalizedRecord>) =>
  records.find((r) => r.kind === "timeseries" && r.resource === "heartrate")

/** The schema one record's data must satisfy: the summary's fields, or a batch of its sample shape. */
const schemaOf = (record: NormalizedRecord): Schema.Schema.AnyNoContext =>
  record.kind === "summary" ? Resources[record.resource].fields : TimeseriesBatchOf(Resources[record.resource].schema)

/** Decodes every record's data with its resource schema, rejecting extra fields, and checks nothing changed. */
const validated = (records: ReadonlyArray<NormalizedRecord>): ReadonlyArray<NormalizedRecord> => {
  for (const record of records) {
    const decoded = Schema.decodeUnknownSync(schemaOf(record), { onExcessProperty: "error" })(record.data)
    expect(decoded).toEqual(record.data)
  }
  return records
}

/** Normalizes, fails on a Left, and validates every record against its schema. */
const valid = (normalizer: (raw: unknown) => Either.Either<ReadonlyArray<NormalizedRecord>, unknown>, raw: unknown) =>
  validated(ok(normalizer, raw))

const shape = (records: ReadonlyArray<NormalizedRecord>) => records.map((r) => [r.kind, r.resource, r.sourceId])

/** The samples of one timeseries resource, decoded with that resource's sample schema. */
const samplesOf = (records: ReadonlyArray<NormalizedRecord>, resource: string) => {
  const record = records.find((r) => r.kind === "timeseries" && r.resource === resource)
  if (record === undefined || record.kind !== "timeseries") throw new Error(`no ${resource} batch`)
  return record.data.data as ReadonlyArray<Record<string, unknown>>
}
const valuesOf = (records: ReadonlyArray<NormalizedRecord>, resource: string) => samplesOf(records, resource).map((s) => s["value"])

const iso = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString()
const watch = { provider: "garmin", type: "watch", device_id: null, app_id: null }

describe("garmin dailies", () => {
  const dailies = fixture("dailies", "dailies")
  const records = ok(normalizers.dailies, dailies[0])
  const activity = Schema.decodeUnknownSync(ActivityFields)(summaryData(records, "activity"))

  it("maps the daily summary to a schema-valid activity", () => {
    expect(records.map((r) => [r.kind, r.resource, r.sourceId])).toEqual([
      ["summary", "activity", " EXAMPLE_67891"],
      ["timeseries", "heartrate", " EXAMPLE_67891"]
    ])
    expect(activity).toEqual({
      date: "2016-01-11T00:00:00.000Z",
      calendar_date: "2016-01-11",
      calories_total: 321 + 1731,
      calories_active: 321,
      steps: 4210,
      daily_movement: 3146.5,
      low: null,
      medium: 81870 / 60,
      high: 4530 / 60,
      floors_climbed: 8,
      heart_rate: { avg_bpm: 72.1, min_bpm: 59, max_bpm: 112, resting_bpm: null, avg_walking_bpm: null },
      wheelchair_use: true,
      wheelchair_push: 10,
      timezone_offset: 3600,
      source: { provider: "garmin", type: "watch", device_id: null, app_id: null }
    })
  })

  it("uses the mean of the day's samples, not Garmin's 7-day average", () => {
    expect(activity.heart_rate?.avg_bpm).toBe(72.1) // 577 / 8 = 72.125
    expect(activity.heart_rate?.avg_bpm).not.toBe(64)
  })

  it("emits the heart-rate samples as a schema-valid timeseries batch", () => {
    const series = heartrate(records)
    const batch = Schema.decodeUnknownSync(TimeseriesBatch)(series?.data)
    expect(batch.source).toEqual({ provider: "garmin", type: "watch", device_id: null, app_id: null })
    expect(batch.data).toHaveLength(8)
    expect(batch.data[0]).toEqual({
      timestamp: "2016-01-11T00:00:15.000Z",
      timezone_offset: 3600,
      type: "watch",
      unit: "bpm",
      value: 75
    })
    expect(batch.data[7]?.timestamp).toBe("2016-01-11T00:54:15.000Z")
    for (const sample of batch.data) Schema.decodeUnknownSync(Sample)(sample)
  })

  it("derives calendar_date from start + offset when calendarDate is absent", () => {
    const second = ok(normalizers.dailies, dailies[1])
    const data = Schema.decodeUnknownSync(ActivityFields)(summaryData(second, "activity"))
    expect(data.calendar_date).toBe("2016-01-12")
    expect(data.date).toBe("2016-01-12T00:00:00.000Z")
    expect(data.heart_rate?.resting_bpm).toBe(64)
    expect(first(second).sourceId).toBe(" EXAMPLE_67892")
  })

  it("derives the local date across midnight UTC", () => {
    const raw = { ...dailies[1], startTimeInSeconds: 1452553200, startTimeOffsetInSeconds: 3600 } // 23:00Z
    expect((summaryData(ok(normalizers.dailies, raw), "activity") as { calendar_date: string }).calendar_date).toBe(
      "2016-01-12"
    )
  })

  it("maps a real OAuth2 push without samples and emits no heartrate record", () => {
    const real = ok(normalizers.dailies, first(fixture("dailies-real-oauth2-push", "dailies")))
    expect(real).toHaveLength(1)
    expect(heartrate(real)).toBeUndefined()
    const data = Schema.decodeUnknownSync(ActivityFields)(summaryData(real, "activity"))
    expect(data.steps).toBe(2146)
    expect(data.timezone_offset).toBe(28800)
    expect(data.calendar_date).toBe("2025-10-07")
    expect(data.calories_total).toBe(71 + 1282)
    expect(data.heart_rate).toEqual({ avg_bpm: null, min_bpm: 60, max_bpm: 107, resting_bpm: 66, avg_walking_bpm: null })
    expect(data.floors_climbed).toBeNull()
    expect(data.wheelchair_use).toBeNull()
    expect(data.wheelchair_push).toBeNull()
  })

  it("emits stress_level samples from timeOffsetStressLevelValues, dropping negative status codes", () => {
    const records = valid(normalizers.dailies, { ...dailies[0], timeOffsetStressLevelValues: { "0": 18, "180": -1, "360": 0, "540": -2, "720": 87 } })
    expect(shape(records)).toEqual([
      ["summary", "activity", " EXAMPLE_67891"],
      ["timeseries", "heartrate", " EXAMPLE_67891"],
      ["timeseries", "stress_level", " EXAMPLE_67891"]
    ])
    expect(samplesOf(records, "stress_level")).toEqual([
      { timestamp: iso(1452470400), timezone_offset: 3600, type: "watch", unit: "score", value: 18 },
      { timestamp: iso(1452470400 + 360), timezone_offset: 3600, type: "watch", unit: "score", value: 0 },
      { timestamp: iso(1452470400 + 720), timezone_offset: 3600, type: "watch", unit: "score", value: 87 }
    ])
    const allNegative = ok(normalizers.dailies, { ...dailies[0], timeOffsetStressLevelValues: { "0": -1, "180": -3 } })
    expect(shape(allNegative).map(([, resource]) => resource)).toEqual(["activity", "heartrate"])
  })

  it("leaves calories_total null when BMR is missing and heart_rate null without HR data", () => {
    const raw = { userId: "u", summaryId: "s", startTimeInSeconds: 1452470400, activeKilocalories: 10 }
    const data = Schema.decodeUnknownSync(ActivityFields)(summaryData(ok(normalizers.dailies, raw), "activity"))
    expect(data.calories_total).toBeNull()
    expect(data.calories_active).toBe(10)
    expect(data.heart_rate).toBeNull()
    expect(data.timezone_offset).toBeNull()
    expect(data.calendar_date).toBe("2016-01-11")
  })
})

describe("garmin sleeps", () => {
  const sleeps = fixture("sleeps", "sleeps")

  it("maps stages, score, efficiency and respiration to a schema-valid sleep", () => {
    const records = valid(normalizers.sleeps, sleeps[0])
    expect(shape(records)).toEqual([
      ["summary", "sleep", "sleep:2016-01-10"],
      ["summary", "sleep", "nap:1690916700"],
      ["timeseries", "respiratory_rate", "sleep:2016-01-10"],
      ["timeseries", "blood_oxygen", "sleep:2016-01-10"]
    ])
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(records, "sleep"))
    expect(data).toEqual({
      date: "2016-01-10T00:00:00.000Z",
      calendar_date: "2016-01-10",
      bedtime_start: "2016-01-10T23:11:33.000Z",
      // The spec's sleepLevelsMap has a light stage until 1452484266, past start + duration.
      bedtime_stop: "2016-01-11T03:51:06.000Z",
      type: "long_sleep",
      duration: 16773,
      total: 11588,
      awake: 312,
      light: 0,
      rem: 2142,
      deep: 9446,
      score: 87,
      hr_lowest: null,
      hr_average: null,
      efficiency: 69.1, // 11588 / 16773
      latency: null,
      temperature_delta: null,
      average_hrv: null,
      respiratory_rate: 13.9, // (15.31 + 14.58 + 12.73 + 12.87) / 4
      timezone_offset: 7200,
      source: { provider: "garmin", type: "watch", device_id: null, app_id: null }
    })
  })

  it("emits the in-sleep respiration and SpO2 samples at start + offset", () => {
    const records = valid(normalizers.sleeps, sleeps[0])
    const start = 1452467493
    expect(samplesOf(records, "respiratory_rate")).toEqual(
      [
        [60, 15.31],
        [120, 14.58],
        [180, 12.73],
        [240, 12.87]
      ].map(([offset, value]) => ({ timestamp: iso(start + offset!), timezone_offset: 7200, type: "watch", unit: "breaths/min", value }))
    )
    const spo2 = samplesOf(records, "blood_oxygen")
    expect(spo2.map((s) => s["value"])).toEqual([95, 96, 97, 93, 94, 95, 96])
    expect(spo2[0]).toEqual({ timestamp: "2016-01-10T23:11:33.000Z", timezone_offset: 7200, type: "watch", unit: "%", value: 95 })
    expect(spo2[6]?.["timestamp"]).toBe(iso(start + 360))
  })

  it("never turns a zero or negative SpO2 or respiration value into a sample", () => {
    const raw = { ...first(sleeps), timeOffsetSleepSpo2: { "0": -1, "60": 0, "120": 97 }, timeOffsetSleepRespiration: { "60": -2, "120": 14 } }
    const records = valid(normalizers.sleeps, raw)
    expect(valuesOf(records, "blood_oxygen")).toEqual([97])
    expect(valuesOf(records, "respiratory_rate")).toEqual([14])
    expect((summaryData(records, "sleep") as { respiratory_rate: number }).respiratory_rate).toBe(14)
  })

  it("accepts the alternate unmeasurable spelling and empty respiration", () => {
    const records = valid(normalizers.sleeps, sleeps[1])
    expect(shape(records)).toEqual([["summary", "sleep", "sleep:2021-01-29"]]) // empty SpO2 and respiration maps
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(records, "sleep"))
    expect(sleeps[1]).toHaveProperty("unmeasurableSleepInSeconds", 0)
    expect(sleeps[0]).toHaveProperty("unmeasurableSleepDurationInSeconds", 0)
    expect(data.calendar_date).toBe("2021-01-29")
    expect(data.total).toBe(0)
    expect(data.efficiency).toBe(0)
    expect(data.respiratory_rate).toBeNull()
    expect(data.score).toBeNull()
    expect(data.timezone_offset).toBe(32400)
  })

  it("checks both unmeasurable spellings without leaking the value", () => {
    for (const field of ["unmeasurableSleepInSeconds", "unmeasurableSleepDurationInSeconds"]) {
      const message = errorOf(normalizers.sleeps({ ...sleeps[1], [field]: "4711" }))
      expect(message).toContain(field)
      expect(message).not.toContain("4711")
    }
  })

  it("derives calendar_date from the local wake-up time when calendarDate is absent", () => {
    // Starts 2021-01-28 22:31 local (+09:00), ends 2021-01-29 06:22 local: Garmin says 2021-01-29.
    const { calendarDate: _drop, ...raw } = sleeps[1] ?? {}
    const records = ok(normalizers.sleeps, raw)
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(records, "sleep"))
    expect(data.calendar_date).toBe("2021-01-29")
    expect(data.date).toBe("2021-01-29T00:00:00.000Z")
    // Without Garmin's own date the key falls back to the summaryId.
    expect(shape(records)).toEqual([["summary", "sleep", "x-EXAMPLE"]])
  })

  it("keys a night's sleep and samples by calendarDate, so a final sleep replaces the tentative one", () => {
    const tentative = { ...first(sleeps), summaryId: "x153a9f3-5692e525-2e7c", validation: "AUTO_TENTATIVE" }
    // The final record of the same night: another summaryId (start and duration in hex), a
    // start 2 minutes later, new stages.
    const final = {
      ...first(sleeps),
      summaryId: "x153a9f3-5692e59d-2db4",
      validation: "ENHANCED_FINAL",
      startTimeInSeconds: 1452467493 + 120,
      durationInSeconds: 11700,
      deepSleepDurationInSeconds: 8000
    }
    const keys = (raw: unknown) => shape(valid(normalizers.sleeps, raw))
    expect(keys(final)).toEqual(keys(tentative))
    expect(keys(final)).toEqual([
      ["summary", "sleep", "sleep:2016-01-10"],
      ["summary", "sleep", "nap:1690916700"],
      ["timeseries", "respiratory_rate", "sleep:2016-01-10"],
      ["timeseries", "blood_oxygen", "sleep:2016-01-10"]
    ])
    // Another night keeps its own key.
    expect(first(keys({ ...final, calendarDate: "2016-01-11" }))).toEqual(["summary", "sleep", "sleep:2016-01-11"])
  })

  it("accepts every validation state without mapping it (the sleep schema has no field for it)", () => {
    const states = ["MANUAL", "DEVICE", "OFF_WRIST", "AUTO_TENTATIVE", "AUTO_FINAL", "AUTO_MANUAL", "ENHANCED_TENTATIVE", "ENHANCED_FINAL"]
    const data = states.map((validation) => summaryData(valid(normalizers.sleeps, { ...first(sleeps), validation }), "sleep"))
    for (const d of data) expect(d).toEqual(first(data))
  })

  it("leaves efficiency null for an empty session", () => {
    const data = Schema.decodeUnknownSync(SleepFields)(
      summaryData(ok(normalizers.sleeps, { ...first(sleeps), durationInSeconds: 0, sleepLevelsMap: null }), "sleep")
    )
    expect(data.efficiency).toBeNull()
    expect(data.bedtime_stop).toBe(data.bedtime_start)
  })

  describe("the end of the night", () => {
    const start = 1_700_000_000
    // 6 h of stages: light, deep, rem, then 20 minutes awake after the last sleep stage.
    const night = {
      userId: "u", summaryId: "x-night", calendarDate: "2023-11-15", startTimeInSeconds: start, startTimeOffsetInSeconds: 0,
      durationInSeconds: 21_600 - 1200, lightSleepDurationInSeconds: 10_000, deepSleepDurationInSeconds: 6_000, remSleepInSeconds: 4_400,
      awakeDurationInSeconds: 0,
      sleepLevelsMap: {
        light: [{ startTimeInSeconds: start, endTimeInSeconds: start + 10_000 }],
        deep: [{ startTimeInSeconds: start + 10_000, endTimeInSeconds: start + 16_000 }],
        rem: [{ startTimeInSeconds: start + 16_000, endTimeInSeconds: start + 20_400 }],
        awake: [{ startTimeInSeconds: start + 20_400, endTimeInSeconds: start + 21_600 }]
      }
    }
    const sleepOf = (raw: unknown) => Schema.decodeUnknownSync(SleepFields)(summaryData(ok(normalizers.sleeps, raw), "sleep"))

    it("is the end of an awake stage after the last sleep stage; duration and awake include it", () => {
      const data = sleepOf(night)
      expect(data.bedtime_stop).toBe(iso(start + 21_600))
      expect(data.duration).toBe(21_600)
      expect(data.awake).toBe(1200)
      expect(data.total).toBe(20_400)
      expect(data.total! + data.awake!).toBe(data.duration)
      expect(data.efficiency).toBe(94.4) // 20400 / 21600
    })

    it("keeps Garmin's awake figure when it already counts the tail", () => {
      expect(sleepOf({ ...night, awakeDurationInSeconds: 1500 }).awake).toBe(1500)
    })

    it("is start + duration without a levels map, and ignores stretches without times or a day past the start", () => {
      const { sleepLevelsMap: _drop, ...plain } = night
      expect(sleepOf(plain)).toMatchObject({ bedtime_stop: iso(start + 20_400), duration: 20_400, awake: 0 })
      const odd = { ...night, sleepLevelsMap: { awake: [{ startTimeInSeconds: start + 20_400 }, { startTimeInSeconds: start + 90_000, endTimeInSeconds: start + 90_600 }], rem: null } }
      expect(sleepOf(odd)).toMatchObject({ bedtime_stop: iso(start + 20_400), duration: 20_400, awake: 0 })
      // An awake stretch before the start counts for nothing, never less.
      const before = { ...night, sleepLevelsMap: { ...night.sleepLevelsMap, awake: [{ startTimeInSeconds: start - 600, endTimeInSeconds: start - 300 }, ...night.sleepLevelsMap.awake] } }
      expect(sleepOf(before)).toMatchObject({ duration: 21_600, awake: 1200 })
    })
  })

  it("maps each nap to a sleep session of Junction's nap type, keyed by its start", () => {
    const nightOf = first(sleeps) as Record<string, unknown>
    const withNaps = { ...nightOf, naps: [...(nightOf.naps as Array<unknown>), { napStartTimeInSeconds: 1690930000, napDurationInSeconds: 1800, napValidation: "MANUAL" }] }
    const records = valid(normalizers.sleeps, withNaps)
    const naps = records.filter((r) => r.kind === "summary" && r.resource === "sleep" && r.data.type === "acknowledged_nap")
    expect(naps.map((r) => r.sourceId)).toEqual(["nap:1690916700", "nap:1690930000"])
    expect(Schema.decodeUnknownSync(SleepFields)(naps[0]!.data)).toEqual({
      date: "2023-08-01T00:00:00.000Z",
      calendar_date: "2023-08-01", // local (-05:00) start: 2023-08-01 14:05
      bedtime_start: iso(1690916700),
      bedtime_stop: iso(1690916700 + 600),
      type: "acknowledged_nap",
      duration: 600,
      total: 600,
      awake: null, light: null, rem: null, deep: null, score: null, hr_lowest: null, hr_average: null, efficiency: null,
      latency: null, temperature_delta: null, average_hrv: null, respiratory_rate: null,
      timezone_offset: -18000,
      source: { provider: "garmin", type: "watch", device_id: null, app_id: null }
    })
    // Without its own offset, a nap takes the night's.
    expect(naps[1]!.data).toMatchObject({ timezone_offset: 7200, duration: 1800 })
    expect(errorOf(normalizers.sleeps({ ...nightOf, naps: [{ napStartTimeInSeconds: "soon", napDurationInSeconds: 60 }] }))).toContain("naps.0.napStartTimeInSeconds")
  })

  it("sums only the stages reported (no REM on older devices)", () => {
    const { remSleepInSeconds: _drop, ...raw } = first(sleeps)
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(ok(normalizers.sleeps, raw), "sleep"))
    expect(data.total).toBe(9446)
    expect(data.rem).toBeNull()
  })
})

describe("garmin activities", () => {
  const activities = fixture("activities", "activities")
  const workout = (raw: unknown) =>
    Schema.decodeUnknownSync(WorkoutFields)(summaryData(ok(normalizers.activities, raw), "workouts"))

  it("keys an activity without summaryId by its activityId, a number or a numeric string alike", () => {
    const { summaryId: _drop, ...byId } = activities[1] as Record<string, unknown>
    expect(shape(valid(normalizers.activities, byId))).toEqual([["summary", "workouts", "5001968355"]])
    expect(shape(valid(normalizers.activities, activities[1]))).toEqual([["summary", "workouts", "5001968355"]])
    expect(workout({ ...byId, activityId: "5001968355" }).provider_id).toBe("5001968355")
    expect(errorOf(normalizers.activities({ ...byId, activityId: "5001968355x" }))).toContain("activityId")
    const { activityId: _none, ...noId } = byId
    expect(errorOf(normalizers.activities(noId))).toBe("summaryId is missing and activityId is missing")
  })

  it("needs no userId: OAuth 1.0a-era items name their user by token", () => {
    const { userId: _drop, ...byToken } = activities[1] as Record<string, unknown>
    expect(shape(valid(normalizers.activities, { ...byToken, userAccessToken: "token" }))).toEqual([["summary", "workouts", "5001968355"]])
  })

  it("maps a running activity to a schema-valid workout", () => {
    expect(workout(activities[0])).toEqual({
      title: null,
      calendar_date: "2016-01-11",
      time_start: "2016-01-11T00:00:00.000Z",
      time_end: "2016-01-11T03:13:00.000Z", // start + 11580 s
      sport: { id: null, name: "Running", slug: "running" },
      average_hr: null,
      max_hr: null,
      distance: 519818.125,
      calories: 448,
      moving_time: null,
      total_elevation_gain: null,
      elev_high: null,
      elev_low: null,
      average_speed: 2.888999938964844,
      max_speed: null,
      average_watts: null,
      max_watts: null,
      weighted_average_watts: null,
      provider_id: "EXAMPLE_12345",
      timezone_offset: 0,
      source: { provider: "garmin", type: "watch", device_id: "Forerunner 910XT", app_id: null }
    })
  })

  it("prefers activityId and keeps the device name", () => {
    const records = ok(normalizers.activities, activities[1])
    expect(first(records).sourceId).toBe("5001968355")
    const data = workout(activities[1])
    expect(data.provider_id).toBe("5001968355")
    expect(data.title).toBe("Olathe CYCLING")
    expect(data.distance).toBe(4322.357)
    expect(data.sport).toEqual({ id: null, name: "Cycling", slug: "cycling" })
    expect(data.source.device_id).toBe("Garmin fenix 8")
    expect(Date.parse(data.time_end) - Date.parse(data.time_start)).toBe(1824 * 1000)
  })

  it("marks manual entries as app data, dropping the unknown device", () => {
    expect(workout({ ...activities[0], manual: true }).source).toEqual({
      provider: "garmin",
      type: "app",
      device_id: "Forerunner 910XT",
      app_id: null
    })
    expect(workout({ ...activities[0], deviceName: "unknown" }).source).toEqual({
      provider: "garmin",
      type: "app",
      device_id: null,
      app_id: null
    })
  })

  it("maps optional metrics when present", () => {
    const data = workout({
      ...activities[0],
      movingDurationInSeconds: 11000,
      averageHeartRateInBeatsPerMinute: 140,
      maxHeartRateInBeatsPerMinute: 171,
      totalElevationGainInMeters: 55.5,
      maxSpeedInMetersPerSecond: 4.2
    })
    expect(data).toMatchObject({ moving_time: 11000, average_hr: 140, max_hr: 171, total_elevation_gain: 55.5, max_speed: 4.2 })
  })

  it("title-cases multi-word activity types", () => {
    expect(sportOf("OPEN_WATER_SWIMMING")).toEqual({ id: null, name: "Open Water Swimming", slug: "open_water_swimming" })
    expect(sportOf("RUNNING")).toEqual({ id: null, name: "Running", slug: "running" })
  })
})

describe("garmin manuallyUpdatedActivities", () => {
  const items = fixture("manuallyUpdatedActivities", "manuallyUpdatedActivities")

  it("maps an edited activity like an activity, marked as app data, under the same summaryId", () => {
    const records = valid(normalizers.manuallyUpdatedActivities, items[0])
    expect(shape(records)).toEqual([["summary", "workouts", "EXAMPLE_12345"]])
    // Same sourceId as the original `activities` record, so the edit replaces it.
    expect(first(records).sourceId).toBe(first(ok(normalizers.activities, first(fixture("activities", "activities")))).sourceId)
    const data = Schema.decodeUnknownSync(WorkoutFields)(summaryData(records, "workouts"))
    expect(data.average_speed).toBe(44.888999938964844)
    expect(data.distance).toBe(519818.125)
    expect(data.source).toEqual({ provider: "garmin", type: "app", device_id: "Forerunner 910XT", app_id: null })
    const second = Schema.decodeUnknownSync(WorkoutFields)(summaryData(valid(normalizers.manuallyUpdatedActivities, items[1]), "workouts"))
    expect(second).toMatchObject({ provider_id: "EXAMPLE_12346", sport: { slug: "cycling" }, calories: 360, time_end: "2016-01-11T10:25:18.000Z" })
  })
})

describe("garmin activityDetails", () => {
  it("keys details without summaryId by the summary's activityId, so they update that activity's workout", () => {
    const [detail] = fixture("activityDetails", "activityDetails") as Array<Record<string, unknown>>
    const { summaryId: _drop, ...byId } = detail!
    expect(shape(valid(normalizers.activityDetails, byId)).map(([kind, resource, id]) => [kind, resource, id])).toEqual(
      shape(valid(normalizers.activityDetails, detail)))
    const summary = { ...(byId.summary as Record<string, unknown>), activityId: "5001968355" }
    expect(shape(valid(normalizers.activityDetails, { ...byId, activityId: undefined, summary }))[0]).toEqual(["summary", "workouts", "5001968355"])
  })

  const spec = first(fixture("activityDetails", "activityDetails"))
  const real = first(fixture("activityDetails-real-oauth1-push", "activityDetails"))

  it("maps the summary to the activity's own workout, completed from the samples", () => {
    const records = valid(normalizers.activityDetails, spec)
    expect(shape(records)).toEqual([
      ["summary", "workouts", "5001968355"],
      ["summary", "workout_stream", "5001968355-detail"],
      ["timeseries", "heartrate", "5001968355-detail"]
    ])
    // The workout shares its sourceId with the `activities` record of the same activity.
    const activity = fixture("activities", "activities")[1]
    expect(first(records).sourceId).toBe(first(ok(normalizers.activities, activity)).sourceId)
    expect(Schema.decodeUnknownSync(WorkoutFields)(summaryData(records, "workouts"))).toEqual({
      title: "Olathe RUNNING",
      calendar_date: "2017-12-02", // 17:02 UTC at −07:00
      time_start: "2017-12-02T17:02:06.000Z",
      time_end: "2017-12-02T17:31:55.000Z",
      sport: { id: null, name: "Running", slug: "running" },
      average_hr: 144,
      max_hr: 159,
      distance: 4976.83,
      calories: 367,
      moving_time: null,
      total_elevation_gain: 16,
      elev_high: 314.20001220703125,
      elev_low: 314,
      average_speed: 2.781,
      max_speed: 4.152,
      average_watts: null,
      max_watts: null,
      weighted_average_watts: null,
      provider_id: "5001968355",
      timezone_offset: -25200,
      source: { provider: "garmin", type: "watch", device_id: "Garmin fenix 8", app_id: null }
    })
  })

  it("builds a Junction-like workout_stream with one entry per sample in every array", () => {
    const stream = Schema.decodeUnknownSync(WorkoutStreamFields)(summaryData(valid(normalizers.activityDetails, spec), "workout_stream"))
    expect(stream).toEqual({
      workout_id: "5001968355",
      calendar_date: "2017-12-02",
      time_start: "2017-12-02T17:02:06.000Z",
      time: [1460, 1469], // clockDurationInSeconds
      heartrate: [108, 109],
      lat: [38.832325832918286, 38.832390792667866],
      lng: [-94.74890395067632, -94.74878308363259],
      altitude: [314.0, 314.20001220703125],
      velocity_smooth: [1.3250000476837158, 1.315999984741211],
      cadence: [null, null],
      watts: [null, null],
      distance: [1903.4200439453125, 1916.18994140625],
      temperature: [null, null],
      timezone_offset: -25200,
      source: { provider: "garmin", type: "watch", device_id: "Garmin fenix 8", app_id: null }
    })
  })

  it("maps a real push: temperature from the misspelled airTemperatureCelcius, the summary's activityId", () => {
    const records = valid(normalizers.activityDetails, real)
    expect(shape(records)).toEqual([
      ["summary", "workouts", "19940666749"],
      ["summary", "workout_stream", "19940666749-detail"],
      ["timeseries", "heartrate", "19940666749-detail"]
    ])
    const stream = Schema.decodeUnknownSync(WorkoutStreamFields)(summaryData(records, "workout_stream"))
    for (const column of ["time", "heartrate", "lat", "lng", "altitude", "velocity_smooth", "cadence", "watts", "distance", "temperature"] as const) {
      expect(stream[column]).toHaveLength(5)
    }
    expect(stream.workout_id).toBe("19940666749") // summary.activityId, not the top-level 19940666769
    expect(stream.time).toEqual([0, 2, 3, 5, 6])
    expect(stream.temperature).toEqual([27, 27, 27, 27, 27])
    expect(stream.heartrate).toEqual([61, 58, 61, 59, 59])
    expect(stream.altitude[4]).toBe(-0.20000000298023224)
    expect(stream.lat).toEqual([null, null, null, null, null])
    const workout = Schema.decodeUnknownSync(WorkoutFields)(summaryData(records, "workouts"))
    expect(workout).toMatchObject({
      provider_id: "19940666749",
      calendar_date: "2025-08-04", // 19:53 UTC at +10:00
      time_end: "2025-08-03T19:53:49.000Z",
      average_hr: 60,
      max_hr: 63,
      elev_high: 3,
      elev_low: -0.20000000298023224,
      distance: null,
      timezone_offset: 36000,
      source: { provider: "garmin", type: "watch", device_id: "fenix 6X Pro", app_id: null }
    })
    expect(samplesOf(records, "heartrate")).toHaveLength(5)
    expect(samplesOf(records, "heartrate")[1]).toEqual({
      timestamp: iso(1754250825),
      timezone_offset: 36000,
      type: "watch",
      unit: "bpm",
      value: 58
    })
  })

  it("accepts the correct airTemperatureCelsius spelling, power, cadence and time without a clock", () => {
    const samples = [
      { startTimeInSeconds: 1754250823, airTemperatureCelsius: 21.5, powerInWatts: 200, bikeCadenceInRPM: 85 },
      { startTimeInSeconds: 1754250833, airTemperatureCelcius: 22, powerInWatts: 260, bikeCadenceInRPM: 90, heartRate: 0 }
    ]
    const records = valid(normalizers.activityDetails, { ...real, samples })
    const stream = Schema.decodeUnknownSync(WorkoutStreamFields)(summaryData(records, "workout_stream"))
    expect(stream.temperature).toEqual([21.5, 22])
    expect(stream.time).toEqual([0, 10]) // start − summary start
    expect(stream.watts).toEqual([200, 260])
    expect(stream.cadence).toEqual([85, 90])
    expect(stream.heartrate).toEqual([null, null])
    expect(heartrate(records)).toBeUndefined() // a 0 bpm is no reading
    const workout = Schema.decodeUnknownSync(WorkoutFields)(summaryData(records, "workouts"))
    expect([workout.average_watts, workout.max_watts, workout.elev_high]).toEqual([230, 260, null])
  })

  it("emits only the workout when there are no samples", () => {
    const { samples: _drop, ...raw } = spec
    expect(shape(valid(normalizers.activityDetails, raw))).toEqual([["summary", "workouts", "5001968355"]])
  })
})

describe("garmin moveIQActivities", () => {
  const moveIQ = first(fixture("moveIQActivities", "moveIQActivities"))

  it("maps an auto-detected activity to an automatic workout, offset from offsetInSeconds", () => {
    const records = valid(normalizers.moveIQActivities, moveIQ)
    expect(shape(records)).toEqual([["summary", "workouts", " EXAMPLE_843244"]])
    const data = Schema.decodeUnknownSync(WorkoutFields)(summaryData(records, "workouts"))
    expect(data).toMatchObject({
      title: null,
      calendar_date: "2017-03-23",
      time_start: "2017-03-23T05:00:00.000Z",
      time_end: "2017-03-23T05:12:18.000Z", // + 738 s
      sport: { id: null, name: "Running", slug: "running" },
      distance: null,
      calories: null,
      provider_id: " EXAMPLE_843244",
      timezone_offset: 0,
      source: { provider: "garmin", type: "automatic", device_id: null, app_id: null }
    })
  })

  it("derives the local date from offsetInSeconds, or startTimeOffsetInSeconds", () => {
    const { calendarDate: _drop, offsetInSeconds: _o, ...raw } = moveIQ
    const dateWith = (extra: Record<string, unknown>) =>
      Schema.decodeUnknownSync(WorkoutFields)(summaryData(valid(normalizers.moveIQActivities, { ...raw, ...extra }), "workouts"))
    expect(dateWith({ offsetInSeconds: -21600 })).toMatchObject({ calendar_date: "2017-03-22", timezone_offset: -21600 })
    expect(dateWith({ startTimeOffsetInSeconds: -21600 })).toMatchObject({ calendar_date: "2017-03-22", timezone_offset: -21600 })
    expect(dateWith({ offsetInSeconds: 3600, startTimeOffsetInSeconds: -21600 })).toMatchObject({ calendar_date: "2017-03-23", timezone_offset: 3600 })
  })
})

describe("garmin epochs", () => {
  const epochs = fixture("epochs", "epochs")

  it("maps a partial epoch to steps, calories_active and distance over the 15-minute slice", () => {
    const records = valid(normalizers.epochs, epochs[0])
    expect(shape(records)).toEqual([
      ["timeseries", "steps", "epoch:1519679700:WALKING"],
      ["timeseries", "calories_active", "epoch:1519679700:WALKING"],
      ["timeseries", "distance", "epoch:1519679700:WALKING"]
    ])
    const slice = { timestamp: "2018-02-26T21:15:00.000Z", start: "2018-02-26T21:15:00.000Z", end: "2018-02-26T21:30:00.000Z", timezone_offset: -21600, type: "watch" }
    expect(samplesOf(records, "steps")).toEqual([{ ...slice, unit: "count", value: 93 }])
    expect(samplesOf(records, "calories_active")).toEqual([{ ...slice, unit: "kcal", value: 24 }])
    expect(samplesOf(records, "distance")).toEqual([{ ...slice, unit: "m", value: 49.11 }])
    for (const record of records) {
      if (record.kind === "timeseries") expect(record.data.source).toEqual(watch)
      for (const sample of samplesOf(records, record.resource)) Schema.decodeUnknownSync(IntervalSample)(sample)
    }
  })

  it("keys the full epoch like the partial one, so it replaces it", () => {
    const full = valid(normalizers.epochs, { ...epochs[0], durationInSeconds: 900, steps: 120 })
    expect(samplesOf(full, "steps")).toEqual([{ ...first(samplesOf(ok(normalizers.epochs, epochs[0]), "steps")), value: 120 }])
  })

  it("keys an epoch by slice and activity type, not by summaryId", () => {
    const partial = ok(normalizers.epochs, epochs[0])
    // The full epoch under another summaryId still updates the partial's records.
    expect(shape(ok(normalizers.epochs, { ...epochs[0], summaryId: "x153a9f3-5a9478d4-384", durationInSeconds: 900, steps: 120 }))).toEqual(shape(partial))
    // Another activity type in the same slice, or the next slice, is another record.
    expect(first(shape(ok(normalizers.epochs, { ...epochs[0], activityType: "RUNNING" })))).toEqual(["timeseries", "steps", "epoch:1519679700:RUNNING"])
    expect(first(shape(ok(normalizers.epochs, { ...epochs[0], startTimeInSeconds: 1519679700 + 900 })))).toEqual(["timeseries", "steps", "epoch:1519680600:WALKING"])
    // Without an activity type, the summaryId.
    const { activityType: _drop, ...untyped } = first(epochs)
    expect(first(shape(ok(normalizers.epochs, untyped)))).toEqual(["timeseries", "steps", "x153a9f3-5a9478d4-6"])
  })

  it("keeps a sedentary epoch's measured zeros as its own record beside the slice's active epoch", () => {
    const sedentary = valid(normalizers.epochs, epochs[1])
    expect(shape(sedentary)).toEqual([
      ["timeseries", "steps", "epoch:1454418900:SEDENTARY"],
      ["timeseries", "calories_active", "epoch:1454418900:SEDENTARY"],
      ["timeseries", "distance", "epoch:1454418900:SEDENTARY"]
    ])
    expect(valuesOf(sedentary, "steps")).toEqual([0])
    const running = valid(normalizers.epochs, epochs[2])
    expect(valuesOf(running, "steps")).toEqual([427])
    expect(valuesOf(running, "distance")).toEqual([222.07])
    expect(valuesOf(running, "calories_active")).toEqual([257])
    expect(first(samplesOf(running, "steps"))).toMatchObject({ timestamp: iso(1454418900), end: iso(1454418900 + 900), timezone_offset: 3600 })
  })
})

describe("garmin bodyComps", () => {
  const comps = fixture("bodyComps", "bodyComps")

  it("maps a composition to a body summary in kg and percent, plus weight and fat samples", () => {
    const records = valid(normalizers.bodyComps, comps[0])
    expect(shape(records)).toEqual([
      ["summary", "body", "EXAMPLE_678901"],
      ["timeseries", "weight", "EXAMPLE_678901"],
      ["timeseries", "fat", "EXAMPLE_678901"]
    ])
    const unknown = { provider: "garmin", type: "unknown", device_id: null, app_id: null }
    expect(Schema.decodeUnknownSync(BodyFields)(summaryData(records, "body"))).toEqual({
      date: "2015-08-16T00:00:00.000Z",
      calendar_date: "2015-08-16",
      measured_at: "2015-08-16T16:05:30.000Z",
      weight: 75.45,
      fat: 17.1,
      water_percentage: 59.4,
      muscle_mass_kilogram: 25.478,
      muscle_mass_percentage: 33.8, // 25478 / 75450
      bone_mass_kilogram: 2.437,
      bone_mass_percentage: 3.2, // 2437 / 75450
      body_mass_index: 23.2,
      lean_body_mass_kilogram: null,
      visceral_fat_index: null,
      waist_circumference_centimeters: null,
      timezone_offset: 0,
      source: unknown
    })
    expect(samplesOf(records, "weight")).toEqual([
      { timestamp: "2015-08-16T16:05:30.000Z", timezone_offset: 0, type: "unknown", unit: "kg", value: 75.45 }
    ])
    expect(samplesOf(records, "fat")).toEqual([
      { timestamp: "2015-08-16T16:05:30.000Z", timezone_offset: 0, type: "unknown", unit: "%", value: 17.1 }
    ])
  })

  it("converts grams as given (the spec's 751732 g typo stays 751.732 kg)", () => {
    const records = valid(normalizers.bodyComps, comps[1])
    expect(Schema.decodeUnknownSync(BodyFields)(summaryData(records, "body"))).toMatchObject({
      calendar_date: "2015-08-17",
      weight: 751.732,
      muscle_mass_kilogram: 25.482,
      bone_mass_kilogram: 2.434,
      fat: 17.3,
      water_percentage: 59.8,
      body_mass_index: 23.1
    })
    expect(valuesOf(records, "weight")).toEqual([751.732])
  })

  it("treats zero or missing values as not measured", () => {
    const { bodyFatInPercent: _f, ...noFat } = first(comps)
    const records = valid(normalizers.bodyComps, { ...noFat, weightInGrams: 0 })
    expect(shape(records).map(([, resource]) => resource)).toEqual(["body"])
    expect(summaryData(records, "body")).toMatchObject({ weight: null, fat: null, muscle_mass_percentage: null, muscle_mass_kilogram: 25.478 })
  })
})

describe("garmin stressDetails", () => {
  const stress = first(fixture("stressDetails", "stressDetails"))

  it("maps the 3-minute stress values to stress_level samples; body battery is not mapped", () => {
    const records = valid(normalizers.stressDetails, stress)
    expect(shape(records)).toEqual([["timeseries", "stress_level", " EXAMPLE_6789124"]])
    expect(samplesOf(records, "stress_level")).toEqual(
      [
        [0, 18],
        [180, 51],
        [360, 28],
        [540, 29]
      ].map(([offset, value]) => ({ timestamp: iso(1490245200 + offset!), timezone_offset: 0, type: "watch", unit: "score", value }))
    )
  })

  it("never turns a negative status code into a sample", () => {
    const raw = { ...stress, timeOffsetStressLevelValues: { "0": -1, "180": 51, "360": -2, "540": -3, "720": -4, "900": -5, "1080": 0 } }
    const samples = samplesOf(valid(normalizers.stressDetails, raw), "stress_level")
    expect(samples.map((s) => s["value"])).toEqual([51, 0])
    expect(samples.map((s) => s["timestamp"])).toEqual([iso(1490245200 + 180), iso(1490245200 + 1080)])
    expect(valid(normalizers.stressDetails, { ...stress, timeOffsetStressLevelValues: { "0": -1, "180": -2 } })).toEqual([])
  })
})

describe("garmin userMetrics", () => {
  const metrics = first(fixture("userMetrics", "userMetrics"))

  it("maps vo2Max to one vo2_max sample on the calendar date", () => {
    const records = valid(normalizers.userMetrics, metrics)
    expect(shape(records)).toEqual([["timeseries", "vo2_max", " EXAMPLE_843244"]])
    expect(samplesOf(records, "vo2_max")).toEqual([
      { timestamp: "2017-03-23T00:00:00.000Z", timezone_offset: null, type: "watch", unit: "mL/kg/min", value: 48 }
    ])
  })

  it("emits nothing without a VO2 max and requires a real calendarDate", () => {
    const { vo2Max: _drop, ...raw } = metrics
    expect(valid(normalizers.userMetrics, raw)).toEqual([])
    const { calendarDate: _c, ...noDate } = metrics
    expect(errorOf(normalizers.userMetrics(noDate))).toContain("calendarDate is missing")
    expect(errorOf(normalizers.userMetrics({ ...metrics, calendarDate: "2017-02-30" }))).toContain("calendarDate")
  })
})

describe("garmin pulseox", () => {
  const pulseox = fixture("pulseox", "pulseox")

  it("maps the all-day SpO2 values to blood_oxygen samples", () => {
    const records = valid(normalizers.pulseox, pulseox[0])
    expect(shape(records)).toEqual([["timeseries", "blood_oxygen", "Example1234"]])
    const samples = samplesOf(records, "blood_oxygen")
    expect(samples).toHaveLength(19)
    expect(samples.map((s) => s["value"])).toEqual([94, 98, 99, 98, 98, 97, 97, 98, 97, 96, 96, 97, 97, 96, 96, 95, 96, 97, 96])
    expect(samples[0]).toEqual({ timestamp: "2018-08-27T22:10:46.000Z", timezone_offset: 3600, type: "watch", unit: "%", value: 94 })
    expect(samples[18]?.["timestamp"]).toBe(iso(1535400706 + 86340))
  })

  it("maps an on-demand reading the same way", () => {
    expect(samplesOf(valid(normalizers.pulseox, pulseox[1]), "blood_oxygen")).toEqual([
      { timestamp: iso(1572303600 + 55740), timezone_offset: 3600, type: "watch", unit: "%", value: 93 }
    ])
  })

  it("never turns a zero or negative SpO2 into a sample", () => {
    const records = valid(normalizers.pulseox, { ...pulseox[0], timeOffsetSpo2Values: { "0": -1, "60": 0, "120": 95, "180": -2 } })
    expect(valuesOf(records, "blood_oxygen")).toEqual([95])
    expect(valid(normalizers.pulseox, { ...pulseox[0], timeOffsetSpo2Values: { "0": -1, "60": 0 } })).toEqual([])
  })
})

describe("garmin allDayRespiration", () => {
  const respiration = fixture("allDayRespiration", "allDayRespiration")

  it("maps breaths per minute to respiratory_rate samples", () => {
    const records = valid(normalizers.allDayRespiration, respiration[0])
    expect(shape(records)).toEqual([["timeseries", "respiratory_rate", "x15372ea-5d7866b4"]])
    const samples = samplesOf(records, "respiratory_rate")
    expect(samples.map((s) => s["value"])).toEqual([14.63, 14.4, 14.38, 14.38, 17.1, 16.61, 16.14, 14.59, 14.65, 15.09, 14.88])
    expect(samples[0]).toEqual({ timestamp: "2019-09-11T03:15:00.000Z", timezone_offset: -18000, type: "watch", unit: "breaths/min", value: 14.63 })
    expect(samples[10]?.["timestamp"]).toBe(iso(1568171700 + 840))
    const second = samplesOf(valid(normalizers.allDayRespiration, respiration[1]), "respiratory_rate")
    expect(second).toHaveLength(11)
    expect(second[1]).toMatchObject({ timestamp: iso(1568172600 + 60), value: 16.58 })
  })
})

describe("garmin healthSnapshot", () => {
  const snapshot = first(fixture("healthSnapshot", "healthSnapshot"))
  const start = 1630409178

  it("maps every measured summary type to its timeseries, per second", () => {
    const records = valid(normalizers.healthSnapshot, snapshot)
    const id = "x42f72c9-612e11dae53d462a-0b98-4ae8-9fdc-28f392a1cd8078"
    expect(shape(records)).toEqual([
      ["timeseries", "heartrate", id],
      ["timeseries", "respiratory_rate", id],
      ["timeseries", "stress_level", id],
      ["timeseries", "blood_oxygen", id],
      ["timeseries", "hrv", id]
    ])
    expect(valuesOf(records, "heartrate")).toEqual([84, 84, 83, 83, 83, 84, 82, 82, 83, 85, 85, 85])
    expect(valuesOf(records, "stress_level")).toEqual([78, 78, 78, 78, 78, 78, 83, 83, 83, 82, 82, 82])
    expect(valuesOf(records, "blood_oxygen")).toEqual([86, 86, 86, 86, 86, 86, 84, 84, 84, 86, 86, 86])
    expect(samplesOf(records, "respiratory_rate")).toHaveLength(12)
    expect(first(samplesOf(records, "respiratory_rate"))).toEqual({
      timestamp: "2021-08-31T11:26:18.000Z",
      timezone_offset: 7200, // offsetStartTimeInSeconds
      type: "watch",
      unit: "breaths/min",
      value: 15.319999694824219
    })
    expect(samplesOf(records, "heartrate")[11]?.["timestamp"]).toBe(iso(start + 120))
    // rmssd_hrv has only an average: one sample at the session start. sdrr_hrv is not RMSSD.
    expect(samplesOf(records, "hrv")).toEqual([{ timestamp: iso(start), timezone_offset: 7200, type: "watch", unit: "ms", value: 20 }])
  })

  it("accepts startTimeOffsetInSeconds as well as offsetStartTimeInSeconds", () => {
    const { offsetStartTimeInSeconds: _drop, ...raw } = snapshot
    const offsetOf = (extra: Record<string, unknown>) =>
      first(samplesOf(valid(normalizers.healthSnapshot, { ...raw, ...extra }), "heartrate"))["timezone_offset"]
    expect(offsetOf({ startTimeOffsetInSeconds: -14400 })).toBe(-14400)
    expect(offsetOf({ offsetStartTimeInSeconds: 3600 })).toBe(3600)
    expect(offsetOf({})).toBeNull()
  })

  it("drops negative stress and non-positive SpO2 values", () => {
    const summaries = [
      { summaryType: "stress", avgValue: 40, epochSummaries: { "0": -1, "1": 40, "2": -2 } },
      { summaryType: "spo2", avgValue: 90, epochSummaries: { "0": 0, "1": -1 } },
      { summaryType: "unknown_metric", avgValue: 1 }
    ]
    const records = valid(normalizers.healthSnapshot, { ...snapshot, summaries })
    expect(shape(records).map(([, resource]) => resource)).toEqual(["stress_level"])
    expect(valuesOf(records, "stress_level")).toEqual([40])
  })
})

describe("garmin hrv", () => {
  const hrv = first(fixture("hrv", "hrv"))

  it("maps the 5-minute RMSSD values to hrv samples, and nothing else", () => {
    const records = valid(normalizers.hrv, hrv)
    expect(shape(records)).toEqual([["timeseries", "hrv", "x473db21-6295abc4"]])
    const samples = samplesOf(records, "hrv")
    expect(samples).toHaveLength(12)
    expect(samples.map((s) => s["value"])).toEqual([32, 24, 31, 35, 39, 47, 32, 24, 31, 35, 39, 47])
    expect(samples[0]).toEqual({ timestamp: iso(1653976004 + 300), timezone_offset: -18000, type: "watch", unit: "ms", value: 32 })
    expect(samples[11]?.["timestamp"]).toBe(iso(1653976004 + 3600))
    // lastNightAvg (44) and lastNight5MinHigh (72) are Garmin's own statistics, not samples.
    expect(samples.map((s) => s["value"])).not.toContain(44)
  })

  it("type-checks lastNightAvg although it is not mapped", () => {
    const message = errorOf(normalizers.hrv({ ...hrv, lastNightAvg: "secret-44" }))
    expect(message).toContain("lastNightAvg")
    expect(message).not.toContain("secret-44")
  })
})

describe("garmin bloodPressures", () => {
  const reading = first(fixture("bloodPressures", "bloodPressures"))

  it("maps a reading to one blood_pressure sample {systolic, diastolic} and the pulse to heartrate", () => {
    const records = valid(normalizers.bloodPressures, reading)
    expect(shape(records)).toEqual([
      ["timeseries", "blood_pressure", "x473db21-632b3500"],
      ["timeseries", "heartrate", "x473db21-632b3500"]
    ])
    const [sample] = samplesOf(records, "blood_pressure")
    expect(Schema.decodeUnknownSync(BloodPressureSample)(sample)).toEqual({
      timestamp: "2022-09-21T16:00:00.000Z",
      timezone_offset: -18000,
      type: "app", // sourceType MANUAL
      unit: "mmHg",
      systolic: 120,
      diastolic: 110
    })
    expect(sample).not.toHaveProperty("value")
    expect(samplesOf(records, "heartrate")).toEqual([
      { timestamp: "2022-09-21T16:00:00.000Z", timezone_offset: -18000, type: "app", unit: "bpm", value: 82 }
    ])
  })

  it("marks cuff readings and needs both values", () => {
    const records = valid(normalizers.bloodPressures, { ...reading, sourceType: "DEVICE" })
    expect(first(samplesOf(records, "blood_pressure"))["type"]).toBe("cuff")
    const { pulse: _p, ...noPulse } = reading
    expect(shape(valid(normalizers.bloodPressures, noPulse)).map(([, resource]) => resource)).toEqual(["blood_pressure"])
    const { diastolic: _d, ...noDiastolic } = reading
    expect(errorOf(normalizers.bloodPressures(noDiastolic))).toContain("diastolic is missing")
  })
})

describe("garmin skinTemp", () => {
  const skin = first(fixture("skinTemp", "skinTemp"))

  it("maps the average deviation to one body_temperature_delta interval sample", () => {
    const records = valid(normalizers.skinTemp, skin)
    expect(shape(records)).toEqual([["timeseries", "body_temperature_delta", "example-65f83c38"]])
    expect(samplesOf(records, "body_temperature_delta")).toEqual([
      {
        timestamp: "2024-03-18T13:06:00.000Z",
        start: "2024-03-18T13:06:00.000Z",
        end: "2024-03-18T13:39:00.000Z", // + 1980 s
        timezone_offset: -21600,
        type: "watch",
        unit: "°C",
        value: -1.6
      }
    ])
  })

  it("keeps a zero deviation and emits nothing without one", () => {
    expect(valuesOf(valid(normalizers.skinTemp, { ...skin, avgDeviationCelsius: 0 }), "body_temperature_delta")).toEqual([0])
    const { avgDeviationCelsius: _drop, ...raw } = skin
    expect(valid(normalizers.skinTemp, raw)).toEqual([])
  })
})

describe("garmin mct", () => {
  const cycles = fixture("mct", "mct")
  const cycle = (raw: unknown) => {
    const records = valid(normalizers.mct, raw)
    expect(records).toHaveLength(1)
    return Schema.decodeUnknownSync(MenstrualCycleFields)(summaryData(records, "menstrual_cycle"))
  }
  const app = { provider: "garmin", type: "app", device_id: null, app_id: null }

  it("maps a cycle with derived inclusive end dates", () => {
    expect(first(ok(normalizers.mct, cycles[1])).sourceId).toBe("x153a9f3-176e4715000")
    expect(cycle(cycles[1])).toEqual({
      period_start: "2021-01-04",
      period_end: "2021-01-08", // 5 days
      cycle_end: "2021-01-31", // 28 days
      is_predicted: true,
      cycle_length: 28,
      predicted_cycle_length: 28,
      period_length: 5,
      day_in_cycle: 1,
      current_phase: 1,
      current_phase_type: "MENSTRUAL",
      length_of_current_phase: 5,
      days_until_next_phase: 5,
      fertile_window_start: 11,
      fertile_window_length: 7,
      has_specified_cycle_length: false,
      has_specified_period_length: false,
      pregnancy: null, // pregnancySnapshot: {}
      last_updated_at: "2021-01-09T00:00:00.000Z",
      timezone_offset: null,
      source: app
    })
  })

  it("maps an OAuth1-era cycle with a one-day period", () => {
    expect(cycle(cycles[0])).toMatchObject({
      period_start: "2019-09-03",
      period_end: "2019-09-03",
      cycle_end: "2019-09-18",
      is_predicted: false,
      cycle_length: 16,
      current_phase_type: null,
      fertile_window_start: null,
      has_specified_cycle_length: null,
      last_updated_at: "2019-09-04T14:58:34.000Z"
    })
  })

  it("keeps the pregnancy snapshot's dates; the 280-day cycle ends on the due date", () => {
    expect(cycle(cycles[2])).toMatchObject({
      period_start: "2020-10-11",
      period_end: null,
      cycle_end: "2021-07-17",
      cycle_length: 280,
      day_in_cycle: 110,
      current_phase: 6,
      current_phase_type: "SECOND_TRIMESTER",
      length_of_current_phase: 98,
      days_until_next_phase: 80,
      pregnancy: { title: "Pregnancy 2021", start_date: "2020-10-11", due_date: "2021-07-17", original_due_date: "2021-07-17", number_of_babies: "SINGLE" }
    })
  })

  it("requires a real periodStartDate", () => {
    for (const bad of ["2021-02-30", "04/01/2021"]) {
      const message = errorOf(normalizers.mct({ ...cycles[1], periodStartDate: bad }))
      expect(message).toContain("periodStartDate")
      expect(message).not.toContain(bad)
    }
  })
})

describe("garmin fixtures", () => {
  const dir = new URL("./testing/fixtures/", import.meta.url)
  const notData = new Set(["activityFiles", "deregistrations", "userPermissionsChange"])
  const files = readdirSync(dir).filter((f) => f.endsWith(".json") && !f.startsWith("ping-"))

  it("has a normalizer for every data key and none for the keys that carry no data", () => {
    // Every data key Garmin sends, but activityFiles (a file to download, not records).
    expect(Object.keys(normalizers).sort()).toEqual(dataKeys.filter((key) => key !== "activityFiles").sort())
    for (const key of notData) expect(normalizers).not.toHaveProperty(key)
  })

  it.each(files)("%s: every data item normalizes to schema-valid records", (file) => {
    const body = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Record<string, ReadonlyArray<unknown>>
    for (const [key, items] of Object.entries(body)) {
      if (notData.has(key)) continue
      const normalize = normalizers[key as keyof typeof normalizers]
      expect(normalize).toBeDefined()
      for (const item of items) valid(normalize, item)
    }
  })

  it("declares a sample schema with timestamp and type for every timeseries resource", () => {
    for (const spec of Object.values(Resources)) {
      if (spec.kind !== "timeseries") continue
      expect(Object.keys(spec.schema.fields)).toEqual(expect.arrayContaining(["timestamp", "type", "unit"]))
    }
    expect(Resources.heartrate.schema).toBe(Sample)
    expect(Resources.steps.schema).toBe(IntervalSample)
    expect(Resources.blood_pressure.schema).toBe(BloodPressureSample)
  })
})

describe("garmin bad input", () => {
  const daily = first(fixture("dailies", "dailies"))

  it.each(Object.entries(normalizers))("%s rejects non-objects", (_key, normalize) => {
    for (const raw of [null, 42, "text", [], undefined]) {
      expect(errorOf(normalize(raw))).toContain("record")
    }
  })

  it("names a missing summaryId or startTimeInSeconds", () => {
    const { summaryId: _s, ...noId } = daily
    expect(errorOf(normalizers.dailies(noId))).toContain("summaryId is missing")
    const { startTimeInSeconds: _t, ...noStart } = daily
    expect(errorOf(normalizers.dailies(noStart))).toContain("startTimeInSeconds is missing")
  })

  it("names a wrongly typed field without echoing its value", () => {
    const message = errorOf(normalizers.dailies({ ...daily, steps: "abc" }))
    expect(message).toContain("steps")
    expect(message).not.toContain("abc")
  })

  it("rejects values that would break date conversion", () => {
    for (const start of [Number.NaN, Number.POSITIVE_INFINITY, 1e20, -1]) {
      expect(errorOf(normalizers.dailies({ ...daily, startTimeInSeconds: start }))).toContain("startTimeInSeconds")
    }
    const message = errorOf(normalizers.dailies({ ...daily, calendarDate: "11/01/2016" }))
    expect(message).toContain("calendarDate")
    expect(message).not.toContain("11/01/2016")
  })

  it("rejects a non-numeric heart-rate sample without echoing it", () => {
    const message = errorOf(normalizers.dailies({ ...daily, timeOffsetHeartRateSamples: { "15": "secret-bpm" } }))
    expect(message).toContain("timeOffsetHeartRateSamples")
    expect(message).not.toContain("secret-bpm")
  })

  it("requires durationInSeconds and activityType for workouts", () => {
    const { durationInSeconds: _d, ...noDuration } = first(fixture("activities", "activities"))
    expect(errorOf(normalizers.activities(noDuration))).toContain("durationInSeconds is missing")
    const { activityType: _a, ...noType } = first(fixture("activities", "activities"))
    expect(errorOf(normalizers.activities(noType))).toContain("activityType is missing")
  })

  it("treats explicit nulls as not measured", () => {
    const data = Schema.decodeUnknownSync(ActivityFields)(
      summaryData(ok(normalizers.dailies, { ...daily, steps: null, bmrKilocalories: null }), "activity")
    )
    expect(data.steps).toBeNull()
    expect(data.calories_total).toBeNull()
  })

  /** One wrongly typed field per key: [key, fixture file, field path to expect, record with the bad value]. */
  const secret = "secret-value-4711"
  const item = (file: string, key: string, index = 0) => fixture(file, key)[index] ?? {}
  const wrongTyped: ReadonlyArray<readonly [string, string, Record<string, unknown>]> = [
    ["epochs", "steps", { ...item("epochs", "epochs"), steps: secret }],
    ["bodyComps", "weightInGrams", { ...item("bodyComps", "bodyComps"), weightInGrams: secret }],
    ["stressDetails", "timeOffsetStressLevelValues.180", { ...item("stressDetails", "stressDetails"), timeOffsetStressLevelValues: { "180": secret } }],
    ["userMetrics", "vo2Max", { ...item("userMetrics", "userMetrics"), vo2Max: secret }],
    ["pulseox", "timeOffsetSpo2Values.7140", { ...item("pulseox", "pulseox"), timeOffsetSpo2Values: { "7140": secret } }],
    ["allDayRespiration", "timeOffsetEpochToBreaths.0", { ...item("allDayRespiration", "allDayRespiration"), timeOffsetEpochToBreaths: { "0": secret } }],
    ["healthSnapshot", "summaries.0.avgValue", { ...item("healthSnapshot", "healthSnapshot"), summaries: [{ summaryType: "spo2", avgValue: secret }] }],
    ["healthSnapshot", "offsetStartTimeInSeconds", { ...item("healthSnapshot", "healthSnapshot"), offsetStartTimeInSeconds: secret }],
    ["hrv", "hrvValues.300", { ...item("hrv", "hrv"), hrvValues: { "300": secret } }],
    ["bloodPressures", "systolic", { ...item("bloodPressures", "bloodPressures"), systolic: secret }],
    ["skinTemp", "avgDeviationCelsius", { ...item("skinTemp", "skinTemp"), avgDeviationCelsius: secret }],
    ["activityDetails", "summary.durationInSeconds", { ...item("activityDetails", "activityDetails"), summary: { ...(item("activityDetails", "activityDetails")["summary"] as object), durationInSeconds: secret } }],
    ["activityDetails", "samples.1.heartRate", { ...item("activityDetails-real-oauth1-push", "activityDetails"), samples: [{ startTimeInSeconds: 1754250823 }, { startTimeInSeconds: 1754250824, heartRate: secret }] }],
    ["activityDetails", "samples.0.airTemperatureCelcius", { ...item("activityDetails-real-oauth1-push", "activityDetails"), samples: [{ startTimeInSeconds: 1754250823, airTemperatureCelcius: secret }] }],
    ["activityDetails", "samples.0.airTemperatureCelsius", { ...item("activityDetails-real-oauth1-push", "activityDetails"), samples: [{ startTimeInSeconds: 1754250823, airTemperatureCelsius: secret }] }],
    ["manuallyUpdatedActivities", "distanceInMeters", { ...item("manuallyUpdatedActivities", "manuallyUpdatedActivities"), distanceInMeters: secret }],
    ["moveIQActivities", "offsetInSeconds", { ...item("moveIQActivities", "moveIQActivities"), offsetInSeconds: secret }],
    ["mct", "cycleLength", { ...item("mct", "mct", 1), cycleLength: secret }],
    ["mct", "pregnancySnapshot.dueDate", { ...item("mct", "mct", 2), pregnancySnapshot: { dueDate: secret } }]
  ]

  it.each(wrongTyped)("%s: a wrongly typed %s is named, its value never echoed", (key, path, raw) => {
    const message = errorOf(normalizers[key as keyof typeof normalizers](raw))
    expect(message).toContain(path)
    expect(message).not.toContain(secret)
    expect(message).not.toContain("4711")
  })

  it("requires the measurement time of bodyComps and bloodPressures, and the summary of activityDetails", () => {
    const { measurementTimeInSeconds: _b, ...noTime } = item("bodyComps", "bodyComps")
    expect(errorOf(normalizers.bodyComps(noTime))).toContain("measurementTimeInSeconds is missing")
    const { measurementTimeInSeconds: _p, ...noBpTime } = item("bloodPressures", "bloodPressures")
    expect(errorOf(normalizers.bloodPressures(noBpTime))).toContain("measurementTimeInSeconds is missing")
    const { summary: _s, ...noSummary } = item("activityDetails", "activityDetails")
    expect(errorOf(normalizers.activityDetails(noSummary))).toContain("summary is missing")
  })
})
