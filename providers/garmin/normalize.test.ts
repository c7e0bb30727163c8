import { Either, Schema } from "effect"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { ActivityFields, Sample, SleepFields, TimeseriesBatch, WorkoutFields } from "@wearflow/core/schema"
import { normalizers, sportOf } from "./normalize.ts"

const fixture = (name: string, key: string): Array<Record<string, unknown>> => {
  const body = JSON.parse(readFileSync(new URL(`../../test/fixtures/garmin/${name}.json`, import.meta.url), "utf8"))
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
    const records = ok(normalizers.sleeps, sleeps[0])
    expect(records.map((r) => [r.kind, r.resource, r.sourceId])).toEqual([["summary", "sleep", "EXAMPLE_567891"]])
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(records, "sleep"))
    expect(data).toEqual({
      date: "2016-01-10T00:00:00.000Z",
      calendar_date: "2016-01-10",
      bedtime_start: "2016-01-10T23:11:33.000Z",
      bedtime_stop: "2016-01-11T02:29:53.000Z",
      type: "long_sleep",
      duration: 11900,
      total: 11588,
      awake: 312,
      light: 0,
      rem: 2142,
      deep: 9446,
      score: 87,
      hr_lowest: null,
      hr_average: null,
      efficiency: 97.4, // 11588 / 11900
      latency: null,
      temperature_delta: null,
      average_hrv: null,
      respiratory_rate: 13.9, // (15.31 + 14.58 + 12.73 + 12.87) / 4
      timezone_offset: 7200,
      source: { provider: "garmin", type: "watch", device_id: null, app_id: null }
    })
  })

  it("accepts the alternate unmeasurable spelling and empty respiration", () => {
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(ok(normalizers.sleeps, sleeps[1]), "sleep"))
    expect(sleeps[1]).toHaveProperty("unmeasurableSleepInSeconds", 0)
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
    const data = Schema.decodeUnknownSync(SleepFields)(summaryData(ok(normalizers.sleeps, raw), "sleep"))
    expect(data.calendar_date).toBe("2021-01-29")
    expect(data.date).toBe("2021-01-29T00:00:00.000Z")
  })

  it("leaves efficiency null for an empty session", () => {
    const data = Schema.decodeUnknownSync(SleepFields)(
      summaryData(ok(normalizers.sleeps, { ...first(sleeps), durationInSeconds: 0 }), "sleep")
    )
    expect(data.efficiency).toBeNull()
    expect(data.bedtime_stop).toBe(data.bedtime_start)
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

describe("garmin bad input", () => {
  const daily = first(fixture("dailies", "dailies"))

  it.each([
    ["dailies", normalizers.dailies],
    ["sleeps", normalizers.sleeps],
    ["activities", normalizers.activities]
  ] as const)("%s rejects non-objects", (_key, normalize) => {
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
})
