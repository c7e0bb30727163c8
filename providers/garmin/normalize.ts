/**
 * Garmin normalizers, one per data key. Each is pure and total: a raw record becomes
 * normalized records or a value-free `ItemError`, never an exception. `activityFiles`,
 * `deregistrations` and `userPermissionsChange` carry no data and have no normalizer.
 */
import type { Normalizer } from "@wearflow/core/normalizer"
import { normalizeActivity } from "./normalize/activities.ts"
import { normalizeActivityDetail } from "./normalize/activityDetails.ts"
import { normalizeRespiration } from "./normalize/allDayRespiration.ts"
import { normalizeBloodPressure } from "./normalize/bloodPressures.ts"
import { normalizeBodyComp } from "./normalize/bodyComps.ts"
import { normalizeDaily } from "./normalize/dailies.ts"
import { normalizeEpoch } from "./normalize/epochs.ts"
import { normalizeHealthSnapshot } from "./normalize/healthSnapshot.ts"
import { normalizeHrv } from "./normalize/hrv.ts"
import { normalizeCycle } from "./normalize/mct.ts"
import { normalizeMoveIQ } from "./normalize/moveIQActivities.ts"
import { normalizePulseOx } from "./normalize/pulseox.ts"
import { normalizeSkinTemp } from "./normalize/skinTemp.ts"
import { normalizeSleep } from "./normalize/sleeps.ts"
import { normalizeStressDetail } from "./normalize/stressDetails.ts"
import { normalizeUserMetrics } from "./normalize/userMetrics.ts"

export { sportOf } from "./normalize/activities.ts"

/** The Garmin data keys that produce normalized records. */
export type GarminDataKey =
  | "dailies"
  | "epochs"
  | "sleeps"
  | "bodyComps"
  | "stressDetails"
  | "userMetrics"
  | "pulseox"
  | "allDayRespiration"
  | "healthSnapshot"
  | "hrv"
  | "bloodPressures"
  | "skinTemp"
  | "activities"
  | "activityDetails"
  | "manuallyUpdatedActivities"
  | "moveIQActivities"
  | "mct"

export const normalizers: { readonly [K in GarminDataKey]: Normalizer } = {
  dailies: normalizeDaily,
  epochs: normalizeEpoch,
  sleeps: normalizeSleep,
  bodyComps: normalizeBodyComp,
  stressDetails: normalizeStressDetail,
  userMetrics: normalizeUserMetrics,
  pulseox: normalizePulseOx,
  allDayRespiration: normalizeRespiration,
  healthSnapshot: normalizeHealthSnapshot,
  hrv: normalizeHrv,
  bloodPressures: normalizeBloodPressure,
  skinTemp: normalizeSkinTemp,
  activities: normalizeActivity,
  activityDetails: normalizeActivityDetail,
  // A manual edit re-sends the whole activity under the same summaryId: same mapping.
  manuallyUpdatedActivities: normalizeActivity,
  moveIQActivities: normalizeMoveIQ,
  mct: normalizeCycle
}
