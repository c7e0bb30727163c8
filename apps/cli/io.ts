/** Output every command shares: stdout carries only the result, stderr progress, notes and errors. */
import { Effect } from "effect"

/** Writes and waits until the text is handed to the OS, so an exit right after loses nothing. */
export const write = (stream: NodeJS.WriteStream, text: string) =>
  Effect.async<void>((resume) => {
    stream.write(text, () => resume(Effect.void))
  })

/** One line on stderr: an error, or a note that is no result. */
export const fail = (message: string) => write(process.stderr, `wearflow: ${message}\n`)
