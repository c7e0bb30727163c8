import { Either, Schema } from "effect"
import { readFileSync, readdirSync } from "node:fs"
import { describe, expect, it } from "vitest"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { ActivityFields, SleepFields, WorkoutFields } from "@wearflow/core/schema"
import { errorOf, samplesOf, shape, summaryOf, validated } from "@wearflow/core/testing"
import { collectionPath, dayOf, normalizers, sportOf, storedOnly, timeOf } from "./normalize.ts"
import { parseInstant } from "./normalize/shared.ts"

type Doc = Record<string, unknown>
type NormalizerKey = keyof typeof normalizers

const fixtureDir = new URL("./testing/fixtures/", import.meta.url)
const body = (file: string): unknown => JSON.parse(readFileSync(new URL(file, fixtureDir), "utf8"))

/** The documents of a fixture: a list envelope's `data`, or the bare document of a single GET. */
const docs = (file: string): Array<Doc> => {
  const parsed = body(file) as Doc
  return Array.isArray(parsed["data"]) ? (parsed["data"] as Array<Doc>) : [parsed]
}

const at = <T>(items: ReadonlyArray<T>, index: number): T => {
  const item = items[index]
  if (item === undefined) throw new Error(`no item ${index}`)
  return item
}

const byId = (items: ReadonlyArray<Doc>, id: string): Doc => {
  const item = items.find((d) => d["id"] === id)
  if (item === undefined) throw new Error(`no document ${id}`)
  return item
}

/** Normalizes, fails the test on an ItemError, and validates every record against its schema. */
const valid = (key: NormalizerKey, raw: unknown): ReadonlyArray<NormalizedRecord> =>
  validated(Either.getOrThrowWith(normalizers[key](raw), (e) => new Error(`unexpected Left: ${e.message}`)))


const ring = { provider: "oura", type: "ring", device_id: null, app_id: null }

describe("oura daily_activity", () => {
  const doc = at(docs("daily_activity.list.200.json"), 0)
  const records = valid("daily_activity", doc)

  it("maps the day to one schema-valid activity keyed by the document id", () => {
    expect(shape(records)).toEqual([["summary", "activity", "3e8de08b-9fa1-4fb0-8edc-0ccf097f6693"]])
    expect(Schema.decodeUnknownSync(ActivityFields)(summaryOf(records, "activity"))).toEqual({
      date: "2024-11-11T00:00:00.000Z",
      calendar_date: "2024-11-11",
      calories_total: 3502,
      calories_active: 1153,
      steps: 15185,
      daily_movement: 17850,
      low: 18060 / 60,
      medium: 4860 / 60,
      high: 2460 / 60,
      floors_climbed: null,
      heart_rate: null,
      wheelchair_use: null,
      wheelchair_push: null,
      // From the day's timestamp, 2024-11-11T04:00:00+01:00.
      timezone_offset: 3600,
      source: ring
    })
  })

  it("keeps the sourceId with the changed data when Oura revises the day (it grows during the day)", () => {
    const revised = valid("daily_activity", { ...doc, steps: 16000, active_calories: 1200 })
    expect(shape(revised)).toEqual(shape(records))
    expect(summaryOf(revised, "activity")).toMatchObject({ steps: 16000, calories_active: 1200, calories_total: 3502 })
  })

  it("maps the single-document GET like the list entry", () => {
    expect(valid("daily_activity", at(docs("daily_activity.get.200.json"), 0))).toEqual(records)
  })

  it("tolerates a document without the optional figures (older captures lack fields)", () => {
    const data = summaryOf(valid("daily_activity", { id: "a", day: "2024-11-11" }), "activity") as typeof ActivityFields.Type
    expect(data.steps).toBeNull()
    expect(data.calories_total).toBeNull()
    expect(data.timezone_offset).toBeNull()
  })
})

describe("oura sleep", () => {
  const periods = docs("sleep.list.200.json")
  const night = at(periods, 0)
  const records = valid("sleep", night)

  it("maps a long sleep to a sleep summary, heartrate, hrv and respiratory_rate, all keyed by the period id", () => {
    const id = "96e7772a-64a7-4342-9c5f-3e5ed9e64d6d"
    expect(shape(records)).toEqual([
      ["summary", "sleep", id],
      ["timeseries", "heartrate", id],
      ["timeseries", "hrv", id],
      ["timeseries", "respiratory_rate", id]
    ])
    expect(Schema.decodeUnknownSync(SleepFields)(summaryOf(records, "sleep"))).toEqual({
      date: "2024-10-10T00:00:00.000Z",
      calendar_date: "2024-10-10",
      // 2024-10-10T01:01:59+02:00 → 2024-10-10T09:04:12+02:00
      bedtime_start: "2024-10-09T23:01:59.000Z",
      bedtime_stop: "2024-10-10T07:04:12.000Z",
      type: "long_sleep",
      duration: 28933,
      total: 23220,
      awake: 5713,
      light: 17160,
      rem: 3000,
      deep: 3060,
      score: null,
      hr_lowest: 60,
      hr_average: 71.25,
      efficiency: 80,
      latency: 930,
      temperature_delta: -0.05,
      average_hrv: 38,
      respiratory_rate: 14.5,
      timezone_offset: 7200,
      source: ring
    })
  })

  it("places the 5-minute samples from the sample timestamp, skipping null items", () => {
    const hr = samplesOf(records, "heartrate")
    // 96 items, 3 of them null.
    expect(hr).toHaveLength(93)
    expect(hr[0]).toEqual({ timestamp: "2024-10-09T23:01:59.000Z", timezone_offset: 7200, type: "ring", unit: "bpm", value: 76 })
    // Item 95: start + 95 × 300 s.
    expect(hr[92]).toEqual({ timestamp: "2024-10-10T06:56:59.000Z", timezone_offset: 7200, type: "ring", unit: "bpm", value: 64 })
    // Items 29, 51 and 52 are null: no sample at start + 29 × 300 s.
    expect(hr.map((s) => s["timestamp"])).not.toContain("2024-10-10T01:26:59.000Z")
    const hrv = samplesOf(records, "hrv")
    expect(hrv).toHaveLength(93)
    expect([hrv[0]?.["value"], hrv[92]?.["value"], hrv[0]?.["unit"]]).toEqual([12, 32, "ms"])
    expect(samplesOf(records, "respiratory_rate")).toEqual([
      { timestamp: "2024-10-09T23:01:59.000Z", timezone_offset: 7200, type: "ring", unit: "breaths/min", value: 14.5 }
    ])
  })

  it("maps the single-document GET like the list entry", () => {
    expect(valid("sleep", at(docs("sleep.get.200.json"), 0))).toEqual(records)
  })

  it("maps an Oura nap (type sleep) to short_sleep; 255 is no lowest heart rate, and no samples give no batches", () => {
    const nap = valid("sleep", byId(periods, "83b66e04-7baf-4e7b-97d3-898724031ee1"))
    expect(shape(nap)).toEqual([
      ["summary", "sleep", "83b66e04-7baf-4e7b-97d3-898724031ee1"],
      ["timeseries", "respiratory_rate", "83b66e04-7baf-4e7b-97d3-898724031ee1"]
    ])
    expect(summaryOf(nap, "sleep")).toMatchObject({
      type: "short_sleep",
      calendar_date: "2024-10-11",
      bedtime_start: "2024-10-10T20:37:30.000Z",
      duration: 961,
      total: 30,
      hr_lowest: null,
      hr_average: 74.75,
      average_hrv: null
    })
  })

  it("maps late_nap to short_sleep and an unknown future type to unknown", () => {
    expect(summaryOf(valid("sleep", { ...night, type: "late_nap" }), "sleep")).toMatchObject({ type: "short_sleep" })
    expect(summaryOf(valid("sleep", { ...night, type: "siesta" }), "sleep")).toMatchObject({ type: "unknown" })
  })

  it("gives no records for a rest period (a rejected detection) or a deleted one, whatever else they hold", () => {
    const rest = byId(periods, "efbf938c-f0cb-4cfb-8647-37e7aada01ac")
    expect(rest["type"]).toBe("rest")
    expect(valid("sleep", rest)).toEqual([])
    expect(valid("sleep", { ...night, type: "deleted" })).toEqual([])
    expect(valid("sleep", { id: night["id"], type: "deleted" })).toEqual([])
  })

  it("maps every period of the recorded list: 47 sleeps, the rest period none", () => {
    const all = periods.flatMap((p) => valid("sleep", p))
    expect(all.filter((r) => r.resource === "sleep")).toHaveLength(47)
    const types = all.flatMap((r) => (r.kind === "summary" && r.resource === "sleep" ? [r.data.type] : []))
    expect(types.filter((t) => t === "long_sleep")).toHaveLength(22)
    expect(types.filter((t) => t === "short_sleep")).toHaveLength(25)
  })

  it("keeps the same sourceIds with the changed data when Oura revises a period", () => {
    const items = (night["heart_rate"] as { items: Array<number | null> }).items
    const revised = { ...night, total_sleep_duration: 23250, heart_rate: { ...(night["heart_rate"] as object), items: [80, ...items.slice(1)] } }
    const again = valid("sleep", revised)
    expect(shape(again)).toEqual(shape(records))
    expect(summaryOf(again, "sleep")).toMatchObject({ total: 23250 })
    expect(samplesOf(again, "heartrate")[0]?.["value"]).toBe(80)
    expect(again).not.toEqual(records)
  })

  it("derives the day from the local wake-up time when day is absent, and fills readiness-less periods with null", () => {
    const { day: _d, readiness: _r, ...rest } = night
    expect(summaryOf(valid("sleep", rest), "sleep")).toMatchObject({ calendar_date: "2024-10-10", temperature_delta: null })
  })

  it("names the ring when the period does", () => {
    expect(summaryOf(valid("sleep", { ...night, ring_id: "ring-1" }), "sleep")).toMatchObject({ source: { ...ring, device_id: "ring-1" } })
    expect(summaryOf(valid("sleep", { ...night, ring_id: "" }), "sleep")).toMatchObject({ source: ring })
  })

  it("refuses a period that ends before it starts", () => {
    expect(errorOf(normalizers.sleep({ ...night, bedtime_end: "2024-10-10T00:00:00+02:00" }))).toBe("bedtime_end is before bedtime_start")
  })
})

describe("oura daily_readiness", () => {
  const days = docs("daily_readiness.list.200.json")

  it("maps the temperature deviation to one body_temperature_delta sample over the readiness day", () => {
    const records = valid("daily_readiness", at(days, 0))
    expect(shape(records)).toEqual([["timeseries", "body_temperature_delta", "93b2a8ec-ccdb-49bf-84f5-d06a77873f25"]])
    expect(samplesOf(records, "body_temperature_delta")).toEqual([
      {
        timestamp: "2024-11-11T00:00:00.000Z",
        start: "2024-11-11T00:00:00.000Z",
        end: "2024-11-12T00:00:00.000Z",
        timezone_offset: 0,
        type: "ring",
        unit: "°C",
        value: 0.1
      }
    ])
    expect(samplesOf(valid("daily_readiness", at(days, 1)), "body_temperature_delta")[0]?.["value"]).toBe(-0.29)
  })

  it("keeps a zero deviation, gives nothing without one (a worn-less day), and uses UTC midnight without a timestamp", () => {
    expect(samplesOf(valid("daily_readiness", { ...at(days, 0), temperature_deviation: 0 }), "body_temperature_delta")[0]?.["value"]).toBe(0)
    expect(valid("daily_readiness", { ...at(days, 0), score: null, temperature_deviation: null })).toEqual([])
    const { timestamp: _t, ...noTime } = at(days, 0)
    expect(samplesOf(valid("daily_readiness", noTime), "body_temperature_delta")[0]).toMatchObject({
      start: "2024-11-11T00:00:00.000Z",
      timezone_offset: null
    })
  })
})

describe("oura daily_sleep and daily_stress", () => {
  it("checks every recorded document and gives no records: the schema has no place for them", () => {
    for (const doc of docs("daily_sleep.list.200.json")) expect(valid("daily_sleep", doc)).toEqual([])
    for (const doc of docs("daily_stress.list.200.json")) expect(valid("daily_stress", doc)).toEqual([])
  })

  it("still refuses a malformed document", () => {
    expect(errorOf(normalizers.daily_sleep({ ...at(docs("daily_sleep.list.200.json"), 0), score: "high" }))).toContain("score")
    expect(errorOf(normalizers.daily_stress({ ...at(docs("daily_stress.list.200.json"), 0), stress_high: -1 }))).toContain("stress_high")
  })
})

describe("oura daily_spo2", () => {
  it("maps the daily average to one blood_oxygen sample at midnight UTC of the day, without an offset", () => {
    const records = valid("daily_spo2", at(docs("daily_spo2.list.200.json"), 0))
    expect(shape(records)).toEqual([["timeseries", "blood_oxygen", "b1c660f4-551f-4c9f-80a3-16e809d118d8"]])
    expect(samplesOf(records, "blood_oxygen")).toEqual([
      { timestamp: "2024-11-11T00:00:00.000Z", timezone_offset: null, type: "ring", unit: "%", value: 98.072 }
    ])
  })

  it("gives nothing without an average", () => {
    const doc = at(docs("daily_spo2.list.200.json"), 1)
    expect(valid("daily_spo2", { ...doc, spo2_percentage: null })).toEqual([])
    expect(valid("daily_spo2", { ...doc, spo2_percentage: { average: 0 } })).toEqual([])
  })
})

describe("oura vo2_max", () => {
  it("maps the estimate to one vo2_max sample at its timestamp", () => {
    const records = valid("vo2_max", at(docs("vo2_max.list.200.json"), 0))
    expect(shape(records)).toEqual([["timeseries", "vo2_max", "7c4d1981-ad05-4f24-b2c7-9ac826936555"]])
    expect(samplesOf(records, "vo2_max")).toEqual([
      { timestamp: "2023-09-17T14:15:22.000Z", timezone_offset: 0, type: "ring", unit: "mL/kg/min", value: 62 }
    ])
  })
})

describe("oura workout", () => {
  const workouts = docs("workout.list.200.json")

  it("maps every recorded workout to a schema-valid workouts summary keyed by its id", () => {
    const all = workouts.flatMap((w) => valid("workout", w))
    expect(all).toHaveLength(83)
    expect(all.every((r) => r.resource === "workouts")).toBe(true)
  })

  it("maps the activity, span, calories and distance", () => {
    const records = valid("workout", byId(workouts, "47730fac-8ec6-4e69-a0d3-afad889c8ae6"))
    expect(shape(records)).toEqual([["summary", "workouts", "47730fac-8ec6-4e69-a0d3-afad889c8ae6"]])
    expect(Schema.decodeUnknownSync(WorkoutFields)(summaryOf(records, "workouts"))).toEqual({
      title: null,
      calendar_date: "2024-10-25",
      time_start: "2024-10-25T14:04:00.000Z",
      time_end: "2024-10-25T15:05:00.000Z",
      sport: { id: null, name: "Running", slug: "running" },
      average_hr: null,
      max_hr: null,
      distance: 9459.251953125,
      calories: 671.183,
      moving_time: null,
      total_elevation_gain: null,
      elev_high: null,
      elev_low: null,
      average_speed: null,
      max_speed: null,
      average_watts: null,
      max_watts: null,
      weighted_average_watts: null,
      provider_id: "47730fac-8ec6-4e69-a0d3-afad889c8ae6",
      timezone_offset: 7200,
      source: ring
    })
  })

  it("keeps instants right when the end is in UTC and the start in the user's offset", () => {
    // start 2024-10-15T18:45:00+02:00, end 2024-10-15T16:57:00+00:00: twelve minutes.
    const data = summaryOf(valid("workout", byId(workouts, "2e0a8f32-9c7d-46df-a14e-e535581041fa")), "workouts")
    expect(data).toMatchObject({ time_start: "2024-10-15T16:45:00.000Z", time_end: "2024-10-15T16:57:00.000Z", timezone_offset: 7200, distance: 301.8489074707031 })
  })

  it("marks manual entries as app data and detections as automatic, and keeps the label as title", () => {
    const first = at(workouts, 0)
    expect(summaryOf(valid("workout", { ...first, source: "manual", label: "Evening walk" }), "workouts")).toMatchObject({
      title: "Evening walk",
      source: { ...ring, type: "app" }
    })
    expect(summaryOf(valid("workout", { ...first, source: "autodetected" }), "workouts")).toMatchObject({ source: { ...ring, type: "automatic" } })
  })

  it("names sports from snake or camel case", () => {
    expect(sportOf("strengthTraining")).toEqual({ id: null, name: "Strength Training", slug: "strength_training" })
    expect(sportOf("cross_country_skiing").slug).toBe("cross_country_skiing")
  })

  it("refuses a workout that ends before it starts", () => {
    expect(errorOf(normalizers.workout({ ...at(workouts, 0), end_datetime: "2024-10-09T09:00:00+02:00" }))).toBe("end_datetime is before start_datetime")
  })
})

describe("oura session", () => {
  const breathing = at(docs("session.list.200.json"), 0)

  it("gives no records for the recorded session: it has no heart data, and motion has no resource", () => {
    expect(valid("session", breathing)).toEqual([])
  })

  it("maps heart rate and HRV samples of a session, keyed by its id", () => {
    const sample = (items: Array<number | null>) => ({ interval: 5, items, timestamp: "2024-10-09T16:39:07.000+02:00" })
    const records = valid("session", { ...breathing, heart_rate: sample([62, null, 60]), heart_rate_variability: sample([null, 41]) })
    expect(shape(records)).toEqual([
      ["timeseries", "heartrate", "0daf01ce-ce56-4b7e-b573-2954c709741d"],
      ["timeseries", "hrv", "0daf01ce-ce56-4b7e-b573-2954c709741d"]
    ])
    expect(samplesOf(records, "heartrate").map((s) => [s["timestamp"], s["value"]])).toEqual([
      ["2024-10-09T14:39:07.000Z", 62],
      ["2024-10-09T14:39:17.000Z", 60]
    ])
    expect(samplesOf(records, "hrv")).toEqual([{ timestamp: "2024-10-09T14:39:12.000Z", timezone_offset: 7200, type: "ring", unit: "ms", value: 41 }])
  })
})

describe("oura heartrate batches", () => {
  const page = body("heartrate.list.200.json")
  const records = valid("heartrate", page)

  it("splits a batch per UTC day and row source, keyed by both", () => {
    expect(records.map((r) => [r.resource, r.sourceId, r.kind === "timeseries" ? r.data.data.length : 0])).toEqual([
      ["heartrate", "heartrate:2024-12-13:awake", 110],
      ["heartrate", "heartrate:2024-12-13:rest", 42],
      ["heartrate", "heartrate:2024-12-13:workout", 758],
      ["heartrate", "heartrate:2024-12-14:awake", 18],
      ["heartrate", "heartrate:2024-12-14:rest", 77],
      ["heartrate", "heartrate:2024-12-14:workout", 96]
    ])
    // 1,101 rows in all.
    expect(records.reduce((n, r) => n + (r.kind === "timeseries" ? r.data.data.length : 0), 0)).toBe(1101)
  })

  it("keeps each row's instant and bpm; rows in UTC carry no user offset", () => {
    const awake = samplesOf(records, "heartrate", "heartrate:2024-12-13:awake")
    expect(awake[0]).toEqual({ timestamp: "2024-12-13T12:31:21.000Z", timezone_offset: null, type: "ring", unit: "bpm", value: 91 })
    expect(awake[109]).toEqual({ timestamp: "2024-12-13T23:58:46.000Z", timezone_offset: null, type: "ring", unit: "bpm", value: 71 })
    const workout = samplesOf(records, "heartrate", "heartrate:2024-12-14:workout")
    expect([workout[0]?.["timestamp"], workout[0]?.["value"], workout[95]?.["timestamp"], workout[95]?.["value"]]).toEqual([
      "2024-12-14T00:38:28.000Z",
      201,
      "2024-12-14T10:42:09.000Z",
      95
    ])
  })

  it("keys a later fetch of the same days like the first, with the rows it adds", () => {
    const rows = (page as { data: Array<unknown> }).data
    const later = valid("heartrate", { data: [...rows, { timestamp: "2024-12-14T11:00:00+00:00", bpm: 66, source: "awake" }] })
    expect(later.map((r) => r.sourceId)).toEqual(records.map((r) => r.sourceId))
    expect(samplesOf(later, "heartrate", "heartrate:2024-12-14:awake")).toHaveLength(19)
    expect(samplesOf(later, "heartrate", "heartrate:2024-12-14:awake")[18]?.["value"]).toBe(66)
  })

  it("maps the same rows in any order to the same records", () => {
    const rows = (page as { data: Array<unknown> }).data
    expect(valid("heartrate", { data: [...rows].reverse() })).toEqual(records)
  })

  it("accepts rows with timestamp_unix, drops non-positive bpm, and an empty batch gives nothing", () => {
    const rows = [
      { timestamp: "2024-12-13T10:00:00+00:00", timestamp_unix: 1734084000000, bpm: 70, source: "live" },
      { timestamp: "2024-12-13T10:05:00+00:00", bpm: 0, source: "live" }
    ]
    expect(valid("heartrate", { data: rows }).map((r) => [r.sourceId, r.kind === "timeseries" ? r.data.data.length : 0])).toEqual([
      ["heartrate:2024-12-13:live", 1]
    ])
    expect(valid("heartrate", { data: [] })).toEqual([])
  })

  it("refuses a row source that is no plain word, since it is part of the key", () => {
    const message = errorOf(normalizers.heartrate({ data: [{ timestamp: "2024-12-13T10:00:00+00:00", bpm: 70, source: "a:b/secret" }] }))
    expect(message).toContain("data.0.source")
    expect(message).not.toContain("secret")
  })
})

describe("oura fixtures", () => {
  const mapped: Record<string, NormalizerKey> = {
    "daily_activity.get.200.json": "daily_activity",
    "daily_activity.list.200.json": "daily_activity",
    "daily_readiness.list.200.json": "daily_readiness",
    "daily_sleep.list.200.json": "daily_sleep",
    "daily_spo2.list.200.json": "daily_spo2",
    "daily_stress.list.200.json": "daily_stress",
    "heartrate.list.200.json": "heartrate",
    "session.list.200.json": "session",
    "sleep.get.200.json": "sleep",
    "sleep.list.200.json": "sleep",
    "vo2_max.list.200.json": "vo2_max",
    "workout.list.200.json": "workout"
  }

  it("has a normalizer for every fixture file of a normalized type; the others are kept raw", () => {
    const files = readdirSync(fixtureDir)
    const typeOf = (file: string) => file.split(".")[0]!
    expect(files.filter((file) => typeOf(file) in normalizers).sort()).toEqual(Object.keys(mapped).sort())
    // The fake server's fixtures: types kept raw, the profile, and a notification.
    const rest = files.filter((file) => !(typeOf(file) in normalizers)).map(typeOf)
    expect(rest.filter((type) => !(storedOnly as ReadonlyArray<string>).includes(type) && type !== "personal_info" && type !== "webhook-notification")).toEqual([])
  })

  it.each(Object.entries(mapped))("%s: every document normalizes to schema-valid records", (file, key) => {
    // A heartrate page is one batch; every other list holds documents.
    const items = key === "heartrate" ? [body(file)] : docs(file)
    expect(items.length).toBeGreaterThan(0)
    for (const item of items) valid(key, item)
  })
})

describe("oura data types", () => {
  it("keeps stored-only types apart from normalized ones; personal_info has no normalizer", () => {
    for (const type of storedOnly) expect(normalizers).not.toHaveProperty(type)
    expect(normalizers).not.toHaveProperty("personal_info")
    expect(Object.keys(normalizers).sort()).toEqual(
      ["daily_activity", "daily_readiness", "daily_sleep", "daily_spo2", "daily_stress", "heartrate", "session", "sleep", "vo2_max", "workout"]
    )
  })

  it("names the collection path of a data type", () => {
    expect(collectionPath("vo2_max")).toBe("vO2_max")
    expect(collectionPath("daily_activity")).toBe("daily_activity")
    expect(collectionPath("sleep")).toBe("sleep")
  })

  it("says when a document's data is from", () => {
    const activity = at(docs("daily_activity.list.200.json"), 0)
    expect([dayOf(activity), timeOf(activity)]).toEqual(["2024-11-11", "2024-11-11T03:00:00.000Z"])
    const workout = at(docs("workout.list.200.json"), 0)
    expect([dayOf(workout), timeOf(workout)]).toEqual(["2024-10-09", "2024-10-09T07:07:00.000Z"])
    const night = at(docs("sleep.list.200.json"), 0)
    expect(timeOf(night)).toBe("2024-10-09T23:01:59.000Z")
    const spo2 = at(docs("daily_spo2.list.200.json"), 0)
    expect([dayOf(spo2), timeOf(spo2)]).toEqual(["2024-11-11", undefined])
    const page = body("heartrate.list.200.json")
    expect([dayOf(page), timeOf(page)]).toEqual(["2024-12-13", "2024-12-13T12:31:21.000Z"])
    // Without a day, the user's local date of its time.
    expect(dayOf({ start_datetime: "2024-10-09T23:30:00-02:00" })).toBe("2024-10-09")
    for (const raw of [null, 42, "2024-11-11", [], {}, { day: "2024-02-30", timestamp: "soon" }]) {
      expect([dayOf(raw), timeOf(raw)]).toEqual([undefined, undefined])
    }
  })

  it("reads Oura's date-times, refusing impossible ones", () => {
    expect(parseInstant("2024-10-10T01:01:59+02:00")).toEqual({ ms: Date.parse("2024-10-09T23:01:59Z"), offset: 7200 })
    expect(parseInstant("2024-10-10T01:01:59.123456-0530")).toEqual({ ms: Date.parse("2024-10-10T06:31:59.123Z"), offset: -19800 })
    expect(parseInstant("2023-09-17T14:15:22Z")).toEqual({ ms: Date.parse("2023-09-17T14:15:22Z"), offset: 0 })
    for (const bad of ["2024-02-30T00:00:00Z", "2024-10-10T24:00:00Z", "2024-10-10T01:01:59", "0024-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2024-10-10T00:00:00+19:00", "2024-10-10"]) {
      expect(parseInstant(bad)).toBeUndefined()
    }
  })
})

describe("oura bad input", () => {
  const secret = "secret-value-4711"
  const secretNumber = -987654321.25
  /** Values that must never show up in a message, and the wrong-typed values that carry them. */
  const hostile: ReadonlyArray<unknown> = [
    null,
    secret,
    "NaN",
    secretNumber,
    987654321987,
    true,
    {},
    [],
    [secret],
    { items: [secret], interval: secretNumber, timestamp: secret },
    Array.from({ length: 100_001 }, () => 1)
  ]

  /** Every field path of a document: its keys, nested objects' keys, and the first item of arrays. */
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

  /** One document per normalizer, heartrate as a small batch; the sleep with samples and readiness. */
  const samples = { interval: 300, items: [60, null, 58], timestamp: "2024-10-09T16:39:07.000+02:00" }
  const subjects: ReadonlyArray<readonly [NormalizerKey, unknown]> = [
    ["daily_activity", at(docs("daily_activity.list.200.json"), 0)],
    ["sleep", at(docs("sleep.list.200.json"), 0)],
    ["daily_sleep", at(docs("daily_sleep.list.200.json"), 0)],
    ["daily_readiness", at(docs("daily_readiness.list.200.json"), 0)],
    ["heartrate", { data: (body("heartrate.list.200.json") as { data: Array<unknown> }).data.slice(0, 3) }],
    ["workout", at(docs("workout.list.200.json"), 0)],
    ["session", { ...at(docs("session.list.200.json"), 0), heart_rate: samples, heart_rate_variability: samples }],
    ["daily_spo2", at(docs("daily_spo2.list.200.json"), 0)],
    ["daily_stress", at(docs("daily_stress.list.200.json"), 0)],
    ["vo2_max", at(docs("vo2_max.list.200.json"), 0)]
  ]

  it.each(Object.keys(normalizers))("%s rejects non-objects, naming the record", (key) => {
    for (const raw of [null, 42, "text", [], undefined, Number.NaN]) {
      expect(errorOf(normalizers[key as NormalizerKey](raw))).toContain("record")
    }
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

  it("refuses negative durations, naming the field", () => {
    const night = at(docs("sleep.list.200.json"), 0)
    expect(errorOf(normalizers.sleep({ ...night, deep_sleep_duration: -3060 }))).toContain("deep_sleep_duration")
    expect(errorOf(normalizers.daily_activity({ ...at(docs("daily_activity.list.200.json"), 0), high_activity_time: -1 }))).toContain("high_activity_time")
  })

  it("refuses sample objects that do not advance or overflow, naming the field", () => {
    const night = at(docs("sleep.list.200.json"), 0)
    for (const interval of [0, -300, Number.NaN]) {
      expect(errorOf(normalizers.sleep({ ...night, heart_rate: { ...samples, interval } }))).toContain("heart_rate.interval")
    }
    expect(errorOf(normalizers.sleep({ ...night, hrv: { ...samples, items: Array.from({ length: 100_001 }, () => 1) } }))).toContain("hrv.items")
  })

  it("drops samples that would land past the year 9999 instead of failing", () => {
    const night = { ...at(docs("sleep.list.200.json"), 0), bedtime_start: "9999-12-31T23:50:00+00:00", bedtime_end: "9999-12-31T23:59:00+00:00" }
    const records = valid("sleep", { ...night, heart_rate: { interval: 300, items: [60, 61, 62, 63], timestamp: "9999-12-31T23:50:00+00:00" } })
    expect(samplesOf(records, "heartrate").map((s) => s["value"])).toEqual([60, 61])
  })
})
