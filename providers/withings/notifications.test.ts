/** Withings' notification form decoded, stored, read back as its item, and what it means. */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { decodeNotification, lifecycleOf, notificationItemsOf, NOTIFY_KIND } from "./notifications.ts"

const decoded = (form: string) => Either.getOrThrow(decodeNotification(form))
const refusal = (form: string) => Either.match(decodeNotification(form), { onLeft: (message) => message, onRight: () => undefined })

/** What the ingest worker sees: the stored JSON parsed back. */
const itemsOfForm = (form: string) => notificationItemsOf(JSON.parse(JSON.stringify(decoded(form))))

describe("decodeNotification", () => {
  it("keeps Withings' fields, numbers as numbers, and drops unknown ones", () => {
    expect(NOTIFY_KIND).toBe("notify")
    expect(decoded("userid=12345&appli=1&startdate=1530576000&enddate=1530698753")).toEqual({ userid: "12345", appli: 1, startdate: 1530576000, enddate: 1530698753 })
    expect(decoded("userid=12345&appli=46&action=unlink&date=2024-01-31&extra=anything&deviceid=")).toEqual({ userid: "12345", appli: 46, action: "unlink", date: "2024-01-31" })
    expect(decoded("appli=16&userid=7&deviceid=892359876fd8805ac45bab078c4828692f0276b1&date=1700000000")).toEqual({
      userid: "7",
      appli: 16,
      deviceid: "892359876fd8805ac45bab078c4828692f0276b1",
      date: "1700000000"
    })
  })

  it("takes an appli it does not know (stored and ignored, never refused)", () => {
    expect(decoded("userid=1&appli=62")).toEqual({ userid: "1", appli: 62 })
  })

  it.each([
    ["", "userid"],
    ["appli=1", "userid"],
    ["userid=12a&appli=1", "userid"],
    ["userid=123456789012345678901&appli=1", "userid"],
    ["userid=-1&appli=1", "userid"],
    ["userid=1", "appli"],
    ["userid=1&appli=1.5", "appli"],
    ["userid=1&appli=99999", "appli"],
    ["userid=1&appli=1&startdate=yesterday", "startdate"],
    ["userid=1&appli=1&enddate=1e9", "enddate"],
    ["userid=1&appli=46&date=31/01/2024", "date"],
    ["userid=1&appli=1&deviceid=%3Cscript%3E", "deviceid"],
    ["userid=1&appli=46&action=DROP%20TABLE", "action"],
    ["userid=1&userid=2&appli=1", "userid"],
    ["userid=1&appli=1&appli=4", "appli"],
    ["userid=1%00&appli=1", "userid"],
    [`userid=1&appli=1&action=${"a".repeat(33)}`, "action"]
  ])("refuses %j naming the field (%s) without quoting it", (form, field) => {
    const message = refusal(form)
    expect(message).toContain(field)
    for (const value of new URLSearchParams(form).values()) if (value.length > 1) expect(message).not.toContain(value)
  })
})

describe("notificationItemsOf", () => {
  it("makes one record item keyed notify, addressed to the Withings user", () => {
    const items = itemsOfForm("userid=12345&appli=4&startdate=1&enddate=2")
    expect(items).toEqual([{ key: "notify", index: 0, user: { _tag: "UserId", id: "12345" }, carries: "record", raw: { userid: "12345", appli: 4, startdate: 1, enddate: 2 } }])
  })

  it.each([
    ["null", null],
    ["a string", "userid=1&appli=1"],
    ["an array", [{ userid: "1", appli: 1 }]],
    ["no userid", { appli: 1 }],
    ["a numeric userid", { userid: 1, appli: 1 }],
    ["a userid that is no id", { userid: "../1", appli: 1 }],
    ["a textual appli", { userid: "1", appli: "1" }],
    ["a negative appli", { userid: "1", appli: -1 }],
    ["an action that is not a word", { userid: "1", appli: 46, action: { unlink: true } }]
  ])("makes none of a malformed stored body (%s)", (_, body) => {
    expect(notificationItemsOf(body)).toEqual([])
  })
})

describe("lifecycleOf", () => {
  const lifecycle = (form: string) => {
    const [item] = itemsOfForm(form)
    return lifecycleOf(item!)
  }

  it("deregisters the connection when the user unlinked or deleted their account (appli 46)", () => {
    expect(lifecycle("userid=1&appli=46&action=unlink")).toEqual({ _tag: "Deregistered" })
    expect(lifecycle("userid=1&appli=46&action=delete&date=2024-01-31")).toEqual({ _tag: "Deregistered" })
  })

  it("wakes the poll for everything else: data categories, a profile update, an unknown appli", () => {
    expect(lifecycle("userid=1&appli=1&startdate=1&enddate=2")).toEqual({ _tag: "DataChanged" })
    expect(lifecycle("userid=1&appli=44&startdate=1&enddate=2")).toEqual({ _tag: "DataChanged" })
    expect(lifecycle("userid=1&appli=46&action=update")).toEqual({ _tag: "DataChanged" })
    expect(lifecycle("userid=1&appli=46")).toEqual({ _tag: "DataChanged" })
    expect(lifecycle("userid=1&appli=62")).toEqual({ _tag: "DataChanged" })
    // unlink is only an account event in the user-events category.
    expect(lifecycle("userid=1&appli=1&action=unlink")).toEqual({ _tag: "DataChanged" })
  })

  it("says nothing of items that are not notifications", () => {
    expect(lifecycleOf({ key: "measuregrp", index: 0, user: { _tag: "UserId", id: "1" }, carries: "record", raw: { userid: "1", appli: 46, action: "unlink" } })).toBeUndefined()
  })
})
