import { describe, expect, it } from "vitest"
import { stripUser } from "./bodies.ts"

describe("stripUser", () => {
  it("takes the user's items out of a body shared with other provider users, keeping theirs", () => {
    const body = JSON.stringify({
      dailies: [{ userId: "gone", summaryId: "a", steps: 1 }, { userId: "kept", summaryId: "b", steps: 2 }],
      epochs: [{ userId: "gone", summaryId: "c" }]
    })
    const stripped = stripUser(body, "gone")
    expect(stripped._tag).toBe("Shared")
    expect(JSON.parse((stripped as { body: string }).body)).toEqual({ dailies: [{ userId: "kept", summaryId: "b", steps: 2 }], epochs: [] })
  })

  it("answers Theirs for a body with nothing of anyone else, a single item naming the user, or text that is not JSON", () => {
    expect(stripUser(JSON.stringify({ dailies: [{ userId: "gone" }, { userId: "gone" }] }), "gone")).toEqual({ _tag: "Theirs" })
    expect(stripUser(JSON.stringify({ event_type: "create", user_id: "gone", object_id: "x" }), "gone")).toEqual({ _tag: "Theirs" })
    expect(stripUser("{not json", "gone")).toEqual({ _tag: "Theirs" })
  })

  it("answers Theirs when what is left still names the user (never keeps their id)", () => {
    const body = JSON.stringify({ dailies: [{ userId: "kept", note: { owner: "gone" } }] })
    expect(stripUser(body, "gone")).toEqual({ _tag: "Theirs" })
  })

  it("keeps items that mention the id only as part of a longer value", () => {
    const body = JSON.stringify({ dailies: [{ userId: "gone" }, { userId: "kept", callbackURL: "https://x/?u=kept" }] })
    expect(JSON.parse((stripUser(body, "gone") as { body: string }).body)).toEqual({ dailies: [{ userId: "kept", callbackURL: "https://x/?u=kept" }] })
  })
})
