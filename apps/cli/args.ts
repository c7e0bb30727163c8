/**
 * The command line, parsed strictly by hand (@effect/cli is not installed): anything not
 * understood is a usage error, so a typo never runs a migration with defaults.
 */
import { Data, Either } from "effect"

export type Command =
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "GarminMigrateOAuth2"; readonly concurrency: number; readonly json: boolean }
  | {
    readonly _tag: "BackfillStatus"
    readonly userId: string | undefined
    readonly provider: string | undefined
    readonly json: boolean
    readonly watch: boolean
  }
  | {
    readonly _tag: "BackfillStart"
    readonly userId: string
    readonly provider: string
    readonly days: number | undefined
    readonly types: ReadonlyArray<string> | undefined
    readonly json: boolean
  }
  | { readonly _tag: "BackfillCancel"; readonly userId: string; readonly provider: string }

/** The command line could not be understood (exit code 2). */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

export const DEFAULT_CONCURRENCY = 4
export const MAX_CONCURRENCY = 32
export const DEFAULT_PROVIDER = "garmin"
/** The server's limit on a backfill's depth (Api.ts `BackfillRequest`). */
export const MAX_DAYS = 1825

export const usage = `wearflow: Wearflow's command line

Usage:
  wearflow garmin migrate-oauth2 [--concurrency N] [--json]
  wearflow backfill status [--user USER_ID] [--provider SLUG] [--json] [--watch]
  wearflow backfill start --user USER_ID [--provider ${DEFAULT_PROVIDER}] [--days N] [--types a,b] [--json]
  wearflow backfill cancel --user USER_ID [--provider ${DEFAULT_PROVIDER}]
  wearflow --help

Commands:
  garmin migrate-oauth2   Exchanges every active Garmin OAuth 1.0a connection for OAuth 2.0
                          tokens (Garmin retires OAuth 1.0a on 2026-12-31). Each connection
                          moves on its own, so an interrupted run loses nothing: run it again
                          and it sees only what is left, failures included.
  backfill status         Each user's latest backfill per provider, by resource (reads the database).
  backfill start          Asks the running server to fetch a user's history from the provider.
  backfill cancel         Asks the running server to stop a user's running backfill.

Options of migrate-oauth2:
  --concurrency N   connections exchanged at once, 1..${MAX_CONCURRENCY} (default ${DEFAULT_CONCURRENCY})
  --json            print the report as JSON on stdout (the progress stays on stderr)
  -h, --help        show this help

Options of backfill:
  --user USER_ID    the Wearflow user id (required by start and cancel; status: every user)
  --provider SLUG   the provider (start and cancel: default ${DEFAULT_PROVIDER}; status: every provider)
  --days N          days of history, 1..${MAX_DAYS} (default WEARFLOW_BACKFILL_DAYS)
  --types a,b       the provider's backfill types, e.g. dailies,sleeps (default WEARFLOW_BACKFILL_TYPES)
  --json            status: print GET /v2/introspect/historical_pull's body; start: the server's answer
  --watch           status: redraw every second until every backfill shown is done or cancelled,
                    then print it once on stdout

Configuration is the server's, from the same environment: DATABASE_URL (unset: the embedded
Postgres under WEARFLOW_DATA_DIR, default ./.wearflow, used while the server runs it),
WEARFLOW_ENCRYPTION_KEY (unset: the key file in the data dir), GARMIN_CLIENT_ID,
GARMIN_CLIENT_SECRET and the GARMIN_*_URL base URLs. backfill start and cancel call the
running server at WEARFLOW_SERVER_URL (unset: WEARFLOW_PUBLIC_URL, else
http://127.0.0.1:$PORT, default port 8080) with WEARFLOW_API_KEY (unset: the key file in the
data dir).

Exit codes:
  0  every connection found was migrated (or another run held it); the backfill command did
     what it was asked
  1  some connections failed; the report says why; run again to retry them. backfill start:
     nothing was started (the server says why); backfill cancel: no backfill was running
  2  usage error
  3  the database or the configuration is unusable, or the server cannot be reached or
     refuses the API key; nothing was changed
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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const SLUG = /^[a-z0-9][a-z0-9_-]{0,63}$/
const TYPE = /^[A-Za-z0-9_-]{1,64}$/

const usageError = (message: string) => Either.left(new UsageError({ message }))

const parseUser = (value: string) =>
  UUID.test(value) ? Either.right(value.toLowerCase()) : usageError(`--user must be a Wearflow user id (a UUID), not ${shown(value)}`)

const parseProvider = (value: string) =>
  SLUG.test(value) ? Either.right(value) : usageError(`--provider must be a provider slug such as ${DEFAULT_PROVIDER}, not ${shown(value)}`)

const parseDays = (value: string) => {
  const n = /^\d{1,4}$/.test(value) ? Number(value) : Number.NaN
  return n >= 1 && n <= MAX_DAYS ? Either.right(n) : usageError(`--days must be a whole number from 1 to ${MAX_DAYS}, not ${shown(value)}`)
}

const parseTypes = (value: string) => {
  const types = value.split(",").map((t) => t.trim())
  const bad = types.find((t) => !TYPE.test(t))
  return bad === undefined
    ? Either.right([...new Set(types)])
    : usageError(`--types must be backfill types separated by commas, e.g. dailies,sleeps, not ${shown(value)}`)
}

type Flags = { readonly values: Map<string, string>; readonly switches: Set<string> }

/**
 * `--name value`, `--name=value` and `--switch`, each at most once; anything else is a usage
 * error. A value may not look like an option (`--user --json` lacks the user).
 */
const parseFlags = (
  args: ReadonlyArray<string>,
  spec: { readonly values: Readonly<Record<string, string>>; readonly switches: ReadonlyArray<string> }
): Either.Either<Flags, UsageError> => {
  const values = new Map<string, string>()
  const switches = new Set<string>()
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const [, name, inline] = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg) ?? []
    if (name !== undefined && spec.switches.includes(name) && inline === undefined) {
      if (switches.has(name)) return usageError(`--${name} is given twice`)
      switches.add(name)
      continue
    }
    if (name !== undefined && Object.hasOwn(spec.values, name)) {
      if (values.has(name)) return usageError(`--${name} is given twice`)
      const value = inline ?? args[++i]
      if (value === undefined || value === "" || (inline === undefined && value.startsWith("-"))) return usageError(`--${name} needs ${spec.values[name]}`)
      values.set(name, value)
      continue
    }
    return usageError(arg.startsWith("-") ? `unknown option ${shown(arg)}` : `unexpected argument ${shown(arg)}`)
  }
  return Either.right({ values, switches })
}

/** Applies `parse` to the flag's value when it was given. */
const optional = <A>(flags: Flags, name: string, parse: (value: string) => Either.Either<A, UsageError>): Either.Either<A | undefined, UsageError> => {
  const value = flags.values.get(name)
  return value === undefined ? Either.right(undefined) : parse(value)
}

const BACKFILL_COMMANDS = "status, start, cancel"

const parseBackfill = (sub: string, args: ReadonlyArray<string>): Either.Either<Command, UsageError> => {
  if (args.some(isHelp)) return Either.right({ _tag: "Help", text: usage })
  const requiredUser = (flags: Flags) =>
    flags.values.has("user") ? parseUser(flags.values.get("user")!) : usageError(`backfill ${sub} needs --user USER_ID`)
  switch (sub) {
    case "status":
      return Either.gen(function* () {
        const flags = yield* parseFlags(args, { values: { user: "a user id", provider: "a provider slug" }, switches: ["json", "watch"] })
        return {
          _tag: "BackfillStatus",
          userId: yield* optional(flags, "user", parseUser),
          provider: yield* optional(flags, "provider", parseProvider),
          json: flags.switches.has("json"),
          watch: flags.switches.has("watch")
        } as const
      })
    case "start":
      return Either.gen(function* () {
        const flags = yield* parseFlags(args, {
          values: { user: "a user id", provider: "a provider slug", days: "a number", types: "backfill types, e.g. dailies,sleeps" },
          switches: ["json"]
        })
        return {
          _tag: "BackfillStart",
          userId: yield* requiredUser(flags),
          provider: (yield* optional(flags, "provider", parseProvider)) ?? DEFAULT_PROVIDER,
          days: yield* optional(flags, "days", parseDays),
          types: yield* optional(flags, "types", parseTypes),
          json: flags.switches.has("json")
        } as const
      })
    case "cancel":
      return Either.gen(function* () {
        const flags = yield* parseFlags(args, { values: { user: "a user id", provider: "a provider slug" }, switches: [] })
        return {
          _tag: "BackfillCancel",
          userId: yield* requiredUser(flags),
          provider: (yield* optional(flags, "provider", parseProvider)) ?? DEFAULT_PROVIDER
        } as const
      })
  }
  return usageError(`unknown backfill command ${shown(sub)} (there are: ${BACKFILL_COMMANDS})`)
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
  if (command === "backfill") {
    const [sub, ...flags] = rest
    if (sub === undefined) return usageError(`no backfill command given (there are: ${BACKFILL_COMMANDS})`)
    if (isHelp(sub)) return Either.right({ _tag: "Help", text: usage })
    return parseBackfill(sub, flags)
  }
  return Either.left(new UsageError({ message: command.startsWith("-") ? `unknown option ${shown(command)}` : `unknown command ${shown(command)}` }))
}
