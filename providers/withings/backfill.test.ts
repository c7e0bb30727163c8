/** Withings history against the fake Withings over loopback: each type's range fetched, committed, and placed in the range. */
import type { TimeRange } from "@wearflow/core/provider"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeBackfill } from "./backfill.ts"
import { pageItemsOf } from "./items.ts"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"
import { DAY_S, callTo, connectionOf, documentsOf, recorder, recordsOf, seedIntraday, seedRecent } from "./testing/sync-harness.ts"

let fake: FakeWithings
beforeAll(async () => {
  fake = await startFakeWithings()
})
afterAll(() => fake.close())

let nextUser = 7_200_000
const newUser = () => String(nextUser++)

const backfillOf = async () => {
  const { call, config } = await callTo(fake)
  return makeBackfill(call, config)
}

/** The last `days` days up to now, ending mid-day as core's windows do (they end when the connection was made). */
const lastDays = (days: number): TimeRange => {
  const end = Date.now()
  return { start: new Date(end - days * DAY_S * 1000), end: new Date(end) }
}

describe("Withings history", () => {
  it("names one type per resource, each with the item keys its pages bring", async () => {
    const backfill = await backfillOf()
    expect(backfill.types.map((t) => [t.type, t.resource, t.keys])).toEqual([
      ["body", "body", ["measuregrp"]],
      ["blood_pressure", "blood_pressure", ["measuregrp"]],
      ["blood_oxygen", "blood_oxygen", ["measuregrp"]],
      ["vo2_max", "vo2_max", ["measuregrp"]],
      ["body_temperature", "body_temperature", ["measuregrp"]],
      ["activity", "activity", ["activity"]],
      ["workouts", "workouts", ["workout"]],
      ["sleep", "sleep", ["sleep_summary", "sleep_series"]],
      ["steps", "steps", ["intraday"]]
    ])
    expect(backfill.types.find((t) => t.type === "steps")!.maxDays).toBe(1)
  })

  it("fetches each type over a range: Fetched with its pages, every item's time inside the range", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    seedIntraday(fake, userId, [1, 2, 3])
    const backfill = await backfillOf()
    const credentials = connectionOf(fake, userId)
    const range = lastDays(30)
    const byType = new Map<string, ReturnType<typeof recorder>>()
    for (const type of backfill.types.map((t) => t.type)) {
      const pages = recorder(userId)
      const answer = await Effect.runPromise(backfill.request(credentials, type, type === "steps" ? lastDays(2) : range, pages))
      expect(answer).toEqual({ _tag: "Fetched", pages: pages.commits.length })
      expect(pages.commits.map((c) => c.page)).toEqual(pages.commits.map((_, i) => i))
      byType.set(type, pages)
    }
    const user = fake.state.users.get(userId)!
    const commitsOf = (type: string) => byType.get(type)!.commits

    // Body composition: only the body measure types, every group of the range.
    const body = documentsOf(commitsOf("body"), "getmeas")
    expect(body.length).toBeGreaterThan(0)
    for (const group of body) {
      for (const m of group["measures"] as Array<Record<string, unknown>>) expect([1, 4, 5, 6, 8, 76, 77, 88, 170]).toContain(m["type"])
    }
    const inRange = (at: number) => at * 1000 >= range.start.getTime() && at * 1000 < range.end.getTime()
    const hasBodyMeasure = (g: Record<string, unknown>) => (g["measures"] as Array<Record<string, unknown>>).some((m) => [1, 4, 5, 6, 8, 76, 77, 88, 170].includes(Number(m["type"])))
    const expected = user.measuregrps.filter((g) => inRange(Number(g["date"])) && hasBodyMeasure(g))
    expect(expected.length).toBeGreaterThan(3)
    expect(new Set(body.map((g) => g["grpid"]))).toEqual(new Set(expected.map((g) => g["grpid"])))
    expect(recordsOf(commitsOf("body")).some((r) => r.resource === "body")).toBe(true)

    expect(documentsOf(commitsOf("activity"), "getactivity").length).toBeGreaterThan(0)
    expect(documentsOf(commitsOf("workouts"), "getworkouts").length).toBeGreaterThan(0)
    expect(new Set(documentsOf(commitsOf("sleep"), "getsummary").map((n) => n["id"]))).toEqual(new Set(user.sleepSummaries.map((n) => n["id"])))
    expect(commitsOf("sleep").some((c) => c.kind === "sleep")).toBe(true)
    expect(commitsOf("steps").map((c) => c.kind)).toEqual(["intraday"])
    expect(recordsOf(commitsOf("steps")).some((r) => r.resource === "steps")).toBe(true)

    // Every item answers its type's range (sleep series windows may begin the UTC day before a night's day).
    for (const [type, pages] of byType) {
      const window = type === "steps" ? lastDays(2) : range
      for (const commit of pages.commits) {
        for (const item of pageItemsOf(commit.kind, JSON.parse(commit.body))) {
          const time = backfill.itemTime(item)
          expect(time, `${type} ${item.key}`).toBeInstanceOf(Date)
          if (item.key === "sleep_series") continue
          expect(time!.getTime(), `${type} ${item.key}`).toBeGreaterThanOrEqual(window.start.getTime())
          expect(time!.getTime(), `${type} ${item.key}`).toBeLessThan(window.end.getTime())
        }
      }
    }
  })

  it("answers Forbidden, Rejected, RateLimited and Unavailable as Withings' statuses say", async () => {
    const userId = newUser()
    seedRecent(fake, userId)
    const backfill = await backfillOf()
    const range = lastDays(30)
    const ask = (type: string, credentials = connectionOf(fake, userId)) => Effect.runPromise(backfill.request(credentials, type, range, recorder(userId)))

    expect((await ask("nothing"))._tag).toBe("Rejected")
    expect(await ask("activity", connectionOf(fake, userId, ["user.metrics"]))).toMatchObject({ _tag: "Rejected", message: "the user did not grant user.activity" })
    expect(await ask("activity", connectionOf(fake, userId, undefined, ["user.metrics"]))).toMatchObject({ _tag: "Rejected", status: 214 })
    fake.inject({ path: "/v2/measure", action: "getworkouts", withingsStatus: 522 })
    expect(await ask("workouts")).toEqual({ _tag: "Unavailable", message: "Withings answered status 522 to getworkouts" })
    fake.state.rateLimit.perWindow = 0
    try {
      expect((await ask("body"))._tag).toBe("RateLimited")
    } finally {
      fake.state.rateLimit.perWindow = undefined
    }
    const failing = recorder(userId, 0)
    expect(await Effect.runPromise(backfill.request(connectionOf(fake, userId), "body", range, failing))).toEqual({ _tag: "Unavailable", message: "a page of the history could not be stored" })
    const credentials = connectionOf(fake, userId)
    for (const grant of fake.state.grants.values()) if (grant.userId === userId) grant.revoked = true
    expect(await ask("sleep", credentials)).toMatchObject({ _tag: "Forbidden", status: 401 })
  })
})
