/** The framework's promises, checked against the Withings plugin by the conformance kit. */
import { providerConformance } from "@wearflow/core/testing"
import * as fs from "node:fs"
import { plugin } from "./mod.ts"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"

const fixtures = new URL("./testing/fixtures/", import.meta.url)
const bodyOf = (name: string): Record<string, unknown> => (JSON.parse(fs.readFileSync(new URL(name, fixtures), "utf8")) as { body: Record<string, unknown> }).body
const list = (name: string, key: string) => bodyOf(name)[key] as Array<Record<string, unknown>>

const getmeas = bodyOf("measure-getmeas.200.json")
const day = Date.parse("2024-03-30T00:00:00Z") / 1000
const tracker = { deviceid: "892359876fd8805ac45bab078c4828692f0276b1", model: "ScanWatch", model_id: 93 }

/** Real-shaped items per normalizer, as the plugin's pages hold them (intraday follows the OpenAPI: no capture exists). */
const samples: Record<string, ReadonlyArray<Record<string, unknown>>> = {
  measuregrp: (getmeas["measuregrps"] as Array<Record<string, unknown>>).slice(0, 3).map((group) => ({ ...group, timezone: getmeas["timezone"] })),
  activity: list("measure-v2-getactivity.200.json", "activities").slice(0, 3),
  workout: list("measure-v2-getworkouts.200.json", "series").slice(0, 3),
  sleep_summary: list("sleep-v2-getsummary.page1.200.json", "series").slice(0, 3),
  sleep_series: [{ startdate: 1618617600, enddate: 1618704000, timezone: "Europe/Paris", series: list("sleep-v2-get.200.json", "series") }],
  intraday: [{
    startdate: day,
    enddate: day + 86_400,
    timezone: "Europe/Paris",
    series: {
      [String(day + 3600)]: { ...tracker, steps: 42, calories: 2.5, distance: 31.5, duration: 60, heart_rate: 88, spo2_auto: 97 },
      [String(day + 7200)]: { ...tracker, steps: 120, calories: 6, distance: 90, duration: 60, heart_rate: 95 }
    }
  }]
}

/** The page a poll or a backfill stores for items of `key`. */
const recordsBody = (key: string, records: ReadonlyArray<unknown>, userid: string) => {
  const items = records as ReadonlyArray<Record<string, unknown>>
  switch (key) {
    case "measuregrp":
      return { kind: "getmeas", body: JSON.stringify({ userid, timezone: items[0]?.["timezone"], measuregrps: items }) }
    case "activity":
      return { kind: "getactivity", body: JSON.stringify({ userid, activities: items }) }
    case "workout":
      return { kind: "getworkouts", body: JSON.stringify({ userid, series: items }) }
    case "sleep_summary":
      return { kind: "getsummary", body: JSON.stringify({ userid, series: items }) }
    case "intraday":
      return { kind: "intraday", body: JSON.stringify({ userid, ...items[0] }) }
    case "sleep_series":
      return { kind: "sleep", body: JSON.stringify({ userid, ...items[0] }) }
  }
  throw new Error(`no page for ${key}`)
}

/** Every measured number moves by one (times, ids, units, types and codes stay): a revision of the same document. */
const bump = (value: unknown, key = ""): unknown => {
  if (typeof value === "number") return /date|time|id$|^id|unit|type|model|category|attrib|algo|fm|brand|is_tracker|state|modified|created|^\d+$/i.test(key) ? value : value + 1
  if (Array.isArray(value)) return value.map((item) => bump(item, key))
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bump(v, k)]))
  return value
}

interface WithingsConformanceFake {
  readonly env: Readonly<Record<string, string>>
  readonly withings: FakeWithings
  readonly connect: (providerUserId: string) => Promise<{ readonly accessToken: string; readonly refreshToken?: string | undefined }>
  readonly close: () => Promise<void>
}

/** Whole days from the recorded examples' latest measure (January 2024) to yesterday. */
const SHIFT_DAYS = Math.floor((Date.now() - Date.parse("2024-01-27T00:00:00Z")) / 86_400_000)

providerConformance<WithingsConformanceFake>({
  plugin,
  folder: new URL(".", import.meta.url),
  fake: async () => {
    const withings = await startFakeWithings()
    // Pages of a realistic size (Withings serves hundreds; the fake's default of 3 is for paging tests).
    withings.state.pageSize = 200
    return {
      withings,
      env: {
        WITHINGS_API_URL: withings.url,
        WITHINGS_AUTH_URL: `${withings.url}/oauth2_user/authorize2`,
        WITHINGS_CLIENT_ID: withings.clientId,
        WITHINGS_CLIENT_SECRET: withings.clientSecret
      },
      connect: async (userId) => {
        // Synced just now; the 300 recorded nights are left out (a night is a day window each: minutes of polling).
        withings.seed(userId, ["measuregrps", "activities", "workouts", "devices"], { shiftDays: SHIFT_DAYS, touched: true })
        const tokens = withings.connect(userId)
        return { accessToken: tokens.access_token, refreshToken: tokens.refresh_token }
      },
      close: () => withings.close()
    }
  },
  samples,
  recordsBody,
  revise: (_, record) => bump(record)
})
