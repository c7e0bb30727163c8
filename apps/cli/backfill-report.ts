/**
 * What the backfill commands print: the status view (text, JSON, and the live view `--watch`
 * redraws on stderr), and the server's answers to start and cancel. Only ids, names, states,
 * ranges and counts: never tokens, never health data.
 */
import type { BackfillView } from "@wearflow/core/backfill/status"

const BAR_WIDTH = 10

/** Ids, names and errors come from the database and providers: no control characters reach the terminal. */
export const printable = (text: string) => text.replace(/[\r\n\t]+/g, " ").replace(/[\u0000-\u001f\u007f-\u009f]/g, "?")

/** `███████░░░`: full only when every window is done. */
export const bar = (done: number, total: number) => {
  const filled = total === 0 ? 0 : Math.min(BAR_WIDTH, Math.floor((done / total) * BAR_WIDTH))
  return "█".repeat(filled) + "░".repeat(BAR_WIDTH - filled)
}

/** YYYY-MM-DD of an ISO instant (UTC). */
const day = (iso: string | null) => (iso === null ? "—" : iso.slice(0, 10))

/** `2025-06-01 12:34 UTC`: windows of a re-run may span hours, not days. */
const minute = (iso: string | null) => (iso === null ? "—" : `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`)

/** Columns padded to their widest cell, two spaces apart; no trailing blanks. */
const align = (rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths: Array<number> = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd())
}

export const ended = (view: BackfillView) => view.status === "done" || view.status === "cancelled"

/** `--json`: the body of `GET /v2/introspect/historical_pull`. */
export const statusJson = (views: ReadonlyArray<BackfillView>) => JSON.stringify({ data: views, next_cursor: null }, null, 2) + "\n"

/**
 * Per backfill a header line (client_user_id, user_id, provider, status, origin, created_at)
 * and one line per resource: status, windows done, range, days with data, and the error.
 * Headers align with headers, resource lines with every resource line.
 */
export const statusText = (views: ReadonlyArray<BackfillView>) => {
  const headers = align(
    views.map((v) => [v.client_user_id, v.user_id, v.provider.slug, v.status, `origin ${v.origin}`, `created ${minute(v.created_at)}`].map(printable))
  )
  const pulls = views.map((v) => Object.entries(v.historical_pulls))
  const done = pulls.flat().map(([, p]) => String(p.windows.done))
  const total = pulls.flat().map(([, p]) => String(p.windows.total))
  const days = pulls.flat().map(([, p]) => String(p.days_with_data))
  const width = (cells: ReadonlyArray<string>) => Math.max(0, ...cells.map((cell) => cell.length))
  const rows = align(
    pulls.flat().map(([resource, p]) => [
      `  ${printable(resource)}`,
      p.status,
      `${bar(p.windows.done, p.windows.total)} ${String(p.windows.done).padStart(width(done))}/${String(p.windows.total).padEnd(width(total))}`,
      `${day(p.range_start)} → ${day(p.range_end)}`,
      `${String(p.days_with_data).padStart(width(days))} days with data`,
      p.error_details === null ? "" : `error: ${printable(p.error_details)}`
    ])
  )
  let next = 0
  return views
    .map((view, i) => {
      const lines = pulls[i]!.map(() => rows[next++]!)
      return [headers[i]!, ...(lines.length > 0 ? lines : [ended(view) ? "  (no windows)" : "  (no windows planned yet)"])].join("\n")
    })
    .join("\n\n") + "\n"
}

/** One line for logs while `--watch` waits off a terminal. */
export const watchLine = (views: ReadonlyArray<BackfillView>) => {
  const pulls = views.flatMap((v) => Object.values(v.historical_pulls))
  const windowsDone = pulls.reduce((n, p) => n + p.windows.done, 0)
  const windowsTotal = pulls.reduce((n, p) => n + p.windows.total, 0)
  const open = views.filter((v) => !ended(v)).length
  return `watching  ${views.length} backfill${views.length === 1 ? "" : "s"}, ${open} not ended  windows ${windowsDone}/${windowsTotal}`
}

interface Range {
  readonly type: string
  readonly resource: string
  readonly range_start: string
  readonly range_end: string
}

interface AlreadyRequested extends Range {
  readonly requested_at: string | null
}

const ranges = <R extends Range>(rows: ReadonlyArray<R>, extra: (row: R) => string = () => "") =>
  align(rows.map((r) => [`  ${printable(r.type)}`, printable(r.resource), `${minute(r.range_start)} → ${minute(r.range_end)}`, extra(r)]))

const requestedRanges = (rows: ReadonlyArray<AlreadyRequested>) =>
  ranges(rows, (r) => (r.requested_at === null ? "" : `requested ${minute(r.requested_at)}`))

/** 202 from `POST /v2/user/{user_id}/backfill/{provider}`. */
export const startedText = (
  provider: string,
  started: {
    readonly backfill_id: string
    readonly planned: ReadonlyArray<Range>
    readonly already_requested: ReadonlyArray<AlreadyRequested>
    readonly message: string
  }
) => {
  const lines = [
    `Backfill ${started.backfill_id} scheduled (${printable(provider)}).`,
    "",
    `Windows to request, one at a time, in this order (${started.planned.length}):`,
    ...ranges(started.planned)
  ]
  if (started.already_requested.length > 0) {
    lines.push("", `Already requested since the user connected, left out (${started.already_requested.length}):`, ...requestedRanges(started.already_requested))
  }
  lines.push("", printable(started.message))
  return lines.join("\n") + "\n"
}

/** 409 from the same route: nothing was started. */
export const conflictText = (conflict: { readonly message: string; readonly already_requested: ReadonlyArray<AlreadyRequested> }) => {
  const lines = [`Nothing was started: ${printable(conflict.message)}`]
  if (conflict.already_requested.length > 0) {
    lines.push("", `Already requested since the user connected (${conflict.already_requested.length}):`, ...requestedRanges(conflict.already_requested))
  }
  return lines.join("\n") + "\n"
}

export const cancelledText = (provider: string, userId: string, cancelled: { readonly backfill_id: string }) =>
  `Cancelled backfill ${cancelled.backfill_id} (${printable(provider)}, user ${userId}); data already on its way is still stored.\n`
