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
import { Connections } from "@wearflow/core/connections"
import { Cause, Effect, Either, Exit, Layer, Logger, LogLevel } from "effect"
import { type Command, parse } from "./args.ts"
import * as Backfill from "./backfill.ts"
import { EnvironmentError, encryptionKeys, layer, loadConfig, requireGarminConsumer } from "./environment.ts"
import { fail, write } from "./io.ts"
import { makeLogger, makeProgressView } from "./progress.ts"
import { reportJson, reportText } from "./report.ts"

/** `wearflow garmin migrate-oauth2`: the exit code is 1 when any connection failed. */
const migrateOAuth2 = (options: { readonly concurrency: number; readonly json: boolean }) => {
  const view = makeProgressView(process.stderr, "migrating")
  const logging = Layer.merge(Logger.replace(Logger.defaultLogger, makeLogger(view)), Logger.minimumLogLevel(LogLevel.Warning))
  return Effect.gen(function* () {
    const config = yield* loadConfig
    const keys = yield* encryptionKeys(config)
    yield* requireGarminConsumer
    const report = yield* Effect.flatMap(Connections, (connections) =>
      connections.migrateToOAuth2("garmin", {
        concurrency: options.concurrency,
        onProgress: (progress) => Effect.sync(() => view.update(progress))
      })).pipe(
        Effect.ensuring(Effect.sync(view.finish)),
        Effect.provide(layer(config, keys, options.concurrency)),
        Effect.catchTags({
          SqlError: (e) => new EnvironmentError({ message: `the database is unusable: ${e.message}` }),
          ProviderUnsupported: (e) => new EnvironmentError({ message: e.message })
        })
      )
    yield* write(process.stdout, options.json ? reportJson(report) : reportText(report))
    return report.failures.length > 0 ? 1 : 0
  }).pipe(Effect.provide(logging))
}

/** The backfill commands log warnings only, one line each on stderr. */
const quietLogging = Layer.merge(
  Logger.replace(Logger.defaultLogger, makeLogger({ update: () => {}, finish: () => {}, line: (text) => process.stderr.write(text + "\n") })),
  Logger.minimumLogLevel(LogLevel.Warning)
)

const parsed = parse(process.argv.slice(2))

const run = (command: Command): Effect.Effect<number, EnvironmentError> => {
  switch (command._tag) {
    case "Help":
      return write(process.stdout, command.text).pipe(Effect.as(0))
    case "GarminMigrateOAuth2":
      return migrateOAuth2(command)
    case "BackfillStatus":
      return Backfill.status(command).pipe(Effect.provide(quietLogging))
    case "BackfillStart":
      return Backfill.start(command).pipe(Effect.provide(quietLogging))
    case "BackfillCancel":
      return Backfill.cancel(command).pipe(Effect.provide(quietLogging))
  }
}

/** What an interruption (Ctrl-C) leaves behind, per command. */
const interrupted = (() => {
  if (Either.isLeft(parsed)) return "interrupted"
  switch (parsed.right._tag) {
    case "GarminMigrateOAuth2":
      return "interrupted; connections not migrated yet stay on OAuth 1.0a; run again to continue"
    case "BackfillStart":
    case "BackfillCancel":
      return "interrupted; the server may have acted on the request already: see wearflow backfill status"
    case "BackfillStatus":
      return "interrupted; backfills go on in the server"
    case "Help":
      return "interrupted"
  }
})()

const main = Effect.suspend((): Effect.Effect<number, EnvironmentError> =>
  Either.isLeft(parsed)
    ? fail(`${parsed.left.message}\nRun 'wearflow --help' for usage.`).pipe(Effect.as(2))
    : run(parsed.right)
).pipe(
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
