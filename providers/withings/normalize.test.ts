import { Either, Schema } from "effect"
import { readFileSync, readdirSync } from "node:fs"
import { describe, expect, it } from "vitest"
import type { NormalizedRecord, Normalizer } from "@wearflow/core/normalizer"
import { ActivityFields, BodyFields, SleepFields, WorkoutFields } from "@wearflow/core/schema"
import { errorOf, samplesOf, shape, summaryOf, validated } from "@wearflow/core/testing"
import { dayOf, measureGroupSourceId, normalizers, offsetAt, realValue, sportOf, timeOf } from "./normalize.ts"

type Doc = Record<string, unknown>
type NormalizerKey = keyof typeof normalizers

const fixtureDir = new URL("./testing/fixtures/", import.meta.url)
const file = (name: string): unknown => JSON.parse(readFileSync(new URL(name, fixtureDir), "utf8"))
const bodyOf = (name: string): Doc => (file(name) as { body: Doc }).body

const at = <T>(items: ReadonlyArray<T>, index: number): T => {
  const item = items[index]
  if (item === undefined) throw new Error(`no item ${index}`)
  return item
}

/** getmeas groups as the plugin stores them: each with the answer's timezone. */
const getmeas = bodyOf("measure-getmeas.200.json")
const groupsOf = (groups: ReadonlyArray<Doc>, timezone: unknown): Array<Doc> => groups.map((g) => ({ ...g, timezone }))
const measureGroups = groupsOf(getmeas["measuregrps"] as Array<Doc>, getmeas["timezone"])
const bodyScan = groupsOf(file("measure-getmeas.measuregrps-bodyscan.json") as Array<Doc>, "Europe/Amsterdam")
const segmental = groupsOf(file("measure-getmeas.measuregrps-segmental.json") as Array<Doc>, "Europe/Amsterdam")
const activities = bodyOf("measure-v2-getactivity.200.json")["activities"] as Array<Doc>
const workouts = bodyOf("measure-v2-getworkouts.200.json")["series"] as Array<Doc>
const nights = bodyOf("sleep-v2-getsummary.page1.200.json")["series"] as Array<Doc>
const sleepGet = bodyOf("sleep-v2-get.200.json")
const segments = sleepGet["series"] as Array<Doc>

const groupById = (grpid: number): Doc => {
  const group = bodyScan.find((g) => g["grpid"] === grpid)
  if (group === undefined) throw new Error(`no group ${grpid}`)
  return group
}

/** Normalizes, fails the test on an ItemError, and validates every record against its schema. */
const valid = (key: NormalizerKey, raw: unknown): ReadonlyArray<NormalizedRecord> =>
  validated(Either.getOrThrowWith(normalizers[key](raw), (e) => new Error(`unexpected Left: ${e.message}`)))


const scan = { provider: "withings", type: "scale", device_id: "51e8d0e7d16da9ff673accf10958ca94fea55d6e", app_id: null }
const googleFit = { provider: "withings", type: "app", device_id: null, app_id: null }

/** A measure group of `measures` ([type, value, unit]) from a BPM Core, at 2024-01-15T08:00:00Z. */
const group = (measures: ReadonlyArray<readonly [number, number, number]>, extra: Doc = {}): Doc => ({
  grpid: 6000000001,
  attrib: 0,
  date: 1705305600,
  created: 1705305660,
  modified: 1705305660,
  category: 1,
  deviceid: "a1b2c3",
  hash_deviceid: "a1b2c3",
  modelid: 44,
  model: "BPM Core",
  comment: null,
  measures: measures.map(([type, value, unit]) => ({ value, type, unit, algo: 0, fm: 3 })),
  timezone: "Europe/Paris",
  ...extra
})

describe("withings measuregrp", () => {
  it("decodes value × 10^unit: 118003 at -3 is 118.003 kg of weight, into body and a weight sample", () => {
    const records = valid("measuregrp", at(measureGroups, 0))
    expect(shape(records)).toEqual([
      ["summary", "body", "meas:4815757309"],
      ["timeseries", "weight", "meas:4815757309"]
    ])
    const source = { provider: "withings", type: "scale", device_id: "f998be4b9ccc9e136fd8cd8e8e344c31ec3b271d", app_id: null }
    expect(Schema.decodeUnknownSync(BodyFields)(summaryOf(records, "body"))).toEqual({
      // 1693651151 = 2023-09-02T10:39:11Z, 12:39 in Amsterdam (CEST, +2 h).
      date: "2023-09-02T00:00:00.000Z",
      calendar_date: "2023-09-02",
      measured_at: "2023-09-02T10:39:11.000Z",
      weight: 118.003,
      fat: null,
      water_percentage: null,
      muscle_mass_kilogram: null,
      muscle_mass_percentage: null,
      bone_mass_kilogram: null,
      bone_mass_percentage: null,
      body_mass_index: null,
      lean_body_mass_kilogram: null,
      visceral_fat_index: null,
      waist_circumference_centimeters: null,
      timezone_offset: 7200,
      source
    })
    expect(samplesOf(records, "weight")).toEqual([{ timestamp: "2023-09-02T10:39:11.000Z", timezone_offset: 7200, type: "scale", unit: "kg", value: 118.003 }])
  })

  it("maps the group Withings repeats with attrib 8 (same as 0) to the same records", () => {
    expect(valid("measuregrp", at(measureGroups, 1))).toEqual(valid("measuregrp", at(measureGroups, 0)))
  })

  it("maps a Body Scan composition: whole-body masses, shares of weight, visceral fat; segmental values have no place", () => {
    const records = valid("measuregrp", groupById(5114418400))
    expect(shape(records)).toEqual([
      ["summary", "body", "meas:5114418400"],
      ["timeseries", "weight", "meas:5114418400"],
      ["timeseries", "fat", "meas:5114418400"]
    ])
    expect(summaryOf(records, "body")).toEqual({
      // 1703700043 = 2023-12-27T18:00:43Z, CET (+1 h).
      date: "2023-12-27T00:00:00.000Z",
      calendar_date: "2023-12-27",
      measured_at: "2023-12-27T18:00:43.000Z",
      weight: 95.908,
      fat: 19.904,
      // 52.17 kg of water in 95.908 kg.
      water_percentage: 54.4,
      muscle_mass_kilogram: 73.01,
      muscle_mass_percentage: 76.1,
      bone_mass_kilogram: 3.78,
      bone_mass_percentage: 3.9,
      body_mass_index: null,
      lean_body_mass_kilogram: 76.8,
      visceral_fat_index: 3.3,
      waist_circumference_centimeters: null,
      timezone_offset: 3600,
      source: scan
    })
    expect(samplesOf(records, "fat")).toEqual([{ timestamp: "2023-12-27T18:00:43.000Z", timezone_offset: 3600, type: "scale", unit: "%", value: 19.904 }])
  })

  it("maps the scale's pulse to a heartrate sample, and gives nothing for groups with no resource (feet, PWV, vascular age)", () => {
    const pulse = valid("measuregrp", groupById(5109691092))
    expect(shape(pulse)).toEqual([["timeseries", "heartrate", "meas:5109691092"]])
    expect(samplesOf(pulse, "heartrate")).toEqual([{ timestamp: "2023-12-25T17:04:23.000Z", timezone_offset: 3600, type: "scale", unit: "bpm", value: 120 }])
    // Electrodermal activity of the feet (196–198).
    expect(valid("measuregrp", groupById(5109691089))).toEqual([])
    // Pulse wave velocity (91) and vascular age (155).
    expect(valid("measuregrp", groupById(5183334781))).toEqual([])
    // The AFib classification (130) beside the pulse is no quantity.
    expect(shape(valid("measuregrp", groupById(5183334799)))).toEqual([["timeseries", "heartrate", "meas:5183334799"]])
  })

  it("maps the same group in the segmental capture exactly as in the full one", () => {
    for (const g of segmental) expect(valid("measuregrp", g)).toEqual(valid("measuregrp", groupById(g["grpid"] as number)))
  })

  it("maps a cuff reading to a systolic/diastolic pair and a heartrate sample", () => {
    const records = valid("measuregrp", group([[9, 82, 0], [10, 127, 0], [11, 64, 0]]))
    expect(shape(records)).toEqual([
      ["timeseries", "blood_pressure", "meas:6000000001"],
      ["timeseries", "heartrate", "meas:6000000001"]
    ])
    expect(samplesOf(records, "blood_pressure")).toEqual([
      { timestamp: "2024-01-15T08:00:00.000Z", timezone_offset: 3600, type: "cuff", unit: "mmHg", systolic: 127, diastolic: 82 }
    ])
    expect(samplesOf(records, "heartrate")).toEqual([{ timestamp: "2024-01-15T08:00:00.000Z", timezone_offset: 3600, type: "cuff", unit: "bpm", value: 64 }])
    // Half a pair is no blood pressure.
    expect(shape(valid("measuregrp", group([[10, 127, 0]])))).toEqual([])
  })

  it("maps SpO2, VO2 max and body temperature (71, else the thermometer's 12; skin temperature 73 is not the body's)", () => {
    const records = valid("measuregrp", group([[54, 975, -1], [123, 4210, -2]], { modelid: 93 }))
    expect(shape(records)).toEqual([
      ["timeseries", "blood_oxygen", "meas:6000000001"],
      ["timeseries", "vo2_max", "meas:6000000001"]
    ])
    expect(samplesOf(records, "blood_oxygen")[0]).toMatchObject({ value: 97.5, unit: "%", type: "watch" })
    expect(samplesOf(records, "vo2_max")[0]).toMatchObject({ value: 42.1, unit: "mL/kg/min" })
    const temperatures = valid("measuregrp", group([[71, 3690, -2], [12, 368, -1], [73, 3310, -2]], { modelid: 70 }))
    expect(shape(temperatures)).toEqual([["timeseries", "body_temperature", "meas:6000000001"]])
    expect(samplesOf(temperatures, "body_temperature")).toEqual([{ timestamp: "2024-01-15T08:00:00.000Z", timezone_offset: 3600, type: "unknown", unit: "°C", value: 36.9 }])
    expect(samplesOf(valid("measuregrp", group([[12, 368, -1]], { modelid: 70 })), "body_temperature")[0]).toMatchObject({ value: 36.8 })
    expect(valid("measuregrp", group([[73, 3310, -2]], { modelid: 70 }))).toEqual([])
  })

  it("computes the BMI only from a height in the same group", () => {
    const records = valid("measuregrp", group([[1, 80000, -3], [4, 180, -2]], { modelid: 5 }))
    expect(summaryOf(records, "body")).toMatchObject({ weight: 80, body_mass_index: 24.7 })
  })

  it("drops measures Withings could not attribute for sure and goals, and marks manual entries as app data", () => {
    const weight = group([[1, 70500, -3]], { modelid: 5 })
    expect(valid("measuregrp", { ...weight, attrib: 1 })).toEqual([])
    expect(valid("measuregrp", { ...weight, attrib: 4 })).toEqual([])
    expect(valid("measuregrp", { ...weight, category: 2 })).toEqual([])
    expect(summaryOf(valid("measuregrp", { ...weight, attrib: 2 }), "body")).toMatchObject({ weight: 70.5, source: { type: "app" } })
  })

  it("keeps the sourceIds with the changed values when Withings revises a group", () => {
    const first = at(measureGroups, 0)
    const revised = { ...first, modified: 1693660000, measures: [{ value: 117503, type: 1, unit: -3, algo: 3, fm: 3 }] }
    const again = valid("measuregrp", revised)
    expect(shape(again)).toEqual(shape(valid("measuregrp", first)))
    expect(summaryOf(again, "body")).toMatchObject({ weight: 117.503 })
    expect(measureGroupSourceId(4815757309)).toBe("meas:4815757309")
    // A quoted grpid names the same group.
    expect(shape(valid("measuregrp", { ...first, grpid: "4815757309" }))).toEqual(shape(again))
  })

  it("uses the UTC date and no offset without a zone, or with one Intl does not know", () => {
    const { timezone: _t, ...noZone } = at(measureGroups, 0)
    expect(summaryOf(valid("measuregrp", noZone), "body")).toMatchObject({ timezone_offset: null, calendar_date: "2023-09-02" })
    expect(summaryOf(valid("measuregrp", { ...noZone, timezone: "Mars/Olympus" }), "body")).toMatchObject({ timezone_offset: null })
  })

  it("decodes values exactly", () => {
    expect(realValue({ value: 118003, unit: -3, type: 1 })).toBe(118.003)
    expect(realValue({ value: 7718, unit: -2, type: 5 })).toBe(77.18)
    expect(realValue({ value: 12, unit: 2, type: 1 })).toBe(1200)
    expect(realValue({ value: 120, unit: 0, type: 11 })).toBe(120)
    // Multiplying by 10^-1 would give 3.3000000000000003.
    expect(realValue({ value: 33, unit: -1, type: 170 })).toBe(3.3)
  })
})

describe("withings activity", () => {
  const day = at(activities, 0)
  const records = valid("activity", day)

  it("maps a day to one schema-valid activity keyed by the day and the source", () => {
    expect(shape(records)).toEqual([["summary", "activity", "activity:2023-10-20:model-1055"]])
    expect(Schema.decodeUnknownSync(ActivityFields)(summaryOf(records, "activity"))).toEqual({
      date: "2023-10-20T00:00:00.000Z",
      calendar_date: "2023-10-20",
      calories_total: 2303.788,
      calories_active: 85.497,
      steps: 1209,
      daily_movement: 1028.559,
      low: 1864 / 60,
      medium: 292 / 60,
      high: 0,
      floors_climbed: 0,
      heart_rate: { avg_bpm: 80, min_bpm: 70, max_bpm: 80, resting_bpm: null, avg_walking_bpm: null },
      wheelchair_use: null,
      wheelchair_push: null,
      timezone_offset: 7200,
      // Google Fit (brand 18), no device.
      source: googleFit
    })
  })

  it("fills a day without heart rate with null", () => {
    const data = summaryOf(valid("activity", at(activities, 1)), "activity") as typeof ActivityFields.Type
    expect([data.steps, data.high, data.heart_rate]).toEqual([1155, 7, null])
  })

  it("keeps the sourceId with the changed data when Withings rewrites today's row", () => {
    const revised = valid("activity", { ...day, steps: 4000, modified: 1697890000 })
    expect(shape(revised)).toEqual(shape(records))
    expect(summaryOf(revised, "activity")).toMatchObject({ steps: 4000 })
  })

  it("keeps a Withings tracker's row of the same day apart, as a watch", () => {
    const tracker = valid("activity", { ...day, brand: 1, is_tracker: true, modelid: 93, deviceid: "abc123", hash_deviceid: "abc123" })
    expect(shape(tracker)).toEqual([["summary", "activity", "activity:2023-10-20:abc123"]])
    expect(summaryOf(tracker, "activity")).toMatchObject({ source: { provider: "withings", type: "watch", device_id: "abc123", app_id: null } })
  })

  it("treats -1 as no value", () => {
    expect(summaryOf(valid("activity", { ...day, steps: -1, totalcalories: -1 }), "activity")).toMatchObject({ steps: null, calories_total: null })
  })
})

describe("withings workout", () => {
  it("maps every recorded workout to a schema-valid workouts summary keyed by its id", () => {
    const all = workouts.flatMap((w) => valid("workout", w))
    expect(all).toHaveLength(11)
    // The capture lists workout 3752609174 twice: the same record both times.
    expect(new Set(all.map((r) => r.sourceId)).size).toBe(10)
  })

  it("maps the category, span, heart rate, distance, calories and moving time", () => {
    const records = valid("workout", at(workouts, 0))
    expect(shape(records)).toEqual([["summary", "workouts", "workout:3661300277"]])
    expect(Schema.decodeUnknownSync(WorkoutFields)(summaryOf(records, "workouts"))).toEqual({
      title: null,
      calendar_date: "2023-08-29",
      time_start: "2023-08-29T19:06:51.000Z",
      time_end: "2023-08-29T19:15:13.000Z",
      sport: { id: 1, name: "Walk", slug: "walk" },
      average_hr: 80,
      max_hr: 80,
      distance: 680,
      calories: 47,
      // 502 s less an 80 s pause.
      moving_time: 422,
      total_elevation_gain: null,
      elev_high: null,
      elev_low: null,
      average_speed: null,
      max_speed: null,
      average_watts: null,
      max_watts: null,
      weighted_average_watts: null,
      provider_id: "3661300277",
      timezone_offset: 7200,
      source: googleFit
    })
  })

  it("fills a workout without figures with null; zero heart rates are no readings", () => {
    expect(summaryOf(valid("workout", at(workouts, 1)), "workouts")).toMatchObject({ average_hr: null, distance: null, calories: null, moving_time: null })
    expect(summaryOf(valid("workout", at(workouts, 2)), "workouts")).toMatchObject({ average_hr: null, max_hr: null, distance: 1294, calories: 82 })
  })

  it("keeps the sourceId with the changed data when Withings revises a workout", () => {
    const first = at(workouts, 0)
    const revised = valid("workout", { ...first, category: 2, modified: 1693490000 })
    expect(shape(revised)).toEqual(shape(valid("workout", first)))
    expect(summaryOf(revised, "workouts")).toMatchObject({ sport: { id: 2, name: "Run", slug: "run" } })
  })

  it("names sports from Withings' categories, keeping unknown codes", () => {
    expect(sportOf(20)).toEqual({ id: 20, name: "Basket-ball", slug: "basket_ball" })
    expect(sportOf(506)).toEqual({ id: 506, name: "Pétanque", slug: "petanque" })
    expect(sportOf(307)).toEqual({ id: 307, name: "Indoor running", slug: "indoor_running" })
    expect(sportOf(9999)).toEqual({ id: 9999, name: "Category 9999", slug: "category_9999" })
  })

  it("refuses a workout that ends before it starts", () => {
    expect(errorOf(normalizers.workout({ ...at(workouts, 0), enddate: 1693336000 }))).toBe("enddate is before startdate")
  })
})

describe("withings sleep_summary", () => {
  const night = at(nights, 0)
  const records = valid("sleep_summary", night)

  it("maps a night to one sleep summary keyed by its id", () => {
    expect(shape(records)).toEqual([["summary", "sleep", "sleep:2081804182"]])
    expect(Schema.decodeUnknownSync(SleepFields)(summaryOf(records, "sleep"))).toEqual({
      date: "2021-04-18T00:00:00.000Z",
      calendar_date: "2021-04-18",
      // 22:30:53 → 04:32:53 in Paris (CEST).
      bedtime_start: "2021-04-17T20:30:53.000Z",
      bedtime_stop: "2021-04-18T02:32:53.000Z",
      type: "long_sleep",
      duration: 21720,
      total: 18660,
      awake: 3060,
      light: 10440,
      rem: 2400,
      deep: 5820,
      score: 37,
      hr_lowest: 70,
      hr_average: 103,
      // 0.86 of the time in bed.
      efficiency: 86,
      latency: 540,
      temperature_delta: null,
      average_hrv: null,
      respiratory_rate: 14,
      timezone_offset: 7200,
      source: { provider: "withings", type: "unknown", device_id: "201d0b9a0556d6b755166b2cf8d22d3bdf0487ee", app_id: null }
    })
  })

  it("maps every night of the recorded page", () => {
    const all = nights.flatMap((n) => valid("sleep_summary", n))
    expect(all).toHaveLength(300)
    expect(new Set(all.map((r) => r.sourceId)).size).toBe(300)
  })

  it("reads -1 as no value, external nights' asleep time as the total, and a span under 3 h as a short sleep", () => {
    const data = night["data"] as Doc
    const nap = valid("sleep_summary", {
      ...night,
      enddate: (night["startdate"] as number) + 5400,
      data: { ...data, total_sleep_time: null, asleepduration: 5000, lightsleepduration: null, sleep_latency: -1, durationtosleep: -1, hr_min: -1 }
    })
    expect(summaryOf(nap, "sleep")).toMatchObject({ type: "short_sleep", duration: 5400, total: 5000, light: null, latency: null, hr_lowest: null })
  })

  it("turns the efficiency ratio into a percentage without float noise (0.57 × 100 is 56.99999999999999)", () => {
    const data = night["data"] as Doc
    expect(summaryOf(valid("sleep_summary", { ...night, data: { ...data, sleep_efficiency: 0.57 } }), "sleep")).toMatchObject({ efficiency: 57 })
  })

  it("keeps the sourceId with the changed data when Withings revises a night", () => {
    const revised = valid("sleep_summary", { ...night, modified: 1620240000, data: { ...(night["data"] as Doc), sleep_score: 41 } })
    expect(shape(revised)).toEqual(shape(records))
    expect(summaryOf(revised, "sleep")).toMatchObject({ score: 41 })
  })

  it("refuses a night that ends before it starts", () => {
    expect(errorOf(normalizers.sleep_summary({ ...night, enddate: 1618691000 }))).toBe("enddate is before startdate")
  })
})

describe("withings sleep_series", () => {
  // The capture spans a week; the plugin stores one UTC day per item.
  const day = { startdate: Date.parse("2021-04-17T00:00:00Z") / 1000, enddate: Date.parse("2021-04-18T00:00:00Z") / 1000, timezone: "Europe/Paris", series: segments }
  const records = valid("sleep_series", day)
  const id = "sleep_series:1618617600:201d0b9a0556d6b755166b2cf8d22d3bdf0487ee"

  it("maps the day's heart rate and breathing samples, keyed by the window and the device; stages have no place", () => {
    expect(shape(records)).toEqual([
      ["timeseries", "heartrate", id],
      ["timeseries", "respiratory_rate", id]
    ])
    const hr = samplesOf(records, "heartrate")
    expect(hr[0]).toEqual({ timestamp: "2021-04-17T20:30:53.000Z", timezone_offset: 7200, type: "unknown", unit: "bpm", value: 70 })
    expect(hr.every((s) => String(s["timestamp"]).startsWith("2021-04-17"))).toBe(true)
    expect(samplesOf(records, "respiratory_rate")[0]).toEqual({
      timestamp: "2021-04-17T20:30:53.000Z",
      timezone_offset: 7200,
      type: "unknown",
      unit: "breaths/min",
      value: 15
    })
  })

  it("keeps every sample of the week once across seven UTC days, and none outside its window", () => {
    const keys = new Set(segments.flatMap((s) => Object.keys(s["hr"] as Doc)))
    let total = 0
    for (let d = 0; d < 8; d++) {
      const start = day.startdate + d * 86_400
      const batch = valid("sleep_series", { ...day, startdate: start, enddate: start + 86_400 })
      for (const record of batch) {
        if (record.kind !== "timeseries" || record.resource !== "heartrate") continue
        total += record.data.data.length
        for (const s of record.data.data) expect(Date.parse(s.timestamp) / 1000 - start).toBeLessThan(86_400)
      }
    }
    expect(total).toBe(keys.size)
  })

  it("keeps the sourceIds with the changed samples when a later fetch of the day differs", () => {
    const first = at(segments, 0)
    const hr = first["hr"] as Record<string, number>
    const revised = valid("sleep_series", { ...day, series: [{ ...first, hr: { ...hr, "1618691453": 69 } }, ...segments.slice(1)] })
    expect(shape(revised)).toEqual(shape(records))
    expect(samplesOf(revised, "heartrate")[0]?.["value"]).toBe(69)
  })

  it("maps rmssd to hrv, keeps devices apart, and ignores keys that are no epoch seconds", () => {
    const segment = { startdate: 1618691453, enddate: 1618691573, state: 1, model_id: 93, hash_deviceid: "watch1", hr: { "1618691453": 60, later: 61 }, rmssd: { "1618691453": 42 } }
    const mixed = valid("sleep_series", { ...day, series: [segment, at(segments, 0)] })
    expect(shape(mixed)).toEqual([
      ["timeseries", "heartrate", "sleep_series:1618617600:201d0b9a0556d6b755166b2cf8d22d3bdf0487ee"],
      ["timeseries", "respiratory_rate", "sleep_series:1618617600:201d0b9a0556d6b755166b2cf8d22d3bdf0487ee"],
      ["timeseries", "heartrate", "sleep_series:1618617600:watch1"],
      ["timeseries", "hrv", "sleep_series:1618617600:watch1"]
    ])
    expect(samplesOf(mixed, "hrv")).toEqual([{ timestamp: "2021-04-17T20:30:53.000Z", timezone_offset: 7200, type: "watch", unit: "ms", value: 42 }])
    expect(samplesOf(mixed, "heartrate", "sleep_series:1618617600:watch1")).toHaveLength(1)
  })

  it("gives nothing for a day without sleep", () => {
    expect(valid("sleep_series", { ...day, series: [] })).toEqual([])
  })
})

describe("withings intraday", () => {
  // No real capture exists; this follows the OpenAPI's getintradayactivity answer.
  const start = Date.parse("2024-03-30T00:00:00Z") / 1000
  const tracker = { deviceid: "892359876fd8805ac45bab078c4828692f0276b1", model: "ScanWatch", model_id: 93 }
  const item = {
    startdate: start,
    enddate: start + 86_400,
    timezone: "Europe/Paris",
    series: {
      [String(start + 3600)]: { ...tracker, steps: 42, calories: 2.5, distance: 31.5, duration: 60, heart_rate: 88, spo2_auto: 97, rmssd: 35, rr: 14 },
      [String(start + 3660)]: { ...tracker, steps: 0, calories: 0, distance: 0, duration: 60, heart_rate: 0 },
      [String(start + 7200)]: { deviceid: null, model: "Android step tracker", model_id: 1053, steps: 120, duration: 300 },
      // Outside the window: the next day's.
      [String(start + 86_400)]: { ...tracker, steps: 5, duration: 60 }
    }
  }
  const records = valid("intraday", item)
  const watchId = `intraday:${start}:892359876fd8805ac45bab078c4828692f0276b1`
  const phoneId = `intraday:${start}:model-1053`

  it("maps each device's entries to interval and discrete samples keyed by the window and the device", () => {
    expect(shape(records)).toEqual([
      ["timeseries", "steps", watchId],
      ["timeseries", "calories_active", watchId],
      ["timeseries", "distance", watchId],
      ["timeseries", "heartrate", watchId],
      ["timeseries", "blood_oxygen", watchId],
      ["timeseries", "hrv", watchId],
      ["timeseries", "respiratory_rate", watchId],
      ["timeseries", "steps", phoneId]
    ])
    // 2024-03-30 is still winter time in Paris: +1 h.
    expect(samplesOf(records, "steps", watchId)).toEqual([
      { timestamp: "2024-03-30T01:00:00.000Z", start: "2024-03-30T01:00:00.000Z", end: "2024-03-30T01:01:00.000Z", timezone_offset: 3600, type: "watch", unit: "count", value: 42 },
      { timestamp: "2024-03-30T01:01:00.000Z", start: "2024-03-30T01:01:00.000Z", end: "2024-03-30T01:02:00.000Z", timezone_offset: 3600, type: "watch", unit: "count", value: 0 }
    ])
    expect(samplesOf(records, "calories_active", watchId)[0]).toMatchObject({ value: 2.5, unit: "kcal" })
    expect(samplesOf(records, "distance", watchId)[0]).toMatchObject({ value: 31.5, unit: "m" })
    // A heart rate of 0 is no reading.
    expect(samplesOf(records, "heartrate", watchId)).toEqual([{ timestamp: "2024-03-30T01:00:00.000Z", timezone_offset: 3600, type: "watch", unit: "bpm", value: 88 }])
    expect(samplesOf(records, "blood_oxygen", watchId)[0]).toMatchObject({ value: 97, unit: "%" })
    expect(samplesOf(records, "hrv", watchId)[0]).toMatchObject({ value: 35, unit: "ms" })
    expect(samplesOf(records, "respiratory_rate", watchId)[0]).toMatchObject({ value: 14, unit: "breaths/min" })
    expect(samplesOf(records, "steps", phoneId)).toEqual([
      { timestamp: "2024-03-30T02:00:00.000Z", start: "2024-03-30T02:00:00.000Z", end: "2024-03-30T02:05:00.000Z", timezone_offset: 3600, type: "app", unit: "count", value: 120 }
    ])
  })

  it("keeps the sourceIds with the changed samples when a later fetch of the window differs", () => {
    const series = { ...item.series, [String(start + 3600)]: { ...tracker, steps: 50, duration: 60 } }
    const revised = valid("intraday", { ...item, series })
    expect(revised.map((r) => r.sourceId)).toContain(watchId)
    expect(samplesOf(revised, "steps", watchId)[0]?.["value"]).toBe(50)
  })

  it("gives each sample the offset at its own instant across a DST change, in one record", () => {
    // Paris moves from +1 h to +2 h at 2024-03-31T01:00:00Z.
    const day = Date.parse("2024-03-31T00:00:00Z") / 1000
    const records = valid("intraday", {
      startdate: day,
      enddate: day + 86_400,
      timezone: "Europe/Paris",
      series: {
        [String(day + 1800)]: { ...tracker, steps: 10, duration: 60, heart_rate: 60 },
        [String(day + 5400)]: { ...tracker, steps: 20, duration: 60, heart_rate: 61 }
      }
    })
    const id = `intraday:${day}:892359876fd8805ac45bab078c4828692f0276b1`
    expect(shape(records)).toEqual([
      ["timeseries", "steps", id],
      ["timeseries", "heartrate", id]
    ])
    expect(samplesOf(records, "steps").map((s) => [s["start"], s["timezone_offset"], s["value"]])).toEqual([
      ["2024-03-31T00:30:00.000Z", 3600, 10],
      ["2024-03-31T01:30:00.000Z", 7200, 20]
    ])
    expect(samplesOf(records, "heartrate").map((s) => [s["timestamp"], s["timezone_offset"]])).toEqual([
      ["2024-03-31T00:30:00.000Z", 3600],
      ["2024-03-31T01:30:00.000Z", 7200]
    ])
  })

  it("gives nothing for an empty answer (Withings sends [])", () => {
    expect(valid("intraday", { ...item, series: [] })).toEqual([])
    expect(valid("intraday", { ...item, series: {} })).toEqual([])
  })

  it("refuses a window that ends before it starts", () => {
    expect(errorOf(normalizers.intraday({ ...item, enddate: start - 1 }))).toBe("enddate is before startdate")
  })
})

describe("withings time", () => {
  it("derives the offset from the zone name at the instant, DST included", () => {
    expect(offsetAt("Europe/Paris", Date.parse("2024-01-15T12:00:00Z") / 1000)).toBe(3600)
    expect(offsetAt("Europe/Paris", Date.parse("2024-07-15T12:00:00Z") / 1000)).toBe(7200)
    // The switch: 2024-03-31T01:00:00Z.
    expect(offsetAt("Europe/Paris", Date.parse("2024-03-31T00:59:59Z") / 1000)).toBe(3600)
    expect(offsetAt("Europe/Paris", Date.parse("2024-03-31T01:00:00Z") / 1000)).toBe(7200)
    expect(offsetAt("America/New_York", Date.parse("2024-01-15T12:00:00Z") / 1000)).toBe(-18000)
    expect(offsetAt("Asia/Kolkata", 0)).toBe(19800)
    expect(offsetAt("UTC", 1_700_000_000)).toBe(0)
    for (const zone of [null, undefined, "", "Mars/Olympus", "secret-value-4711"]) expect(offsetAt(zone, 1_700_000_000)).toBeNull()
  })

  it("says when an item's data is from", () => {
    const g = at(measureGroups, 0)
    expect([dayOf(g), timeOf(g)]).toEqual(["2023-09-02", "2023-09-02T10:39:11.000Z"])
    // 23:30 UTC is the next day in Tokyo.
    expect(dayOf({ date: Date.parse("2024-01-15T23:30:00Z") / 1000, timezone: "Asia/Tokyo" })).toBe("2024-01-16")
    expect([dayOf(at(activities, 0)), timeOf(at(activities, 0))]).toEqual(["2023-10-20", undefined])
    expect([dayOf(at(workouts, 0)), timeOf(at(workouts, 0))]).toEqual(["2023-08-29", "2023-08-29T19:06:51.000Z"])
    expect([dayOf(at(nights, 0)), timeOf(at(nights, 0))]).toEqual(["2021-04-18", "2021-04-17T20:30:53.000Z"])
    expect([dayOf({ startdate: 1618617600, enddate: 1618704000, series: [] }), timeOf({ startdate: 1618617600 })]).toEqual([
      "2021-04-17",
      "2021-04-17T00:00:00.000Z"
    ])
    for (const raw of [null, 42, "2024-11-11", [], {}, { date: "2024-02-30", startdate: -5 }]) expect([dayOf(raw), timeOf(raw)]).toEqual([undefined, undefined])
  })
})

describe("withings item kinds", () => {
  it("has one normalizer per item kind the plugin stores", () => {
    const all: Readonly<Record<string, Normalizer>> = normalizers
    expect(Object.keys(all).sort()).toEqual(["activity", "intraday", "measuregrp", "sleep_series", "sleep_summary", "workout"])
  })
})

describe("withings fixtures", () => {
  const items: Record<string, () => ReadonlyArray<readonly [NormalizerKey, unknown]>> = {
    "measure-getmeas.200.json": () => measureGroups.map((g) => ["measuregrp", g] as const),
    "measure-getmeas.measuregrps-bodyscan.json": () => bodyScan.map((g) => ["measuregrp", g] as const),
    "measure-getmeas.measuregrps-segmental.json": () => segmental.map((g) => ["measuregrp", g] as const),
    "measure-v2-getactivity.200.json": () => activities.map((a) => ["activity", a] as const),
    "measure-v2-getworkouts.200.json": () => workouts.map((w) => ["workout", w] as const),
    "sleep-v2-getsummary.page1.200.json": () => nights.map((n) => ["sleep_summary", n] as const),
    "sleep-v2-get.200.json": () => [["sleep_series", { startdate: 1618617600, enddate: 1619308800, timezone: "Europe/Paris", series: segments }] as const]
  }

  it("covers every fixture file but the ones only the fake serves (devices and goals: no normalized resource)", () => {
    const servedOnly = ["user-v2-getdevice.200.json", "user-v2-getgoals.200.json"]
    expect(readdirSync(fixtureDir).filter((file) => !servedOnly.includes(file)).sort()).toEqual(Object.keys(items).sort())
  })

  it.each(Object.entries(items))("%s: every item normalizes to schema-valid records", (_name, list) => {
    const all = list()
    expect(all.length).toBeGreaterThan(0)
    for (const [key, raw] of all) valid(key, raw)
  })

  it("counts what the body scan capture holds: 17 weighings, 14 compositions, 8 pulses", () => {
    const all = bodyScan.flatMap((g) => valid("measuregrp", g))
    const count = (resource: string) => all.filter((r) => r.resource === resource).length
    expect([count("body"), count("weight"), count("fat"), count("heartrate")]).toEqual([17, 17, 14, 8])
  })
})

describe("withings bad input", () => {
  const secret = "secret-value-4711"
  const secretNumber = -987654321.25
  /** Values that must never show up in a message, and the wrong-typed values that carry them. */
  const hostile: ReadonlyArray<unknown> = [null, secret, "NaN", secretNumber, 987654321987, true, {}, [], [secret], Array.from({ length: 100_001 }, () => 1)]

  /** Every field path of an item: its keys, nested objects' keys, and the first item of arrays. */
  const pathsOf = (value: unknown, prefix: ReadonlyArray<string | number> = []): Array<ReadonlyArray<string | number>> => {
    if (Array.isArray(value)) return value.length === 0 ? [] : [[...prefix, 0], ...pathsOf(value[0], [...prefix, 0])]
    if (typeof value !== "object" || value === null) return []
    return Object.entries(value).flatMap(([key, v]) => [[...prefix, key], ...pathsOf(v, [...prefix, key])])
  }

  /** A copy of `doc` with the value at `path` replaced, or removed when `replacement` is `drop`. */
  const drop = Symbol("drop")
  const mutate = (doc: unknown, path: ReadonlyArray<string | number>, replacement: unknown): unknown => {
    const [head, ...rest] = path
    if (head === undefined) return replacement
    if (Array.isArray(doc)) {
      const copy = [...doc]
      copy[head as number] = mutate(copy[head as number], rest, replacement)
      return copy
    }
    const copy = { ...(doc as Doc) }
    if (rest.length === 0 && replacement === drop) delete copy[head]
    else copy[head] = mutate(copy[head], rest, replacement)
    return copy
  }

  const subjects: ReadonlyArray<readonly [NormalizerKey, unknown]> = [
    ["measuregrp", groupById(5114418400)],
    ["measuregrp", group([[9, 82, 0], [10, 127, 0], [11, 64, 0], [54, 975, -1]])],
    ["activity", at(activities, 0)],
    ["workout", at(workouts, 0)],
    ["sleep_summary", at(nights, 0)],
    ["sleep_series", { startdate: 1618617600, enddate: 1618704000, timezone: "Europe/Paris", series: segments.slice(0, 2) }],
    [
      "intraday",
      {
        startdate: 1711756800,
        enddate: 1711843200,
        timezone: "Europe/Paris",
        series: { "1711760400": { deviceid: "abc", model: "ScanWatch", model_id: 93, steps: 42, calories: 2.5, distance: 31.5, duration: 60, heart_rate: 88, spo2_auto: 97, rmssd: 35, rr: 14 } }
      }
    ]
  ]

  it.each(Object.keys(normalizers))("%s rejects non-objects, naming the record", (key) => {
    for (const raw of [null, 42, "text", [], undefined, Number.NaN]) expect(errorOf(normalizers[key as NormalizerKey](raw))).toContain("record")
  })

  it.each(subjects)("%s: dropping or replacing any field never throws; errors name the field, never a value", (key, doc) => {
    const normalize = normalizers[key]
    let errors = 0
    for (const path of pathsOf(doc)) {
      for (const replacement of [drop, ...hostile]) {
        const raw = mutate(doc, path, replacement)
        let result: ReturnType<typeof normalize> | undefined
        expect(() => {
          result = normalize(raw)
        }).not.toThrow()
        if (result === undefined) continue
        if (Either.isRight(result)) {
          // Whatever is accepted still maps to schema-valid records.
          validated(result.right)
          continue
        }
        errors++
        const message = result.left.message
        expect(message, `${path.join(".")}`).toContain(String(path[0]))
        for (const leak of [secret, "4711", "987654321", "NaN"]) expect(message).not.toContain(leak)
      }
    }
    expect(errors).toBeGreaterThan(0)
  })

  it("refuses device ids that are no plain word, since they are part of record keys", () => {
    const message = errorOf(normalizers.activity({ ...at(activities, 0), deviceid: "a:b/secret" }))
    expect(message).toContain("deviceid")
    expect(message).not.toContain("secret")
  })

  it("refuses units no measure has, which would overflow", () => {
    expect(errorOf(normalizers.measuregrp(group([[1, 70500, 400]])))).toContain("measures.0.unit")
  })

  it("drops samples that would land past the year 9999 instead of failing", () => {
    const end = 253_402_300_799
    const records = valid("intraday", {
      startdate: end - 120,
      enddate: end,
      series: { [String(end - 60)]: { deviceid: "abc", model_id: 93, steps: 5, duration: 3600, heart_rate: 70 } }
    })
    expect(shape(records)).toEqual([["timeseries", "heartrate", `intraday:${end - 120}:abc`]])
  })
})
