/**
 * The server's logs: JSON lines on stdout at LOG_LEVEL, written in batches. A line is queued
 * and the queue written out once per turn of the event loop, so a busy server makes one write
 * for many lines instead of a synchronous write each (one or two per request at INFO). Lines
 * still queued when the process exits are written then.
 */
import { HashMap, Layer, Logger, type LogLevel, Option } from "effect"
import * as fs from "node:fs"

let queued: Array<string> = []
let scheduled = false

const writeQueued = () => {
  scheduled = false
  if (queued.length === 0) return
  const text = queued.join("\n") + "\n"
  queued = []
  process.stdout.write(text)
}

/** At exit nothing more runs: whatever is queued is written at once. */
process.once("exit", () => {
  if (queued.length === 0) return
  try {
    fs.writeSync(1, queued.join("\n") + "\n")
  } catch {
    // stdout already closed: nothing to be done
  }
  queued = []
})

const queueLine = (line: string) => {
  queued.push(line)
  if (!scheduled) {
    scheduled = true
    setImmediate(writeQueued)
  }
}

/** Effect's JSON log line, queued. */
export const jsonLines = Logger.make((options) => queueLine(Logger.jsonLogger.log(options)))

/** `jsonLines` with this process's name among each line's annotations. */
const jsonLinesOf = (process: string) =>
  Logger.make((options) => queueLine(Logger.jsonLogger.log({ ...options, annotations: HashMap.set(options.annotations, "process", process) })))

/**
 * Replaces Effect's default logger with `jsonLines`, at `level` and above; a worker process's
 * lines carry its `process` name.
 */
export const layer = (level: LogLevel.LogLevel, process: Option.Option<string> = Option.none()) =>
  Layer.merge(Logger.replace(Logger.defaultLogger, Option.match(process, { onNone: () => jsonLines, onSome: jsonLinesOf })), Logger.minimumLogLevel(level))

