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
  /** Each dataset's chunk being filled; its room is the batch limits less what its batch held before it. */
  const current = new Map<string, Chunk>()
  const opened = new Map(open.map((o) => [o.resource, o]))
  const empty = (dataset: string, before: Chunk["before"]): Chunk => ({ dataset, positions: [], records: [], totalRecords: 0, bytes: 0, before })
  for (const event of events) {
    let chunk = current.get(event.dataset)
    if (chunk === undefined) {
      const before = opened.get(event.dataset)
      chunk = empty(event.dataset, { records: before?.records ?? 0, bytes: before?.bytes ?? 0 })
      current.set(event.dataset, chunk)
    }
    const fits = chunk.before.records + chunk.totalRecords + event.records <= limits.records &&
      chunk.before.bytes + chunk.bytes + event.bytes <= limits.bytes
    // A chunk with nothing before it in its batch takes its first event whatever the size.
    const fresh = chunk.before.records === 0 && chunk.before.bytes === 0
    if (!fits && (chunk.positions.length > 0 || !fresh)) {
      if (chunk.positions.length > 0) done.push(chunk)
      chunk = empty(event.dataset, { records: 0, bytes: 0 })
      current.set(event.dataset, chunk)
    }
    chunk.positions.push(event.position)
    chunk.records.push(event.records)
    chunk.totalRecords += event.records
    chunk.bytes += event.bytes
  }
  for (const chunk of current.values()) if (chunk.positions.length > 0) done.push(chunk)
  return done
}
