/**
 * The progress line on stderr, and the logger that writes above it. On a terminal one line is
 * redrawn in place; anywhere else (a log file, CI) plain lines appear at the start, at most
 * every 10 % and at the end, so logs stay readable.
 */
import type { CommandProgress } from "@wearflow/core/plugin"
import { Cause, HashMap, Logger } from "effect"

const BAR_WIDTH = 20
/** Fastest redraw on a terminal; the last state is always drawn. */
const REDRAW_MS = 50

export interface ProgressView {
  readonly update: (progress: CommandProgress) => void
  /** Ends the redrawn line, so what follows starts on a fresh one. */
  readonly finish: () => void
  /** Writes a whole line (a log message) without tearing the progress line. */
  readonly line: (text: string) => void
}

export const progressLine = (label: string, succeededWord: string, { total, done, succeeded, failed }: CommandProgress) => {
  const filled = total === 0 ? 0 : Math.round((done / total) * BAR_WIDTH)
  const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled)
  const skipped = done - succeeded - failed
  return `${label}  [${bar}]  ${done}/${total}  ${succeededWord} ${succeeded}  failed ${failed}${skipped > 0 ? `  skipped ${skipped}` : ""}`
}

export const makeProgressView = (stream: NodeJS.WriteStream, label: string, succeededWord: string): ProgressView => {
  const tty = stream.isTTY === true
  let last: CommandProgress | undefined
  let drawn = false
  let drawnAt = 0
  let decile = -1

  const draw = () => {
    if (last === undefined) return
    stream.write(`\r${progressLine(label, succeededWord, last)}\x1b[K`)
    drawn = true
    drawnAt = Date.now()
  }

  return {
    update: (progress) => {
      last = progress
      if (tty) {
        if (progress.done === 0 || progress.done === progress.total || Date.now() - drawnAt >= REDRAW_MS) draw()
        return
      }
      const reached = progress.total === 0 ? 10 : Math.floor((progress.done * 10) / progress.total)
      if (progress.done === 0 || reached > decile) {
        decile = Math.max(decile, reached)
        stream.write(progressLine(label, succeededWord, progress) + "\n")
      }
    },
    finish: () => {
      if (tty && drawn) {
        draw()
        stream.write("\n")
        drawn = false
      }
    },
    line: (text) => {
      if (tty && drawn) {
        stream.write(`\r\x1b[K${text}\n`)
        draw()
      } else {
        stream.write(text + "\n")
      }
    }
  }
}

const printable = (text: string) => text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "?")

/**
 * One line per log entry: `wearflow: warning: message (key=value, ...)`. Redacted values
 * print as `<redacted>`; causes show their message, not a stack.
 */
export const makeLogger = (view: ProgressView) =>
  Logger.make(({ annotations, cause, logLevel, message }) => {
    const text = (Array.isArray(message) ? message : [message]).map((part) => (typeof part === "string" ? part : String(part))).join(" ")
    const pairs = [...HashMap.toEntries(annotations)].map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value) ?? String(value)}`)
    const reason = Cause.isEmpty(cause) ? "" : `: ${Cause.squash(cause) instanceof Error ? (Cause.squash(cause) as Error).message : String(Cause.squash(cause))}`
    view.line(printable(`wearflow: ${logLevel.label.toLowerCase()}: ${text}${reason}${pairs.length > 0 ? ` (${pairs.join(", ")})` : ""}`))
  })
