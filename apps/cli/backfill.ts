/**
 * `wearflow backfill status | start | cancel`. Status reads the database directly, so it works
 * while the server is down; start and cancel ask the running server, which owns the chains.
 * The API key travels in a header only: no message ever shows it.
 */
import { BackfillStatus } from "@wearflow/core/backfill/status"
import type { BackfillView } from "@wearflow/core/backfill/status"
import type { Plugin } from "@wearflow/core/plugin"
import { Effect, Option, Redacted, Schema } from "effect"
import { BackfillCancelled, BackfillConflict, BackfillStarted } from "../server/Api.ts"
import { cancelledText, conflictText, ended, printable, startedText, statusJson, statusText, watchLine } from "./backfill-report.ts"
import { EnvironmentError, loadConfig, serverEndpoint, type ServerEndpoint, statusLayer } from "./environment.ts"
import { fail, write } from "./io.ts"

const WATCH_INTERVAL = "1 second"
/** Time to connect and to receive the whole answer. */
const REQUEST_TIMEOUT_MS = 30_000

// ---------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------

/**
 * What `--watch` shows while it waits, on stderr. On a terminal the whole view is redrawn in
 * place; anywhere else (a log file, CI) one summary line each time it changes.
 */
const makeWatchView = (stream: NodeJS.WriteStream) => {
  const tty = stream.isTTY === true
  let drawn = 0
  let last: string | undefined
  const erase = () => (drawn > 0 ? `\x1b[${drawn}A\r\x1b[J` : "")
  return {
    show: (views: ReadonlyArray<BackfillView>) => {
      if (!tty) {
        const line = watchLine(views)
        if (line !== last) stream.write(line + "\n")
        last = line
        return
      }
      // Lines wider than the terminal would wrap, and the redraw would miscount them.
      const width = Math.max(20, (stream.columns || 120) - 1)
      const lines = [...statusText(views).trimEnd().split("\n"), "", `${watchLine(views)}  (updated ${new Date().toISOString().slice(11, 19)} UTC; Ctrl-C stops watching, not the backfills)`]
        .map((line) => (line.length > width ? line.slice(0, width - 1) + "…" : line))
      stream.write(erase() + lines.join("\n") + "\n")
      drawn = lines.length
    },
    /** Removes the live view, so the final one on stdout is not shown twice on a terminal. */
    clear: () => {
      if (tty && drawn > 0) stream.write(erase())
      drawn = 0
    }
  }
}

const describeFilter = (options: { readonly userId: string | undefined; readonly provider: string | undefined }) =>
  [options.userId && `user ${options.userId}`, options.provider && `provider ${options.provider}`].filter(Boolean).join(", ")

/** `wearflow backfill status`: exit 0 (also when there is nothing to show). */
export const status = (options: {
  readonly userId: string | undefined
  readonly provider: string | undefined
  readonly json: boolean
  readonly watch: boolean
}, plugins: ReadonlyArray<Plugin>) =>
  Effect.gen(function* () {
    const config = yield* loadConfig
    return yield* Effect.gen(function* () {
      const backfills = yield* BackfillStatus
      const read = backfills.status(undefined, { userId: options.userId, provider: options.provider })
      let views = yield* read
      if (options.watch && views.length > 0 && !views.every(ended)) {
        const live = makeWatchView(process.stderr)
        yield* Effect.gen(function* () {
          while (!views.every(ended)) {
            live.show(views)
            yield* Effect.sleep(WATCH_INTERVAL)
            views = yield* read
          }
        }).pipe(Effect.ensuring(Effect.sync(live.clear)))
      }
      if (views.length === 0) {
        const filter = describeFilter(options)
        yield* fail(`no backfills found${filter ? ` (${filter})` : ""}`)
        if (options.json) yield* write(process.stdout, statusJson(views))
        return 0
      }
      yield* write(process.stdout, options.json ? statusJson(views) : statusText(views))
      return 0
    }).pipe(
      Effect.provide(statusLayer(config, plugins)),
      Effect.catchTag("SqlError", (e) => new EnvironmentError({ message: `the database is unusable: ${e.message}` }))
    )
  })

// ---------------------------------------------------------------------------
// start and cancel: the running server's API
// ---------------------------------------------------------------------------

interface Answer {
  readonly status: number
  /** The parsed JSON body; undefined when there was none or it was not JSON. */
  readonly body: unknown
}

/** The URL as messages show it: no credentials, no query. */
const shownUrl = (url: string) => {
  const parsed = new URL(url)
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`.replace(/\/+$/, "")
}

const reason = (cause: unknown): string => {
  if (!(cause instanceof Error)) return ""
  const code = (cause as { code?: unknown }).code
  if (cause.name === "TimeoutError") return `: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
  return typeof code === "string" && code !== "" ? `: ${code}` : cause.message ? `: ${printable(cause.message)}` : ""
}

/** One request with the API key; redirects are not followed (the key would go along). */
const call = (endpoint: ServerEndpoint, method: "POST" | "DELETE", route: string, body?: unknown) =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(endpoint.baseUrl + route, {
        method,
        redirect: "manual",
        headers: {
          "x-api-key": Redacted.value(endpoint.apiKey),
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)])
      })
      const text = await response.text()
      let parsed: unknown
      try {
        parsed = text === "" ? undefined : JSON.parse(text)
      } catch {
        parsed = undefined
      }
      return { status: response.status, body: parsed } satisfies Answer
    },
    catch: (cause) =>
      new EnvironmentError({
        message: `cannot reach the Wearflow server at ${shownUrl(endpoint.baseUrl)}${reason(cause)} (is it running? WEARFLOW_SERVER_URL says where it listens)`
      })
  })

const Message = Schema.Struct({ message: Schema.String })

const messageOf = (answer: Answer) => Option.getOrUndefined(Option.map(Schema.decodeUnknownOption(Message)(answer.body), (m) => printable(m.message)))

/** An answer the command has no use for: exit 2 for a refused request, else 3. */
const unexpected = (endpoint: ServerEndpoint, method: string, route: string, answer: Answer) => {
  const message = messageOf(answer)
  switch (answer.status) {
    case 400:
      return fail(`the server refused the request: ${message ?? "invalid request"}`).pipe(Effect.as(2))
    case 401:
      return new EnvironmentError({
        message: `the server at ${shownUrl(endpoint.baseUrl)} refused the API key (401): set WEARFLOW_API_KEY, or WEARFLOW_DATA_DIR, as the server has them`
      })
    case 503:
      return new EnvironmentError({ message: `the server cannot use its database right now (503)${message ? `: ${message}` : ""}; nothing was changed, try again` })
    default:
      return new EnvironmentError({
        message: `unexpected answer from ${shownUrl(endpoint.baseUrl)}: ${answer.status} to ${method} ${route}${message ? `: ${message}` : ""} (is WEARFLOW_SERVER_URL a Wearflow server?)`
      })
  }
}

/** The body as the contract describes it, or an EnvironmentError naming what came instead. */
const decode = <A, I>(schema: Schema.Schema<A, I>, endpoint: ServerEndpoint, answer: Answer) =>
  Schema.decodeUnknown(schema)(answer.body).pipe(
    Effect.mapError(() => new EnvironmentError({ message: `unexpected ${answer.status} answer from ${shownUrl(endpoint.baseUrl)}: not the body Wearflow sends` }))
  )

const json = (body: unknown) => JSON.stringify(body, null, 2) + "\n"

const route = (userId: string, provider: string) => `/v2/user/${encodeURIComponent(userId)}/backfill/${encodeURIComponent(provider)}`

/** A 404 with Wearflow's message (the user, the connection or the type is unknown): exit 1. */
const notFound = (endpoint: ServerEndpoint, method: string, path: string, answer: Answer, options: { readonly json: boolean }) => {
  const message = messageOf(answer)
  if (message === undefined) return unexpected(endpoint, method, path, answer)
  return (options.json ? write(process.stdout, json(answer.body)) : Effect.void).pipe(Effect.zipRight(fail(message)), Effect.as(1))
}

/** `wearflow backfill start`: 0 scheduled, 1 refused (409) or not found (404). */
export const start = (options: {
  readonly userId: string
  readonly provider: string
  readonly days: number | undefined
  readonly types: ReadonlyArray<string> | undefined
  readonly json: boolean
}) =>
  Effect.gen(function* () {
    const endpoint = yield* Effect.flatMap(loadConfig, serverEndpoint)
    const path = route(options.userId, options.provider)
    const answer = yield* call(endpoint, "POST", path, {
      ...(options.days === undefined ? {} : { days: options.days }),
      ...(options.types === undefined ? {} : { types: options.types })
    })
    switch (answer.status) {
      case 202: {
        const started = yield* decode(BackfillStarted, endpoint, answer)
        yield* write(process.stdout, options.json ? json(answer.body) : startedText(options.provider, started))
        return 0
      }
      case 409: {
        const conflict = yield* decode(BackfillConflict, endpoint, answer)
        yield* write(process.stdout, options.json ? json(answer.body) : conflictText(conflict))
        return 1
      }
      case 404:
        return yield* notFound(endpoint, "POST", path, answer, options)
      default:
        return yield* unexpected(endpoint, "POST", path, answer)
    }
  })

/** `wearflow backfill cancel`: 0 cancelled, 1 nothing was running (404). */
export const cancel = (options: { readonly userId: string; readonly provider: string }) =>
  Effect.gen(function* () {
    const endpoint = yield* Effect.flatMap(loadConfig, serverEndpoint)
    const path = route(options.userId, options.provider)
    const answer = yield* call(endpoint, "DELETE", path)
    switch (answer.status) {
      case 200: {
        const cancelled = yield* decode(BackfillCancelled, endpoint, answer)
        yield* write(process.stdout, cancelledText(options.provider, options.userId, cancelled))
        return 0
      }
      case 404:
        return yield* notFound(endpoint, "DELETE", path, answer, { json: false })
      default:
        return yield* unexpected(endpoint, "DELETE", path, answer)
    }
  })
