/**
 * `workout` (one of getworkouts `body.series`) → one `workouts` summary keyed
 * `workout:<id>`. The sport is Withings' category (the OpenAPI's `workout_object.category`
 * table), its code kept as `sport.id`.
 *
 * Distance and calories are the measured ones, else what the user entered (`manual_*`);
 * moving time is the span less the longer of the user's and the device's pause. Not mapped,
 * for want of a field: steps, floors (`elevation` counts floors, not metres), SpO2 average,
 * heart-rate zones, intensity, pool laps and strokes, core body temperature.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { WorkoutFields } from "@wearflow/core/schema"
import { DeviceId, EpochSeconds, Finite, LocalDate, WithingsId, ZoneName, isoOf, localDateOf, measured, offsetAt, opt, present, sourceOf } from "./shared.ts"

/** The record key of a workout. */
export const workoutSourceId = (id: number | string): string => `workout:${id}`

export const RawWorkout = Schema.Struct({
  id: WithingsId,
  // Required: the sport is mandatory in the normalized workout.
  category: Schema.Int,
  timezone: opt(ZoneName),
  // A model id here (1055 Google Fit), not a name as in other answers.
  model: opt(Schema.Int),
  attrib: opt(Schema.Int),
  startdate: EpochSeconds,
  enddate: EpochSeconds,
  date: opt(LocalDate),
  deviceid: opt(DeviceId),
  data: opt(
    Schema.Struct({
      calories: opt(Finite),
      manual_calories: opt(Finite),
      distance: opt(Finite),
      manual_distance: opt(Finite),
      hr_average: opt(Finite),
      hr_max: opt(Finite),
      pause_duration: opt(Finite),
      algo_pause_duration: opt(Finite)
    })
  )
})
export type RawWorkout = typeof RawWorkout.Type

type Sport = (typeof WorkoutFields.Type)["sport"]

/** Withings' workout categories. */
export const categories: Readonly<Record<number, string>> = {
  1: "Walk", 2: "Run", 3: "Hiking", 4: "Skating", 5: "BMX", 6: "Bicycling", 7: "Swimming", 8: "Surfing",
  9: "Kitesurfing", 10: "Windsurfing", 11: "Bodyboard", 12: "Tennis", 13: "Table tennis", 14: "Squash",
  15: "Badminton", 16: "Lift weights", 17: "Fitness", 18: "Elliptical", 19: "Pilates", 20: "Basket-ball",
  21: "Soccer", 22: "Football", 23: "Rugby", 24: "Volley-ball", 25: "Waterpolo", 26: "Horse riding", 27: "Golf",
  28: "Yoga", 29: "Dancing", 30: "Boxing", 31: "Fencing", 32: "Wrestling", 33: "Martial arts", 34: "Skiing",
  35: "Snowboarding", 36: "Other", 128: "No activity", 187: "Rowing", 188: "Zumba", 191: "Baseball",
  192: "Handball", 193: "Hockey", 194: "Ice hockey", 195: "Climbing", 196: "Ice skating", 272: "Multi-sport",
  306: "Indoor walk", 307: "Indoor running", 308: "Indoor cycling", 455: "Standup Paddleboarding", 456: "Padel",
  457: "Gaming", 490: "Beach volleyball", 491: "Stair Stepper", 492: "Skateboarding", 493: "Parkour",
  494: "Kayaking", 495: "Canoeing", 496: "Sailing", 497: "Fishing", 498: "Trail Running", 499: "Snowshoeing",
  500: "Paintball", 501: "Archery", 502: "Scuba Diving", 503: "Baseball Training", 504: "Biathlon", 505: "Bocce",
  506: "Pétanque", 507: "Paragliding", 508: "Frisbee", 509: "Skydiving", 510: "Pickleball", 511: "Cornhole",
  512: "Dodgeball", 513: "Ultimate", 514: "Teqball", 515: "Pushing a Wheelchair (Running Pace)",
  516: "Pushing a Wheelchair (Walking Pace)", 517: "Athletics", 518: "Track Cycling", 519: "Pentathlon",
  520: "Sport Shooting", 521: "Triathlon", 522: "Diving", 523: "Mountain Biking", 524: "Gravel Biking",
  525: "E-Biking", 526: "E-Mountain Biking", 527: "Handcycling", 528: "Velomobile", 529: "Backcountry Skiing",
  530: "Nordic Skiing", 531: "Roller Skiing", 532: "Racquetball", 534: "Hip Hop", 535: "Muaythai",
  536: "Taekwondo", 537: "Judo", 538: "Trampoline", 539: "Standing Frame", 540: "Seated Strength",
  541: "Seated Cardio", 542: "Walk With Walker", 543: "Walk With Cane", 544: "Breaking", 545: "Chores",
  546: "Crossfit", 547: "Spinclass", 548: "Cricket", 549: "Flamenco Dancing", 550: "HIIT", 551: "Meditation",
  552: "Stretching", 553: "Yard Work Gardening", 554: "Cleaning", 555: "Public Speaking", 556: "Spikeball",
  557: "Lacrosse", 558: "Baby Wearing", 559: "Dog Walking", 560: "Breathing Exercises", 561: "Balance Drills",
  562: "Pushing a Stroller", 563: "Toddler Wearing", 564: "Bowling", 565: "Lasertag", 566: "Nordic Walking",
  567: "Sumo Wrestling", 568: "Cooking"
}

/** `Basket-ball` → slug `basket_ball`, `Pétanque` → `petanque`; a category Withings adds later keeps its code. */
export const sportOf = (category: number): Sport => {
  const name = categories[category] ?? `Category ${category}`
  const slug = name
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0)
    .join("_")
  return { id: category, name, slug }
}

/** Manual entries (attrib 2) were typed into the app, whatever model the workout names. */
const MANUAL = 2

const endsBeforeStart = new ItemError({ message: "enddate is before startdate" })

const toRecords = (raw: RawWorkout): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  if (raw.enddate < raw.startdate) return Either.left(endsBeforeStart)
  const d = raw.data ?? {}
  const offset = offsetAt(raw.timezone, raw.startdate)
  const span = raw.enddate - raw.startdate
  const pauses = [present(d.pause_duration), present(d.algo_pause_duration)].filter((p): p is number => p !== null)
  const data: typeof WorkoutFields.Type = {
    title: null,
    calendar_date: raw.date ?? localDateOf(raw.startdate, offset),
    time_start: isoOf(raw.startdate),
    time_end: isoOf(raw.enddate),
    sport: sportOf(raw.category),
    average_hr: measured(d.hr_average),
    max_hr: measured(d.hr_max),
    distance: present(d.distance) ?? measured(d.manual_distance),
    calories: present(d.calories) ?? measured(d.manual_calories),
    moving_time: pauses.length === 0 ? null : Math.max(0, span - Math.max(...pauses)),
    total_elevation_gain: null,
    elev_high: null,
    elev_low: null,
    average_speed: null,
    max_speed: null,
    average_watts: null,
    max_watts: null,
    weighted_average_watts: null,
    provider_id: String(raw.id),
    timezone_offset: offset,
    source: sourceOf(raw.model, raw.deviceid, raw.attrib === MANUAL ? "app" : undefined)
  }
  return Either.right([{ kind: "summary", resource: "workouts", sourceId: workoutSourceId(raw.id), data }])
}

const decode = decodeRecord(RawWorkout)

export const normalizeWorkout: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
