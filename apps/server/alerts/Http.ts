/**
 * Handlers of AlertsApi: the caller's team's alerts, a page at a time. The cursor is opaque
 * (core/paging.ts, over the last alert's opening time and id); a cursor that does not decode is a 400
 * that does not quote it.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { type Alert, Alerts } from "@wearflow/core/alerts"
import { InvalidRequest, unavailable, within } from "@wearflow/core/http"
import { decodeCursor, encodeCursor, isUuidText } from "@wearflow/core/paging"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Effect, Either, Layer } from "effect"
import { CurrentTeam, WearflowApi } from "../Api.ts"

/** The cursor after `next`: core's opaque page cursor over (opening time, id). */
const encodeAlertCursor = (next: { readonly openedAt: Date; readonly id: string }) => encodeCursor([next.openedAt.toISOString(), next.id])

const decodeAlertCursor = (cursor: string) =>
  Either.match(decodeCursor(cursor, 2), {
    onLeft: () => undefined,
    onRight: ([at, id]) => {
      const openedAt = new Date(at!)
      return isUuidText(id!) && !Number.isNaN(openedAt.getTime()) ? { openedAt, id: id! } : undefined
    }
  })

const iso = (date: Date | null) => (date === null ? null : date.toISOString())

const view = (a: Alert) => ({
  ...a,
  since: a.since.toISOString(),
  last_data_at: iso(a.last_data_at),
  opened_at: a.opened_at.toISOString(),
  cleared_at: iso(a.cleared_at)
})

/** A page of the alerts `scope` selects. */
const listPage = (
  alerts: Alerts,
  scope: Parameters<Alerts["list"]>[0]["scope"],
  urlParams: { readonly status?: "open" | "cleared" | "all" | undefined; readonly limit?: number | undefined; readonly cursor?: string | undefined }
) =>
  Effect.gen(function* () {
    const after = urlParams.cursor === undefined ? undefined : decodeAlertCursor(urlParams.cursor)
    if (urlParams.cursor !== undefined && after === undefined) return yield* Effect.fail(new InvalidRequest({ message: "cursor is not valid" }))
    const page = yield* alerts.list({ scope, status: urlParams.status ?? "open", limit: urlParams.limit ?? 50, after })
    return { data: page.alerts.map(view), next_cursor: page.next ? encodeAlertCursor(page.next) : null }
  }).pipe(Effect.catchTag("SqlError", () => Effect.fail(unavailable())))

export const AlertsLive = HttpApiBuilder.group(WearflowApi, "alerts", (handlers) =>
  Effect.gen(function* () {
    const alerts = yield* Alerts
    const deadline = within(yield* DatabaseWait)
    // Team keys see their team's alerts only; provider-wide ones are the admin listing's.
    return handlers.handle("list", ({ urlParams }) =>
      Effect.flatMap(CurrentTeam, ({ teamId }) => listPage(alerts, { _tag: "Team", teamId }, urlParams)).pipe(deadline))
  })
).pipe(Layer.provide(Alerts.Default))

export const AdminAlertsLive = HttpApiBuilder.group(WearflowApi, "adminAlerts", (handlers) =>
  Effect.gen(function* () {
    const alerts = yield* Alerts
    const deadline = within(yield* DatabaseWait)
    return handlers.handle("list", ({ urlParams }) => listPage(alerts, { _tag: "All" }, urlParams).pipe(deadline))
  })
).pipe(Layer.provide(Alerts.Default))
