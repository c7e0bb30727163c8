import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { hostileVariants } from "@wearflow/core/testing"
import { PAGE_KINDS, pageItemsOf, pageOf } from "./items.ts"
import { normalizers } from "./normalize.ts"

type Doc = Record<string, unknown>
const fixture = (name: string): Doc => (JSON.parse(readFileSync(new URL(`./testing/fixtures/${name}`, import.meta.url), "utf8")) as { body: Doc }).body

const user = { _tag: "UserId", id: "12345" }

describe("pageItemsOf", () => {
  it("splits a getmeas page into measure groups, each with the answer's timezone, in body order", () => {
    const getmeas = fixture("measure-getmeas.200.json")
    const items = pageItemsOf("getmeas", { userid: "12345", timezone: getmeas["timezone"], measuregrps: getmeas["measuregrps"] })
    const groups = getmeas["measuregrps"] as Array<Doc>
    expect(items.map((i) => [i.key, i.index, i.carries, i.user])).toEqual(groups.map((_, index) => ["measuregrp", index, "record", user]))
    expect(items.map((i) => (i.raw as Doc)["grpid"])).toEqual(groups.map((g) => g["grpid"]))
    expect(items.every((i) => (i.raw as Doc)["timezone"] === "Europe/Amsterdam")).toBe(true)
    for (const item of items) expect(normalizers.measuregrp(item.raw)._tag).toBe("Right")
  })

  it("splits list pages into activity days, workouts and nights the normalizers read", () => {
    const cases = [
      ["getactivity", "activities", "activity", fixture("measure-v2-getactivity.200.json")["activities"]],
      ["getworkouts", "series", "workout", fixture("measure-v2-getworkouts.200.json")["series"]],
      ["getsummary", "series", "sleep_summary", (fixture("sleep-v2-getsummary.page1.200.json")["series"] as Array<Doc>).slice(0, 5)]
    ] as const
    for (const [kind, list, key, documents] of cases) {
      const items = pageItemsOf(kind, { userid: 12345, [list]: documents })
      expect(items).toHaveLength((documents as Array<unknown>).length)
      expect(items.every((i) => i.key === key && i.carries === "record" && i.user?._tag === "UserId" && i.user.id === "12345")).toBe(true)
      expect(items.map((i) => i.raw)).toEqual(documents)
      for (const item of items) expect(normalizers[key](item.raw)._tag).toBe("Right")
    }
  })

  it("makes one item of a day window, and device items of getdevice", () => {
    const sleep = fixture("sleep-v2-get.200.json")
    const window = { userid: "12345", startdate: 1618617600, enddate: 1618704000, timezone: "Europe/Paris", series: sleep["series"] }
    const [item, ...rest] = pageItemsOf("sleep", window)
    expect(rest).toEqual([])
    expect(item).toMatchObject({ key: "sleep_series", index: 0, carries: "record", user, raw: { startdate: 1618617600, enddate: 1618704000, timezone: "Europe/Paris" } })
    expect(normalizers.sleep_series(item!.raw)._tag).toBe("Right")
    const intraday = pageItemsOf("intraday", { ...window, series: { "1618620000": { steps: 10, duration: 60 } } })
    expect(intraday.map((i) => i.key)).toEqual(["intraday"])
    expect(normalizers.intraday(intraday[0]!.raw)._tag).toBe("Right")
    const devices = fixture("user-v2-getdevice.200.json")["devices"] as Array<Doc>
    expect(pageItemsOf("getdevice", { userid: "12345", devices }).map((i) => i.key)).toEqual(devices.map(() => "device"))
  })

  it("leaves malformed entries out and never throws on hostile bodies", () => {
    expect(pageItemsOf("getworkouts", { userid: "1", series: [null, 3, "x", [], { id: 1 }] }).map((i) => [i.index, i.raw])).toEqual([[0, { id: 1 }]])
    // No user to route by: nothing.
    expect(pageItemsOf("getworkouts", { series: [{ id: 1 }] })).toEqual([])
    expect(pageItemsOf("getworkouts", { userid: "", series: [{ id: 1 }] })).toEqual([])
    expect(pageItemsOf("getworkouts", { userid: "a\nb", series: [{ id: 1 }] })).toEqual([])
    expect(pageItemsOf("getworkouts", { userid: 1.5, series: [{ id: 1 }] })).toEqual([])
    expect(pageItemsOf("sleep", { userid: "1", startdate: "0", enddate: 1, series: [] })).toEqual([])
    expect(pageItemsOf("unknown", { userid: "1", series: [{ id: 1 }] })).toEqual([])
    expect(pageItemsOf("toString", { userid: "1" })).toEqual([])
    expect(pageItemsOf("__proto__", { userid: "1" })).toEqual([])
    const getmeas = fixture("measure-getmeas.200.json")
    const pages = [
      { userid: "1", timezone: getmeas["timezone"], measuregrps: getmeas["measuregrps"] },
      { userid: "1", startdate: 1618617600, enddate: 1618704000, timezone: "Europe/Paris", series: (fixture("sleep-v2-get.200.json")["series"] as Array<Doc>).slice(0, 3) }
    ]
    const hostile = [...pages.flatMap((page) => hostileVariants(page, 500)), undefined, null, 1, "", [], {}, { userid: "1", measuregrps: {} }, { userid: "1", series: "x" }, JSON.parse('{"userid":"1","__proto__":{"series":[{}]}}')]
    for (const kind of [...PAGE_KINDS, "x"]) {
      for (const body of hostile) {
        const items = pageItemsOf(kind, body)
        expect(Array.isArray(items)).toBe(true)
        for (const item of items) expect(() => normalizers[item.key as keyof typeof normalizers]?.(item.raw)).not.toThrow()
      }
    }
  })

  it("pageOf builds the page pageItemsOf reads back, for every item key", () => {
    const getmeas = fixture("measure-getmeas.200.json")
    const groups = (getmeas["measuregrps"] as Array<Doc>).map((g) => ({ ...g, timezone: "Europe/Amsterdam" }))
    const window = { startdate: 1618617600, enddate: 1618704000, timezone: "Europe/Paris", series: (fixture("sleep-v2-get.200.json")["series"] as Array<Doc>).slice(0, 2) }
    const cases: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]> = [
      ["measuregrp", groups],
      ["activity", fixture("measure-v2-getactivity.200.json")["activities"] as Array<Doc>],
      ["workout", fixture("measure-v2-getworkouts.200.json")["series"] as Array<Doc>],
      ["sleep_summary", (fixture("sleep-v2-getsummary.page1.200.json")["series"] as Array<Doc>).slice(0, 2)],
      ["device", fixture("user-v2-getdevice.200.json")["devices"] as Array<Doc>],
      ["sleep_series", [window]],
      ["intraday", [{ ...window, series: { "1618620000": { steps: 3 } } }]]
    ]
    for (const [key, raws] of cases) {
      const page = pageOf(key, "12345", raws)!
      const items = pageItemsOf(page.kind, JSON.parse(page.body))
      expect(items.map((i) => [i.key, i.user])).toEqual(raws.map(() => [key, user]))
      expect(items.map((i) => i.raw)).toEqual(raws)
    }
    expect(pageOf("sleep_series", "1", [window, window])).toBeUndefined()
    expect(pageOf("nothing", "1", [])).toBeUndefined()
  })
})
