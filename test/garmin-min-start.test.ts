/**
 * Reading Garmin's "asked too far back" 400, whose real wording is unverified: the ways it
 * may be put, the instant it names (or none), and the other 400s it must not be taken for.
 * The server-level tests in backfill.test.ts run some of these wordings through the fake.
 */
import { describe, expect, it } from "vitest"
import { earliestStartIn, isTooFarBack } from "../providers/garmin/backfill.ts"

const range = { start: new Date("2026-06-01T00:00:00Z"), end: new Date("2026-07-01T00:00:00Z") }
const startS = range.start.getTime() / 1000
const endS = range.end.getTime() / 1000
const LIMIT = new Date("2026-06-15T00:00:00Z")
const limitS = LIMIT.getTime() / 1000

describe("a start before what Garmin allows", () => {
  const wordings: ReadonlyArray<[string, Date | undefined]> = [
    ["summaryStartTimeInSeconds is before the min start time of 2026-06-15T00:00:00Z", LIMIT],
    ["Start time is before the minimum start time: 2026-06-15", LIMIT],
    [`summaryStartTimeInSeconds ${startS} is earlier than the earliest allowed time ${limitS}`, LIMIT],
    [`Invalid summaryStartTimeInSeconds: must be >= ${limitS}`, LIMIT],
    [`start ${startS * 1000} precedes min_start ${limitS * 1000}`, LIMIT],
    ["Backfill start must not be before 2026-06-15 00:00:00 UTC", LIMIT],
    ["Requested start is before 2026-06-15T02:00:00+02:00", LIMIT],
    ["Requested data is too far in the past", undefined],
    ["The start time exceeds the retention period", undefined],
    ["MIN_START_TIME violated", undefined],
    ["Start date is older than the earliest allowed backfill date", undefined]
  ]
  for (const [message, earliest] of wordings) {
    it(`${JSON.stringify(message)} → ${earliest?.toISOString() ?? "no instant (the caller's fallback)"}`, () => {
      expect(isTooFarBack(message, range)).toBe(true)
      expect(earliestStartIn(message, range)).toEqual(earliest)
    })
  }

  it("a limit after the whole window is still the limit (the window is then skipped)", () => {
    const message = "summaryStartTimeInSeconds is before the min start time of 2026-08-01T00:00:00Z"
    expect(isTooFarBack(message, range)).toBe(true)
    expect(earliestStartIn(message, range)).toEqual(new Date("2026-08-01T00:00:00Z"))
  })
})

describe("other 400s are not taken for it", () => {
  for (const message of [
    "summaryStartTimeInSeconds and summaryEndTimeInSeconds are required",
    "time range exceeds 90 days",
    `summaryStartTimeInSeconds ${endS} must be before summaryEndTimeInSeconds ${startS}`,
    `Invalid summaryStartTimeInSeconds: ${startS}`,
    "Endpoint not enabled for summary type: MCT",
    "The minimum time range is one second",
    "Start time must be before 2026-05-01" // names an instant before the requested start: not a limit it broke
  ]) {
    it(JSON.stringify(message), () => expect(isTooFarBack(message, range)).toBe(false))
  }
})
