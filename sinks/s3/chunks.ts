/**
 * How a runner batch's staged events are cut into chunks, one staging row each (batches.ts).
 * The sealer seals whole chunks, so each chunk stays within the batch limits (one event at
 * least), and a resource's first chunk takes only the room its open batch has left: the
 * batches come out as they did when single events were sealed.
 */

/** One data event as staged: its dataset, outbox position, rows and stored size. */
export interface StagedEvent {
  readonly dataset: string
  readonly position: string
  readonly records: number
  readonly bytes: number
}

/** What a dataset's open batch (staged, not yet sealed) already holds. */
export interface Open {
  readonly resource: string
  readonly records: number
  readonly bytes: number
}

export interface Chunk {
  readonly dataset: string
  /** In staging order; `records[i]` is the rows of the event at `positions[i]`. */
  readonly positions: Array<string>
  readonly records: Array<number>
  totalRecords: number
  bytes: number
  /** What its batch held before it: the open batch's for a dataset's first chunk, else nothing. */
  readonly before: { readonly records: number; readonly bytes: number }
}

/** The limits a batch is sealed at. */
export interface Limits {
  readonly records: number
  readonly bytes: number
}

/**
 * Chunks of `events` (in staging order) per dataset, in the order they close: an event that
 * would take a chunk past its room starts the next chunk, whose room is a whole batch.
 */
export const chunksOf = (events: ReadonlyArray<StagedEvent>, open: ReadonlyArray<Open>, limits: Limits): Array<Chunk> => {
  const done: Array<Chunk> = []
  const current = new Map<string, { chunk: Chunk; roomRecords: number; roomBytes: number; fresh: boolean }>()
  const opened = new Map(open.map((o) => [o.resource, o]))
  for (const event of events) {
    let state = current.get(event.dataset)
    if (state === undefined) {
      const before = opened.get(event.dataset)
      const records = before?.records ?? 0
      const bytes = before?.bytes ?? 0
      state = {
        chunk: { dataset: event.dataset, positions: [], records: [], totalRecords: 0, bytes: 0, before: { records, bytes } },
        roomRecords: limits.records - records,
        roomBytes: limits.bytes - bytes,
        // Nothing before it in its batch: it takes its first event whatever the size.
        fresh: records === 0 && bytes === 0
      }
      current.set(event.dataset, state)
    }
    const { chunk } = state
    const fits = chunk.totalRecords + event.records <= state.roomRecords && chunk.bytes + event.bytes <= state.roomBytes
    if (!fits && (chunk.positions.length > 0 || !state.fresh)) {
      if (chunk.positions.length > 0) done.push(chunk)
      state.chunk = { dataset: event.dataset, positions: [], records: [], totalRecords: 0, bytes: 0, before: { records: 0, bytes: 0 } }
      state.roomRecords = limits.records
      state.roomBytes = limits.bytes
      state.fresh = true
    }
    state.chunk.positions.push(event.position)
    state.chunk.records.push(event.records)
    state.chunk.totalRecords += event.records
    state.chunk.bytes += event.bytes
  }
  for (const { chunk } of current.values()) if (chunk.positions.length > 0) done.push(chunk)
  return done
}
