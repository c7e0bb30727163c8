#!/usr/bin/env bun
/**
 * `wearflow`: Wearflow's command line, run by Bun (`npx wearflow --help`).
 *
 * stdout carries only the result (the report, or help); progress, warnings and errors go to
 * stderr. Exit codes: 0 done, 1 some connections failed, 2 usage error, 3 the database or the
 * configuration is unusable (one line, no stack), 130 interrupted.
 */
import { BunRuntime } from "@effect/platform-bun"
import { Connections } from "@wearflow/core/connections"
import { Cause, Effect, Either, Exit, Layer, Logger, LogLevel } from "effect"
import { parse } from "./args.ts"
import { EnvironmentError, encryptionKeys, layer, loadConfig, requireGarminConsumer } from "./environment.ts"
import { makeLogger, makeProgressView } from "./progress.ts"
import { reportJson, reportText } from "./report.ts"

/** Writes and waits until the text is handed to the OS, so an exit right after loses nothing. */
const write = (stream: NodeJS.WriteStream, text: string) =>
  Effect.async<void>((resume) => {
    stream.write(text, () => resume(Effect.void))
  })

const fail = (message: string) => write(process.stderr, `wearflow: ${message}\n`)

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

const main = Effect.suspend(() => {
  const command = parse(process.argv.slice(2))
  if (Either.isLeft(command)) return fail(`${command.left.message}\nRun 'wearflow --help' for usage.`).pipe(Effect.as(2))
  switch (command.right._tag) {
    case "Help":
      return write(process.stdout, command.right.text).pipe(Effect.as(0))
    case "GarminMigrateOAuth2":
      return migrateOAuth2(command.right)
  }
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
    process.stderr.write("\nwearflow: interrupted; connections not migrated yet stay on OAuth 1.0a; run again to continue\n")
    onExit(130)
  }
})
