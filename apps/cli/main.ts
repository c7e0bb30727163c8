#!/usr/bin/env bun
/**
 * `wearflow`: Wearflow's command line, run by Bun (`npx wearflow --help`).
 *
 * stdout carries only the result (the report, the status, the server's answer, or help);
 * progress, notes, warnings and errors go to stderr. Exit codes: 0 done, 1 some connections
 * failed (or the server declined a backfill request), 2 usage error, 3 the database, the
 * configuration or the server is unusable (one line, no stack), 130 interrupted.
 */
import { BunRuntime } from "@effect/platform-bun"
import * as Host from "@wearflow/core/host"
import type { CommandEnvironment, CommandOutput, CommandUnusable, Plugin, PluginCommand } from "@wearflow/core/plugin"
import { Cause, ConfigProvider, Effect, Either, Exit, Layer, Logger, LogLevel } from "effect"
import { type Command, type Configured, parse } from "./args.ts"
import * as Backfill from "./backfill.ts"
import * as Keys from "./keys.ts"
import * as Scaffold from "./scaffold.ts"
import * as Sync from "./sync.ts"
import { EnvironmentError, encryptionKeys, layer, loadConfig, loadPluginList } from "./environment.ts"
import { fail, write } from "./io.ts"
import { makeLogger, makeProgressView, type ProgressView } from "./progress.ts"

/**
 * `wearflow <plugin> <command>`: runs in the plugin's sandbox (its own configuration only)
 * with the server's database, connections and providers. Warnings print above the progress.
 */
const runPluginCommand = (plugin: Plugin, command: PluginCommand<any, any>, args: unknown) => {
  let view: ProgressView = { update: () => {}, finish: () => {}, line: (text) => process.stderr.write(text + "\n") }
  const output: CommandOutput = {
    stdout: (text) => write(process.stdout, text),
    progress: (label, succeeded) => {
      const shown = makeProgressView(process.stderr, label, succeeded)
      view = shown
      return { update: (progress) => Effect.sync(() => shown.update(progress)), finish: Effect.sync(() => shown.finish()) }
    }
  }
  const logging = Layer.merge(
    Logger.replace(Logger.defaultLogger, makeLogger({ update: () => {}, finish: () => {}, line: (text) => view.line(text) })),
    Logger.minimumLogLevel(LogLevel.Warning)
  )
  return Effect.gen(function* () {
    const config = yield* loadConfig
    const keys = yield* encryptionKeys(config)
    // What the command needs beyond the CLI's services, its plugin's providerLayer provides.
    const run = command.run(args, output) as Effect.Effect<number, CommandUnusable, CommandEnvironment>
    return yield* run.pipe(
      Effect.withConfigProvider(Host.restrictConfigProvider(plugin.manifest, ConfigProvider.fromEnv())),
      Effect.catchTag("CommandUnusable", (e) => new EnvironmentError({ message: e.message })),
      Effect.provide(layer(config, keys, [plugin]))
    )
  }).pipe(Effect.provide(logging))
}

/** The backfill commands log warnings only, one line each on stderr. */
const quietLogging = Layer.merge(
  Logger.replace(Logger.defaultLogger, makeLogger({ update: () => {}, finish: () => {}, line: (text) => process.stderr.write(text + "\n") })),
  Logger.minimumLogLevel(LogLevel.Warning)
)

const run = (command: Command, plugins: ReadonlyArray<Plugin>): Effect.Effect<number, EnvironmentError> => {
  switch (command._tag) {
    case "Help":
      return write(process.stdout, command.text).pipe(Effect.as(0))
    case "Plugin":
      return runPluginCommand(plugins.find((p) => p.manifest.id === command.plugin)!, command.command, command.args)
    case "BackfillStatus":
      return Backfill.status(command, plugins).pipe(Effect.provide(quietLogging))
    case "BackfillStart":
      return Backfill.start(command).pipe(Effect.provide(quietLogging))
    case "BackfillCancel":
      return Backfill.cancel(command).pipe(Effect.provide(quietLogging))
    case "SyncStatus":
      return Sync.status(command).pipe(Effect.provide(quietLogging))
    case "TeamsCreate":
      return Keys.createTeam(command).pipe(Effect.provide(quietLogging))
    case "TeamsList":
      return Keys.listTeams(command).pipe(Effect.provide(quietLogging))
    case "KeysCreate":
      return Keys.createKey(command).pipe(Effect.provide(quietLogging))
    case "KeysList":
      return Keys.listKeys(command).pipe(Effect.provide(quietLogging))
    case "KeysRevoke":
      return Keys.revokeKey(command).pipe(Effect.provide(quietLogging))
    case "KeysRotate":
      return Keys.rotateKey(command).pipe(Effect.provide(quietLogging))
    case "PluginNew":
      return Scaffold.run(command.kind, command.id, command.dir).pipe(Effect.catchTag("ScaffoldError", (e) => new EnvironmentError({ message: e.message })))
  }
}

/** What an interruption (Ctrl-C) leaves behind, once the command is known. */
let interrupted = "interrupted"

const interruptedBy = (command: Command) => {
  switch (command._tag) {
    case "Plugin":
      return command.command.interrupted
    case "BackfillStart":
    case "BackfillCancel":
      return "interrupted; the server may have acted on the request already: see wearflow backfill status"
    case "BackfillStatus":
      return "interrupted; backfills go on in the server"
    case "SyncStatus":
      return "interrupted; polls go on in the server"
    case "PluginNew":
      return "interrupted; the plugin folder may be incomplete: remove it and run again"
    case "TeamsCreate":
    case "KeysCreate":
    case "KeysRevoke":
    case "KeysRotate":
      return "interrupted; the change may have been made: see wearflow teams list or keys list"
    case "TeamsList":
    case "KeysList":
    case "Help":
      return "interrupted"
  }
}

const main = Effect.gen(function* () {
  const plugins = yield* loadPluginList
  const configured: Configured = {
    commands: new Map(plugins.filter((p) => (p.commands ?? []).length > 0).map((p) => [p.manifest.id, p.commands!] as const)),
    defaultProvider: plugins.find((p) => p.manifest.kind === "provider")?.manifest.id ?? "SLUG"
  }
  const parsed = parse(process.argv.slice(2), configured)
  if (Either.isLeft(parsed)) return yield* fail(`${parsed.left.message}\nRun 'wearflow --help' for usage.`).pipe(Effect.as(2))
  interrupted = interruptedBy(parsed.right)
  return yield* run(parsed.right, plugins)
}).pipe(
  Effect.catchTag("EnvironmentError", (e) => fail(e.message).pipe(Effect.as(3))),
  Effect.catchAllCause((cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
    const error = Cause.squash(cause)
    return fail(`unexpected error: ${error instanceof Error ? error.message : String(error)}`).pipe(Effect.as(3))
  })
)

BunRuntime.runMain(main, {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) {
      // `main` always succeeds with the exit code; only an interruption ends it otherwise.
      const code = exit.value as number
      // Once the work is done nothing may keep the process alive (a stray socket, a timer).
      setTimeout(() => process.exit(code), 5_000).unref()
      return onExit(code)
    }
    process.stderr.write(`\nwearflow: ${interrupted}\n`)
    onExit(130)
  }
})
