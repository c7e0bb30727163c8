/** The migration report for stdout: a summary and a table of failures, or JSON. */
import type { MigrationReport } from "@wearflow/core/connections"

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
