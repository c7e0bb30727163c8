/**
 * `/dashboard`: the operator's page, served by the server itself. One HTML page, one style
 * sheet and one script (app.ts, stripped of its types once at start by Bun's transpiler: no
 * build step, no framework). The page signs in with an API key it keeps in sessionStorage and
 * calls the JSON API with `x-api-key` — no cookie, so no request forgery to guard against — and
 * a strict Content-Security-Policy allows only its own script, style and API calls.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { ApiId, unavailable, within } from "@wearflow/core/http"
import { IngestBacklog } from "@wearflow/core/pipeline/inbox"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { DashboardApi } from "./Api.ts"

const DashboardHttpApi = HttpApi.make(ApiId).add(DashboardApi)

export const DashboardLive = HttpApiBuilder.group(DashboardHttpApi, "dashboard", (handlers) =>
  Effect.gen(function* () {
    const backlog = yield* IngestBacklog
    const deadline = within(yield* DatabaseWait)
    return handlers.handle("ingest", () =>
      backlog.pipe(
        Effect.map((b) => ({
          pending_jobs: b.pending,
          oldest_job_age_seconds: Math.round(b.oldestSeconds),
          seconds_since_completion: b.sinceCompletionSeconds === undefined ? null : Math.round(b.sinceCompletionSeconds)
        })),
        Effect.mapError(() => unavailable()),
        deadline
      ))
  })
)

/** Nothing but the page's own files and its own API; no inline script or style, no framing. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

const headers = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cache-control": "no-store"
}

const file = (name: string) => readFileSync(new URL(name, import.meta.url), "utf8")

export const DashboardRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const page = file("page.html")
    const style = file("app.css")
    const script = new Bun.Transpiler({ loader: "ts", target: "browser" }).transformSync(file("app.ts"))
    const serve = (body: string, contentType: string) => Effect.succeed(HttpServerResponse.text(body, { contentType, headers }))
    yield* router.get("/dashboard", serve(page, "text/html; charset=utf-8"))
    yield* router.get("/dashboard/app.css", serve(style, "text/css; charset=utf-8"))
    yield* router.get("/dashboard/app.js", serve(script, "text/javascript; charset=utf-8"))
  })
)
