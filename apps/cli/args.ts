/**
 * The command line, parsed strictly by hand (@effect/cli is not installed): anything not
 * understood is a usage error, so a typo never runs a migration with defaults.
 */
import { isHelp, parseFlags, type Flags, shown } from "@wearflow/core/cli-args"
import type { PluginCommand } from "@wearflow/core/plugin"
import { Data, Either } from "effect"

export type Command =
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "Plugin"; readonly plugin: string; readonly command: PluginCommand<any, any>; readonly args: unknown }
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
  | { readonly _tag: "SyncStatus"; readonly userId: string | undefined; readonly json: boolean }
  | { readonly _tag: "PluginNew"; readonly kind: "provider" | "sink"; readonly id: string; readonly dir: string | undefined }
  | { readonly _tag: "TeamsCreate"; readonly name: string; readonly json: boolean }
  | { readonly _tag: "TeamsList"; readonly json: boolean }
  | {
    readonly _tag: "KeysCreate"
    readonly teamId: string
    readonly label: string
    readonly scope: "full" | "read_only"
    readonly admin: boolean
    readonly expiresInDays: number | undefined
    readonly json: boolean
  }
  | { readonly _tag: "KeysList"; readonly teamId: string; readonly json: boolean }
  | { readonly _tag: "KeysRevoke"; readonly teamId: string; readonly keyId: string }
  | { readonly _tag: "KeysRotate"; readonly teamId: string; readonly keyId: string; readonly overlapHours: number | undefined; readonly json: boolean }

/** The command line could not be understood (exit code 2). */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** The commands of the configured plugins, by plugin id. */
export type PluginCommands = ReadonlyMap<string, ReadonlyArray<PluginCommand<any, any>>>

/** What the configured plugins add to the command line. */
export interface Configured {
  readonly commands: PluginCommands
  /** `--provider`'s default: the first configured provider. */
  readonly defaultProvider: string
}
/** The server's limit on a backfill's depth (Api.ts `BackfillRequest`). */
export const MAX_DAYS = 1825

export const usage = ({ commands: plugins, defaultProvider }: Configured) => `wearflow: Wearflow's command line

Usage:
${[...plugins].flatMap(([id, commands]) => commands.map((c) => `  wearflow ${id} ${c.name} ${c.usage}\n`)).join("")}  wearflow plugin new provider|sink ID [--dir DIR]
  wearflow backfill status [--user USER_ID] [--provider SLUG] [--json] [--watch]
  wearflow backfill start --user USER_ID [--provider ${defaultProvider}] [--days N] [--types a,b] [--json]
  wearflow backfill cancel --user USER_ID [--provider ${defaultProvider}]
  wearflow sync status [--user USER_ID] [--json]
  wearflow teams create --name NAME [--json]
  wearflow teams list [--json]
  wearflow keys create --team TEAM_ID --label LABEL [--read-only] [--admin] [--expires-in-days N] [--json]
  wearflow keys list --team TEAM_ID [--json]
  wearflow keys revoke --team TEAM_ID --key KEY_ID
  wearflow keys rotate --team TEAM_ID --key KEY_ID [--overlap-hours N] [--json]
  wearflow --help

Commands:
${[...plugins].flatMap(([id, commands]) => commands.map((c) => commandLine(`${id} ${c.name}`, c.summary))).join("")}  plugin new              Writes a new provider or sink plugin folder (providers/ID or sinks/ID,
                          or DIR/ID) that passes the conformance kit as it is; docs/plugins.md
                          walks through making it real.
  backfill status         Each user's latest backfill per provider, by resource (reads the database).
  backfill start          Asks the running server to fetch a user's history from the provider.
  backfill cancel         Asks the running server to stop a user's running backfill.
  sync status             Each polled connection's poll: state, cursor, last and next poll, last
                          error (reads the database; --json: one object per connection).
  teams create            Creates a team; prints its id.
  teams list              Every team: id, name, created.
  keys create             Creates an API key for a team and prints it, this once, alone on stdout
                          (only its hash is stored). --admin: it manages teams and keys through
                          /v2/teams; --read-only: GET and HEAD only.
  keys list               A team's keys: id, status, scope, admin, times, label; never a key.
  keys revoke             Revokes a key by its id: every server process refuses it at once.
  keys rotate             Creates a key like KEY_ID and prints it; KEY_ID keeps working for
                          --overlap-hours (default 24; 0: it stops now).
                          teams and keys work on the database directly, with the server up or down.

Options of backfill:
  --user USER_ID    the Wearflow user id (required by start and cancel; status: every user)
  --provider SLUG   the provider (start and cancel: default ${defaultProvider}; status: every provider)
  --days N          days of history, 1..${MAX_DAYS} (default WEARFLOW_BACKFILL_DAYS)
  --types a,b       the provider's backfill types, e.g. dailies,sleeps (default WEARFLOW_BACKFILL_TYPES)
  --json            status: print GET /v2/introspect/historical_pull's body; start: the server's answer
  --watch           status: redraw every second until every backfill shown is done or cancelled,
                    then print it once on stdout

Configuration is the server's, from the same environment: DATABASE_URL (unset: the embedded
Postgres under WEARFLOW_DATA_DIR, default ./.wearflow, used while the server runs it),
WEARFLOW_ENCRYPTION_KEY (unset: the key file in the data dir) and the plugins' own variables
(WEARFLOW_PLUGINS or wearflow.config.ts say which plugins, and so which commands, exist).
backfill start and cancel call the running server at WEARFLOW_SERVER_URL (unset:
WEARFLOW_PUBLIC_URL, else http://127.0.0.1:$PORT, default port 8080) with WEARFLOW_API_KEY
(unset: the key file in the data dir).

Exit codes:
  0  the command did what it was asked
  1  backfill start: nothing was started (the server says why); backfill cancel: no backfill
     was running; keys: no such team or key (or the key no longer works, for rotate); a
     plugin's command: some of its work failed (its report says which)
  2  usage error
  3  the database or the configuration is unusable, or the server cannot be reached or
     refuses the API key; nothing was changed
${[...plugins].flatMap(([, commands]) => commands.map((c) => `\n${c.help}\n`)).join("")}`

/** `name` and its summary's lines, the summary aligned in a column. */
const commandLine = (name: string, summary: string) =>
  summary.split("\n").map((line, i) => `  ${(i === 0 ? name : "").padEnd(22)}  ${line}\n`).join("")

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const SLUG = /^[a-z0-9][a-z0-9_-]{0,63}$/
const TYPE = /^[A-Za-z0-9_-]{1,64}$/

const usageError = (message: string) => Either.left(new UsageError({ message }))

const flagsOf = (args: ReadonlyArray<string>, spec: Parameters<typeof parseFlags>[1]) => Either.mapLeft(parseFlags(args, spec), (message) => new UsageError({ message }))

const parseUser = (value: string) =>
  UUID.test(value) ? Either.right(value.toLowerCase()) : usageError(`--user must be a Wearflow user id (a UUID), not ${shown(value)}`)

const parseProvider = (defaultProvider: string) => (value: string) =>
  SLUG.test(value) ? Either.right(value) : usageError(`--provider must be a provider slug such as ${defaultProvider}, not ${shown(value)}`)

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

/** Applies `parse` to the flag's value when it was given. */
const optional = <A>(flags: Flags, name: string, parse: (value: string) => Either.Either<A, UsageError>): Either.Either<A | undefined, UsageError> => {
  const value = flags.values.get(name)
  return value === undefined ? Either.right(undefined) : parse(value)
}

const BACKFILL_COMMANDS = "status, start, cancel"

const parseBackfill = (sub: string, args: ReadonlyArray<string>, help: string, defaultProvider: string): Either.Either<Command, UsageError> => {
  if (args.some(isHelp)) return Either.right({ _tag: "Help", text: help })
  const requiredUser = (flags: Flags) =>
    flags.values.has("user") ? parseUser(flags.values.get("user")!) : usageError(`backfill ${sub} needs --user USER_ID`)
  switch (sub) {
    case "status":
      return Either.gen(function* () {
        const flags = yield* flagsOf(args, { values: { user: "a user id", provider: "a provider slug" }, switches: ["json", "watch"] })
        return {
          _tag: "BackfillStatus",
          userId: yield* optional(flags, "user", parseUser),
          provider: yield* optional(flags, "provider", parseProvider(defaultProvider)),
          json: flags.switches.has("json"),
          watch: flags.switches.has("watch")
        } as const
      })
    case "start":
      return Either.gen(function* () {
        const flags = yield* flagsOf(args, {
          values: { user: "a user id", provider: "a provider slug", days: "a number", types: "backfill types, e.g. dailies,sleeps" },
          switches: ["json"]
        })
        return {
          _tag: "BackfillStart",
          userId: yield* requiredUser(flags),
          provider: (yield* optional(flags, "provider", parseProvider(defaultProvider))) ?? defaultProvider,
          days: yield* optional(flags, "days", parseDays),
          types: yield* optional(flags, "types", parseTypes),
          json: flags.switches.has("json")
        } as const
      })
    case "cancel":
      return Either.gen(function* () {
        const flags = yield* flagsOf(args, { values: { user: "a user id", provider: "a provider slug" }, switches: [] })
        return {
          _tag: "BackfillCancel",
          userId: yield* requiredUser(flags),
          provider: (yield* optional(flags, "provider", parseProvider(defaultProvider))) ?? defaultProvider
        } as const
      })
  }
  return usageError(`unknown backfill command ${shown(sub)} (there are: ${BACKFILL_COMMANDS})`)
}

// Values given to teams and keys are never shown back: a mistyped key could be pasted into --key.
const parseTeam = (value: string) => (UUID.test(value) ? Either.right(value.toLowerCase()) : usageError("--team must be a team id (a UUID; see wearflow teams list)"))
const parseKeyId = (value: string) => (UUID.test(value) ? Either.right(value.toLowerCase()) : usageError("--key must be a key id (a UUID; see wearflow keys list), not the key itself"))
const printable = (name: string, max: number) => (value: string) =>
  value.length <= max && /^[^\u0000-\u001f\u007f]+$/.test(value) && value.isWellFormed()
    ? Either.right(value)
    : usageError(`--${name} must be 1 to ${max} printable characters`)
const wholeNumber = (name: string, min: number, max: number) => (value: string) => {
  const n = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN
  return n >= min && n <= max ? Either.right(n) : usageError(`--${name} must be a whole number from ${min} to ${max}`)
}

const required = <A>(flags: Flags, name: string, what: string, parse: (value: string) => Either.Either<A, UsageError>) =>
  flags.values.has(name) ? parse(flags.values.get(name)!) : usageError(`${what} needs --${name}`)

/** parseFlags, its messages without the argument they quote. */
const quietFlagsOf = (args: ReadonlyArray<string>, spec: Parameters<typeof parseFlags>[1]) =>
  Either.mapLeft(parseFlags(args, spec), (message) => new UsageError({ message: message.replace(/ '.*'$/s, "") }))

const TEAMS_COMMANDS = "create, list"
const KEYS_COMMANDS = "create, list, revoke, rotate"

const parseTeams = (sub: string, args: ReadonlyArray<string>): Either.Either<Command, UsageError> => {
  switch (sub) {
    case "create":
      return Either.gen(function* () {
        const flags = yield* quietFlagsOf(args, { values: { name: "a team name" }, switches: ["json"] })
        return { _tag: "TeamsCreate", name: yield* required(flags, "name", "teams create", printable("name", 256)), json: flags.switches.has("json") } as const
      })
    case "list":
      return Either.map(quietFlagsOf(args, { values: {}, switches: ["json"] }), (flags) => ({ _tag: "TeamsList", json: flags.switches.has("json") } as const))
  }
  return usageError(`unknown teams command (there are: ${TEAMS_COMMANDS})`)
}

const parseKeys = (sub: string, args: ReadonlyArray<string>): Either.Either<Command, UsageError> => {
  const what = `keys ${sub}`
  switch (sub) {
    case "create":
      return Either.gen(function* () {
        const flags = yield* quietFlagsOf(args, {
          values: { team: "a team id", label: "a label", "expires-in-days": "a number of days" },
          switches: ["read-only", "admin", "json"]
        })
        return {
          _tag: "KeysCreate",
          teamId: yield* required(flags, "team", what, parseTeam),
          label: yield* required(flags, "label", what, printable("label", 128)),
          scope: flags.switches.has("read-only") ? "read_only" : "full",
          admin: flags.switches.has("admin"),
          expiresInDays: yield* optional(flags, "expires-in-days", wholeNumber("expires-in-days", 1, 3650)),
          json: flags.switches.has("json")
        } as const
      })
    case "list":
      return Either.gen(function* () {
        const flags = yield* quietFlagsOf(args, { values: { team: "a team id" }, switches: ["json"] })
        return { _tag: "KeysList", teamId: yield* required(flags, "team", what, parseTeam), json: flags.switches.has("json") } as const
      })
    case "revoke":
      return Either.gen(function* () {
        const flags = yield* quietFlagsOf(args, { values: { team: "a team id", key: "a key id" }, switches: [] })
        return { _tag: "KeysRevoke", teamId: yield* required(flags, "team", what, parseTeam), keyId: yield* required(flags, "key", what, parseKeyId) } as const
      })
    case "rotate":
      return Either.gen(function* () {
        const flags = yield* quietFlagsOf(args, { values: { team: "a team id", key: "a key id", "overlap-hours": "a number of hours" }, switches: ["json"] })
        return {
          _tag: "KeysRotate",
          teamId: yield* required(flags, "team", what, parseTeam),
          keyId: yield* required(flags, "key", what, parseKeyId),
          overlapHours: yield* optional(flags, "overlap-hours", wholeNumber("overlap-hours", 0, 720)),
          json: flags.switches.has("json")
        } as const
      })
  }
  return usageError(`unknown keys command (there are: ${KEYS_COMMANDS})`)
}

const count = (names: ReadonlyArray<string>) => (names.length === 1 ? `there is one: ${names[0]}` : `there are: ${names.join(", ")}`)

/** `argv` without the runtime and script paths; `plugins`: the configured plugins' commands. */
export const parse = (argv: ReadonlyArray<string>, configured: Configured): Either.Either<Command, UsageError> => {
  const help = usage(configured)
  const plugins = configured.commands
  const [command, ...rest] = argv
  if (command === undefined) return Either.left(new UsageError({ message: "no command given" }))
  if (isHelp(command) || command === "help") {
    return rest.length === 0 ? Either.right({ _tag: "Help", text: help }) : Either.left(new UsageError({ message: `unexpected argument ${shown(rest[0]!)}` }))
  }
  const commands = plugins.get(command)
  if (commands !== undefined) {
    const [sub, ...args] = rest
    const names = commands.map((c) => c.name)
    if (sub === undefined) return usageError(`no ${command} command given (${count(names)})`)
    if (isHelp(sub) || args.some(isHelp)) return Either.right({ _tag: "Help", text: help })
    const found = commands.find((c) => c.name === sub)
    if (found === undefined) return usageError(`unknown ${command} command ${shown(sub)} (${count(names)})`)
    return Either.match(found.parse(args), {
      onLeft: (message) => usageError(message),
      onRight: (parsed) => Either.right({ _tag: "Plugin", plugin: command, command: found, args: parsed } as const)
    })
  }
  if (command === "plugin") {
    const [sub, kind, id, ...flags] = rest
    if (sub !== "new") return usageError(sub === undefined ? "no plugin command given (there is one: new)" : `unknown plugin command ${shown(sub)} (there is one: new)`)
    if (kind !== "provider" && kind !== "sink") return usageError("plugin new needs provider or sink")
    if (id === undefined || !/^[a-z][a-z0-9-]{1,30}$/.test(id)) {
      return usageError(`plugin new ${kind} needs an id of 2..31 lower-case letters, digits and dashes${id === undefined ? "" : `, not ${shown(id)}`}`)
    }
    return Either.map(flagsOf(flags, { values: { dir: "a directory" }, switches: [] }), (parsed) => ({ _tag: "PluginNew", kind, id, dir: parsed.values.get("dir") } as const))
  }
  if (command === "sync") {
    const [sub, ...flags] = rest
    if (sub === undefined) return usageError("no sync command given (there is one: status)")
    if (isHelp(sub) || flags.some(isHelp)) return Either.right({ _tag: "Help", text: help })
    if (sub !== "status") return usageError(`unknown sync command ${shown(sub)} (there is one: status)`)
    return Either.gen(function* () {
      const parsed = yield* flagsOf(flags, { values: { user: "a user id" }, switches: ["json"] })
      return { _tag: "SyncStatus", userId: yield* optional(parsed, "user", parseUser), json: parsed.switches.has("json") } as const
    })
  }
  if (command === "teams" || command === "keys") {
    const [sub, ...flags] = rest
    const subcommands = command === "teams" ? TEAMS_COMMANDS : KEYS_COMMANDS
    if (sub === undefined) return usageError(`no ${command} command given (there are: ${subcommands})`)
    if (isHelp(sub) || flags.some(isHelp)) return Either.right({ _tag: "Help", text: help })
    return command === "teams" ? parseTeams(sub, flags) : parseKeys(sub, flags)
  }
  if (command === "backfill") {
    const [sub, ...flags] = rest
    if (sub === undefined) return usageError(`no backfill command given (there are: ${BACKFILL_COMMANDS})`)
    if (isHelp(sub)) return Either.right({ _tag: "Help", text: help })
    return parseBackfill(sub, flags, help, configured.defaultProvider)
  }
  return Either.left(new UsageError({ message: command.startsWith("-") ? `unknown option ${shown(command)}` : `unknown command ${shown(command)}` }))
}
