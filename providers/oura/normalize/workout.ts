/**
 * `workout` → one `workouts` summary. Oura's workouts carry no heart rate (it is in the
 * `heartrate` collection, rows of source `workout`), no speed, elevation or power: those
 * fields are null. `intensity` has no place in the normalized schema.
 */
import { Either, Schema } from "effect"
import { decodeRecord, ItemError, type NormalizedRecord, type Normalizer } from "@wearflow/core/normalizer"
import type { Source, WorkoutFields } from "@wearflow/core/schema"
import { DocumentId, Finite, LocalDate, LocalizedDateTime, instantOf, isoOf, localDateOf, opt } from "./shared.ts"

export const RawWorkout = Schema.Struct({
  id: DocumentId,
  // Required: the sport is mandatory in the normalized workout.
  activity: Schema.String.pipe(Schema.pattern(/[A-Za-z0-9]/)),
  day: opt(LocalDate),
  start_datetime: LocalizedDateTime,
  end_datetime: LocalizedDateTime,
  calories: opt(Finite),
  distance: opt(Finite),
  intensity: opt(Schema.String),
  label: opt(Schema.String),
  source: opt(Schema.String)
})
export type RawWorkout = typeof RawWorkout.Type

type Sport = (typeof WorkoutFields.Type)["sport"]

/** `strengthTraining` or `strength_training` → name "Strength Training", slug "strength_training". */
export const sportOf = (activity: string): Sport => {
  const words = activity
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w.length > 0)
    .map((w) => w.toLowerCase())
  return { id: null, name: words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(" "), slug: words.join("_") }
}

/**
 * Entered by hand in the app, detected by the ring (Garmin's Move IQ detections are
 * `automatic` too), or recorded with the ring (confirmed detections, workout heart rate).
 */
const sourceOf = (source: string | null | undefined): Source => ({
  provider: "oura",
  type: source === "manual" ? "app" : source === "autodetected" ? "automatic" : "ring",
  device_id: null,
  app_id: null
})

const endsBeforeStart = new ItemError({ message: "end_datetime is before start_datetime" })

const toRecords = (raw: RawWorkout): Either.Either<ReadonlyArray<NormalizedRecord>, ItemError> => {
  const start = instantOf(raw.start_datetime)
  const end = instantOf(raw.end_datetime)
  if (end.ms < start.ms) return Either.left(endsBeforeStart)
  const data: typeof WorkoutFields.Type = {
    title: raw.label ?? null,
    calendar_date: raw.day ?? localDateOf(start),
    time_start: isoOf(start.ms),
    time_end: isoOf(end.ms),
    sport: sportOf(raw.activity),
    average_hr: null,
    max_hr: null,
    distance: raw.distance ?? null,
    calories: raw.calories ?? null,
    moving_time: null,
    total_elevation_gain: null,
    elev_high: null,
    elev_low: null,
    average_speed: null,
    max_speed: null,
    average_watts: null,
    max_watts: null,
    weighted_average_watts: null,
    provider_id: raw.id,
    // Oura sometimes gives the end in UTC and the start in the user's offset: the start's counts.
    timezone_offset: start.offset,
    source: sourceOf(raw.source)
  }
  return Either.right([{ kind: "summary", resource: "workouts", sourceId: raw.id, data }])
}

const decode = decodeRecord(RawWorkout)

export const normalizeWorkout: Normalizer = (raw) => Either.flatMap(decode(raw), toRecords)
