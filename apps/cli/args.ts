/**
 * The command line, parsed strictly by hand (@effect/cli is not installed): anything not
 * understood is a usage error, so a typo never runs a migration with defaults.
 */
import { Data, Either } from "effect"

export type Command =
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "GarminMigrateOAuth2"; readonly concurrency: number; readonly json: boolean }

/** The command line could not be understood (exit code 2). */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

export const DEFAULT_CONCURRENCY = 4
export const MAX_CONCURRENCY = 32

export const usage = `wearflow: Wearflow's command line

Usage:
  wearflow garmin migrate-oauth2 [--concurrency N] [--json]
  wearflow --help

Commands:
  garmin migrate-oauth2   Exchanges every active Garmin OAuth 1.0a connection for OAuth 2.0
                          tokens (Garmin retires OAuth 1.0a on 2026-12-31). Each connection
                          moves on its own, so an interrupted run loses nothing: run it again
                          and it sees only what is left, failures included.

Options of migrate-oauth2:
  --concurrency N   connections exchanged at once, 1..${MAX_CONCURRENCY} (default ${DEFAULT_CONCURRENCY})
  --json            print the report as JSON on stdout (the progress stays on stderr)
  -h, --help        show this help

Configuration is the server's, from the same environment: DATABASE_URL (unset: the embedded
Postgres under WEARFLOW_DATA_DIR, default ./.wearflow, used while the server runs it),
WEARFLOW_ENCRYPTION_KEY (unset: the key file in the data dir), GARMIN_CLIENT_ID,
GARMIN_CLIENT_SECRET and the GARMIN_*_URL base URLs.

Exit codes:
  0  every connection found was migrated (or another run held it)
  1  some connections failed; the report says why; run again to retry them
  2  usage error
  3  the database or the configuration is unusable; nothing was changed
`

/** An argument as an error message may show it: printable, short. */
const shown = (arg: string) => {
  const printable = arg.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?")
  return `'${printable.length > 40 ? `${printable.slice(0, 40)}…` : printable}'`
}

const isHelp = (arg: string) => arg === "--help" || arg === "-h"

const parseConcurrency = (value: string | undefined): Either.Either<number, UsageError> => {
  if (value === undefined) return Either.left(new UsageError({ message: "--concurrency needs a number" }))
  const n = /^\d{1,3}$/.test(value) ? Number(value) : Number.NaN
  return n >= 1 && n <= MAX_CONCURRENCY
    ? Either.right(n)
    : Either.left(new UsageError({ message: `--concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}, not ${shown(value)}` }))
}

const parseMigrate = (args: ReadonlyArray<string>): Either.Either<Command, UsageError> => {
  if (args.some(isHelp)) return Either.right({ _tag: "Help", text: usage })
  let concurrency: number | undefined
  let json = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--json") {
      if (json) return Either.left(new UsageError({ message: "--json is given twice" }))
      json = true
      continue
    }
    const inline = /^--concurrency=(.*)$/s.exec(arg)
    if (inline !== null || arg === "--concurrency") {
      if (concurrency !== undefined) return Either.left(new UsageError({ message: "--concurrency is given twice" }))
      const parsed = parseConcurrency(inline !== null ? inline[1] : args[++i])
      if (Either.isLeft(parsed)) return Either.left(parsed.left)
      concurrency = parsed.right
      continue
    }
    return Either.left(new UsageError({ message: arg.startsWith("-") ? `unknown option ${shown(arg)}` : `unexpected argument ${shown(arg)}` }))
  }
  return Either.right({ _tag: "GarminMigrateOAuth2", concurrency: concurrency ?? DEFAULT_CONCURRENCY, json })
}

/** `argv` without the runtime and script paths. */
export const parse = (argv: ReadonlyArray<string>): Either.Either<Command, UsageError> => {
  const [command, ...rest] = argv
  if (command === undefined) return Either.left(new UsageError({ message: "no command given" }))
  if (isHelp(command) || command === "help") {
    return rest.length === 0 ? Either.right({ _tag: "Help", text: usage }) : Either.left(new UsageError({ message: `unexpected argument ${shown(rest[0]!)}` }))
  }
  if (command === "garmin") {
    const [sub, ...flags] = rest
    if (sub === undefined) return Either.left(new UsageError({ message: "no garmin command given (there is one: migrate-oauth2)" }))
    if (isHelp(sub)) return Either.right({ _tag: "Help", text: usage })
    if (sub === "migrate-oauth2") return parseMigrate(flags)
    return Either.left(new UsageError({ message: `unknown garmin command ${shown(sub)} (there is one: migrate-oauth2)` }))
  }
  return Either.left(new UsageError({ message: command.startsWith("-") ? `unknown option ${shown(command)}` : `unknown command ${shown(command)}` }))
}
