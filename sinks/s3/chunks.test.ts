/** Cutting a runner batch's staged events into chunks (chunks.ts): within the limits, one event at least, the open batch's room first. */
import { describe, expect, it } from "@effect/vitest"
import { chunksOf, type StagedEvent } from "./chunks.ts"

const limits = { records: 10, bytes: 1000 }
const events = (dataset: string, records: ReadonlyArray<number>, bytes = 10): Array<StagedEvent> =>
  records.map((r, i) => ({ dataset, position: `${dataset}-${i}`, records: r, bytes }))
const shape = (chunks: ReturnType<typeof chunksOf>) => chunks.map((c) => [c.dataset, c.records, c.totalRecords, c.bytes])

describe("chunksOf", () => {
  it("cuts each dataset's events at the record limit, in staging order, never splitting an event", () => {
    const chunks = chunksOf(events("heartrate", [4, 4, 4, 4, 4]), [], limits)
    expect(shape(chunks)).toEqual([["heartrate", [4, 4], 8, 20], ["heartrate", [4, 4], 8, 20], ["heartrate", [4], 4, 10]])
    expect(chunks.flatMap((c) => c.positions)).toEqual(["heartrate-0", "heartrate-1", "heartrate-2", "heartrate-3", "heartrate-4"])
  })

  it("fills first what the open batch has room for, then whole batches", () => {
    const chunks = chunksOf(events("activity", Array(25).fill(1)), [{ resource: "activity", records: 7, bytes: 70 }], limits)
    expect(chunks.map((c) => c.totalRecords)).toEqual([3, 10, 10, 2])
  })

  it("says what each chunk's batch held before it: the open batch's for the first, nothing for a whole batch", () => {
    const chunks = chunksOf(events("activity", Array(15).fill(1)), [{ resource: "activity", records: 7, bytes: 70 }], limits)
    expect(chunks.map((c) => [c.before.records + c.totalRecords, c.before.bytes + c.bytes])).toEqual([[10, 100], [10, 100], [2, 20]])
  })

  it("starts a new batch when the open one has no room left, without an empty chunk", () => {
    const chunks = chunksOf(events("activity", [1, 1]), [{ resource: "activity", records: 10, bytes: 100 }], limits)
    expect(chunks.map((c) => c.totalRecords)).toEqual([2])
  })

  it("cuts at the byte limit, and an event larger than a batch is a chunk of its own", () => {
    const chunks = chunksOf([...events("sleep", [1, 1, 1], 400), ...events("heartrate", [50], 5000), ...events("sleep", [1], 400)], [], limits)
    // In the order they close: the last chunk of each dataset at the end.
    expect(shape(chunks)).toEqual([["sleep", [1, 1], 2, 800], ["sleep", [1, 1], 2, 800], ["heartrate", [50], 50, 5000]])
  })

  it("keeps datasets apart when their events interleave", () => {
    const mixed = [events("a", [1])[0]!, events("b", [1])[0]!, { ...events("a", [1])[0]!, position: "a-1" }]
    expect(chunksOf(mixed, [], limits).map((c) => [c.dataset, c.positions])).toEqual([["a", ["a-0", "a-1"]], ["b", ["b-0"]]])
  })
})
