/**
 * What every HTTP contract shares: the API id all groups are built against (so plugin groups
 * and the app's groups form one HttpApi), and the wire errors. Error bodies carry a message
 * that names what is wrong, never the request's values.
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import { Context, Duration, Effect, Schema } from "effect"

/** Printable text of 1..`max` characters: no control characters (Postgres refuses NUL), no lone surrogates. */
export const PrintableId = (max: number) =>
  Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(max),
    Schema.pattern(/^[^\u0000-\u001f\u007f]+$/),
    Schema.filter((s) => s.isWellFormed(), { message: () => "must be well-formed text" })
  )

/** The id of Wearflow's HttpApi; plugins build their handler layers against an API of this id. */
export const ApiId = "wearflow"

export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400, description: "The request is malformed; the message says how (never echoing values)." })
) {}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** The key is known but may not do this: a read-only key writing, a team key on an admin route. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {}

export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String, user_id: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** Storage is unavailable; nothing was accepted and the caller should retry. */
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { message: Schema.String, retryable: Schema.Literal(true) },
  HttpApiSchema.annotations({ status: 503 })
) {}

/**
 * The team the caller's API key belongs to; `readOnly` when the key may only read (a route that
 * answers with a secret refuses it: reading a secret is more than reading data).
 */
export class CurrentTeam extends Context.Tag("wearflow/CurrentTeam")<CurrentTeam, { readonly teamId: string; readonly readOnly?: boolean }>() {}

const apiKeyHeader = HttpApiSecurity.apiKey({ in: "header", key: "x-api-key" })

/**
 * The API-key security of every `/v2` team group but the connect flow's pages; plugins' groups
 * use it too. Revoked and expired keys are refused (401); read-only keys may only GET and HEAD (403).
 */
export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("ApiKeyAuth", {
  failure: Schema.Union(Unauthorized, Forbidden, ServiceUnavailable),
  provides: CurrentTeam,
  security: { apiKey: apiKeyHeader }
}) {}

/** The admin key a request to an admin route came with: its id and its own team. */
export class CurrentAdmin extends Context.Tag("wearflow/CurrentAdmin")<CurrentAdmin, { readonly keyId: string; readonly teamId: string }>() {}

/**
 * The security of admin routes (teams and their keys): only admin keys pass; a team key is
 * refused with 403, a read-only admin key may only GET and HEAD.
 */
export class AdminKeyAuth extends HttpApiMiddleware.Tag<AdminKeyAuth>()("AdminKeyAuth", {
  failure: Schema.Union(Unauthorized, Forbidden, ServiceUnavailable),
  provides: CurrentAdmin,
  security: { apiKey: apiKeyHeader }
}) {}

/** How soon a caller answered 503 may try again (`Retry-After`, in seconds). */
export const RETRY_AFTER_SECONDS = 5

/**
 * A webhook endpoint the server answers straight from its fetch handler, before the HttpApi
 * router and its middleware: for a provider's hottest POSTs, where that stack costs several
 * times the work itself. `handle` keeps what the HttpApi route would: the same statuses and
 * bodies (a 503 with `Retry-After`), no echo of the request's values, its own log line. The
 * plugin's HttpApi group still declares the endpoint, for the docs and OpenAPI.
 */
export interface RawRoute {
  readonly method: "POST"
  /** An exact path, e.g. `/api/v1/webhooks/acme/push`. */
  readonly path: string
  readonly handle: (request: Request) => Effect.Effect<Response>
}

/** A JSON answer to a raw route's request; a 503 carries `Retry-After`. */
export const rawJson = (body: unknown, status = 200): Response =>
  Response.json(body, status === 503 ? { status, headers: { "retry-after": String(RETRY_AFTER_SECONDS) } } : { status })

export const unavailable = () => new ServiceUnavailable({ message: "storage unavailable; retry later", retryable: true })

/**
 * Bounds a request's work by `wait`: past it, the caller gets a 503 to retry instead of a
 * request that hangs on a frozen or unreachable database. The work is left to end on its own
 * (disconnected): against a frozen database not even a rollback would finish.
 */
export const within = (wait: Duration.DurationInput) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(Effect.disconnect(effect), { duration: wait, onTimeout: unavailable })
