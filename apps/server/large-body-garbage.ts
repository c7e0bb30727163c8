/**
 * Full collections around large bodies, under Bun. JavaScriptCore collects its old generation
 * only once the heap has grown to several times what is live; a large body is tens of MB of
 * garbage at once (its text, the parts made of it, the driver's buffers) and then, part by
 * part, garbage tens of times each part's size. Measured on a 100 MB PUSH body (bench/
 * large-body.ts), these held the server's peak: the body's text lived until the first full
 * collection after the 200, with the first parts' garbage on top, and the heap swung between
 * ~55 and ~250 MB while the parts were processed. Each collection here costs one mark of the
 * live heap (tens of ms), once per large body and once per MB of its parts.
 */
import { PartGarbage } from "@wearflow/core/pipeline/ingest"
import { Effect, Layer } from "effect"

/** The most of the time these collections may pause the event loop: after a pause p, none for p / SHARE. */
const SHARE = 0.05
let notBefore = 0

/** A full collection, synchronous, unless the last one was too recent (SHARE). None outside Bun. */
const collect = () => {
  const started = performance.now()
  if (typeof Bun === "undefined" || started < notBefore) return
  Bun.gc(true)
  notBefore = started + (performance.now() - started) * (1 + 1 / SHARE)
}

/** A request body of at least this many bytes is followed by a collection once answered (`collectAfterAnswer`). */
export const COLLECT_AFTER_BYTES = 8 * 1024 * 1024

/** A collection on the next turn, once the answer is out: the handler no longer holds the body. */
export const collectAfterAnswer = () => {
  setTimeout(collect, 0)
}

/** A collection after this many characters of parts processed: ~50 MB of their garbage (~3 MB per 64 KB part measured). */
const PART_CHARACTERS_PER_COLLECTION = 1024 * 1024

/** The ingest worker's parts' garbage collected as it goes (PartGarbage). */
export const layerPartGarbage = Layer.sync(PartGarbage, () => {
  let since = 0
  return {
    processed: (characters: number) =>
      Effect.sync(() => {
        since += characters
        if (since < PART_CHARACTERS_PER_COLLECTION || performance.now() < notBefore) return
        since = 0
        collect()
      })
  }
})
