/**
 * `wearflow garmin migrate-oauth2`: exchanges every active OAuth 1.0a connection for OAuth 2.0
 * tokens (Garmin retires OAuth 1.0a on 2026-12-31). Each connection moves on its own, so an
 * interrupted run loses nothing: a second run sees only what is left, failures included.
 */
import { parseFlags, parseWholeNumber } from "@wearflow/core/cli-args"
import { Connections, type MigrationReport } from "@wearflow/core/connections/connections"
import { CommandUnusable, type PluginCommand } from "@wearflow/core/plugin"
import { Context, Effect, Either, Option } from "effect"
import { consumerOf, GarminConfig } from "./config.ts"
import { type GarminAuth, migrateToOAuth2 } from "./upgrade.ts"

export const DEFAULT_CONCURRENCY = 4
export const MAX_CONCURRENCY = 32

interface MigrateArgs {
  readonly concurrency: number
  readonly json: boolean
}

/** The report as `--json` prints it. */
export const reportJson = (report: MigrationReport) =>
  JSON.stringify(
    {
      provider: "garmin",
      found: report.total,
      migrated: report.migrated,
      skipped: report.skipped,
      failed: report.failures.length,
      failures: report.failures
    },
    null,
    2
  ) + "\n"

/** Ids and reasons come from the database and Garmin: no control characters reach the terminal. */
const printable = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?")

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)))
  const format = (row: ReadonlyArray<string>) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  ")
  return [format(header), format(widths.map((w) => "-".repeat(w))), ...rows.map(format)].join("\n")
}

export const reportText = (report: MigrationReport) => {
  if (report.total === 0) return "No active Garmin OAuth 1.0a connections are left to migrate.\n"
  const lines = [
    "Garmin OAuth 1.0a → OAuth 2.0",
    `  found     ${report.total}`,
    `  migrated  ${report.migrated}`,
    `  skipped   ${report.skipped}${report.skipped > 0 ? "  (another run was migrating them; run again once it ends to check)" : ""}`,
    `  failed    ${report.failures.length}`
  ]
  if (report.failures.length > 0) {
    lines.push(
      "",
      "Failed (still on OAuth 1.0a; run again to retry them):",
      table(
        ["user_id", "client_user_id", "garmin_user_id", "reason"],
        report.failures.map((f) => [f.user_id, f.client_user_id, f.provider_user_id, f.reason].map(printable))
      )
    )
  }
  return lines.join("\n") + "\n"
}

/** Garmin's auth flows as the plugin's layer provides them (mod.ts). */
export class GarminAuthFlows extends Context.Tag("wearflow/providers/GarminAuthFlows")<GarminAuthFlows, GarminAuth>() {}

export const migrateOAuth2: PluginCommand<MigrateArgs, GarminAuthFlows> = {
  name: "migrate-oauth2",
  usage: "[--concurrency N] [--json]",
  summary: `Exchanges every active Garmin OAuth 1.0a connection for OAuth 2.0
tokens (Garmin retires OAuth 1.0a on 2026-12-31). Each connection
moves on its own, so an interrupted run loses nothing: run it again
and it sees only what is left, failures included.`,
  help: `Options of garmin migrate-oauth2:
  --concurrency N   connections exchanged at once, 1..${MAX_CONCURRENCY} (default ${DEFAULT_CONCURRENCY})
  --json            print the report as JSON on stdout (the progress stays on stderr)
It reads GARMIN_CLIENT_ID, GARMIN_CLIENT_SECRET and the GARMIN_*_URL base URLs. Exit code 0:
every connection found was migrated (or another run held it); 1: some failed, the report
says why; run again to retry them.`,
  interrupted: "interrupted; connections not migrated yet stay on OAuth 1.0a; run again to continue",
  parse: (args) =>
    Either.gen(function* () {
      const flags = yield* parseFlags(args, { values: { concurrency: "a number" }, switches: ["json"] })
      const given = flags.values.get("concurrency")
      return {
        concurrency: given === undefined ? DEFAULT_CONCURRENCY : yield* parseWholeNumber("concurrency", given, 1, MAX_CONCURRENCY),
        json: flags.switches.has("json")
      }
    }),
  run: ({ concurrency, json }, output) =>
    Effect.gen(function* () {
      // The consumer key and secret sign every exchange: without them each connection would
      // fail alike, so the command stops before it starts.
      const config = yield* Effect.mapError(GarminConfig, (e) => new CommandUnusable({ message: `configuration: ${String(e).replace(/\s+/g, " ")}` }))
      if (Option.isNone(consumerOf(config))) {
        const missing = [Option.isNone(config.clientId) && "GARMIN_CLIENT_ID", Option.isNone(config.clientSecret) && "GARMIN_CLIENT_SECRET"].filter((name) => name !== false)
        return yield* new CommandUnusable({ message: `${missing.join(" and ")} must be set (Garmin's consumer key and secret sign the token exchange)` })
      }
      const progress = output.progress("migrating", "migrated")
      const connections = yield* Connections
      const flows = yield* GarminAuthFlows
      const report = yield* migrateToOAuth2(connections, flows.upgrade, {
        concurrency,
        onProgress: (p) => progress.update({ total: p.total, done: p.done, succeeded: p.migrated, failed: p.failed })
      }).pipe(
        Effect.ensuring(progress.finish),
        Effect.catchTag("SqlError", (e) => new CommandUnusable({ message: `the database is unusable: ${e.message}` }))
      )
      yield* output.stdout(json ? reportJson(report) : reportText(report))
      return report.failures.length > 0 ? 1 : 0
    })
}
