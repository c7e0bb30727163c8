/**
 * Garmin normalizers, one per notification key. Each is pure and total: a raw record
 * becomes normalized records or a value-free `ItemError`, never an exception.
 */
import type { Normalizer } from "@wearflow/core/normalizer"
import { normalizeActivity } from "./normalize/activities.ts"
import { normalizeDaily } from "./normalize/dailies.ts"
import { normalizeSleep } from "./normalize/sleeps.ts"

export { sportOf } from "./normalize/activities.ts"

export const normalizers: {
  readonly dailies: Normalizer
  readonly sleeps: Normalizer
  readonly activities: Normalizer
} = {
  dailies: normalizeDaily,
  sleeps: normalizeSleep,
  activities: normalizeActivity
}
