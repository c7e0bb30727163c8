/**
 * A Garmin PUSH body whose health values are distinctive enough never to appear in a log by
 * chance: steps, heart-rate samples, sleep stages, blood oxygen, respiration, weight and body
 * fat. Tests post it, check the values were accepted (stored or delivered), then look for
 * every one of them in the logs.
 */
import { readFileSync } from "node:fs"

const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8"))

/** The values the probe carries, as posted. */
export const probeValues = {
  steps: 7_351_946,
  heartRate: [2_718_281, 2_718_282],
  deepSleep: 3_141_592,
  lightSleep: 3_141_593,
  remSleep: 3_141_594,
  bloodOxygen: 9_876_543,
  respiration: 16_180_339,
  weightInGrams: 86_420_135,
  bodyFat: 47.5319
} as const

/**
 * Every form a probe value could take in a log: as posted and as normalized (weight in kg).
 */
export const probeNeedles: ReadonlyArray<string> = [
  probeValues.steps,
  ...probeValues.heartRate,
  probeValues.deepSleep,
  probeValues.lightSleep,
  probeValues.remSleep,
  probeValues.bloodOxygen,
  probeValues.respiration,
  probeValues.weightInGrams,
  probeValues.weightInGrams / 1000,
  probeValues.bodyFat
].map(String)

/** The probe body for `garminUserId`; `tag` keeps its summary ids apart from other probes'. */
export const healthProbe = (garminUserId: string, tag: string) => {
  const daily = fixture("dailies").dailies[0]
  const sleep = fixture("sleeps").sleeps[0]
  const body = fixture("bodyComps").bodyComps[0]
  return JSON.stringify({
    dailies: [{
      ...daily,
      userId: garminUserId,
      summaryId: `probe-daily-${tag}`,
      steps: probeValues.steps,
      timeOffsetHeartRateSamples: { "15": probeValues.heartRate[0], "30": probeValues.heartRate[1] }
    }],
    sleeps: [{
      ...sleep,
      userId: garminUserId,
      summaryId: `probe-sleep-${tag}`,
      deepSleepDurationInSeconds: probeValues.deepSleep,
      lightSleepDurationInSeconds: probeValues.lightSleep,
      remSleepInSeconds: probeValues.remSleep,
      timeOffsetSleepSpo2: { "0": probeValues.bloodOxygen },
      timeOffsetSleepRespiration: { "60": probeValues.respiration }
    }],
    bodyComps: [{
      ...body,
      userId: garminUserId,
      summaryId: `probe-body-${tag}`,
      weightInGrams: probeValues.weightInGrams,
      bodyFatInPercent: probeValues.bodyFat
    }]
  })
}

/** The probe values `text` contains (none, when nothing leaked). */
export const leakedProbeValues = (text: string) => probeNeedles.filter((needle) => text.includes(needle))
