/**
 * HttpApi answers a request it cannot decode with a 400 whose body quotes the offending
 * input. Those values may be health data, so decode failures are answered with a body that
 * names the fields and the kind of problem only. (An API-level middleware: it sees the
 * failure before HttpApi encodes it; server middleware runs after the response is written.)
 */
import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiError from "@effect/platform/HttpApiError"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { RETRY_AFTER_SECONDS, ServiceUnavailable } from "@wearflow/core/http"
import { describeIssues } from "@wearflow/core/normalizer"
import { Effect, Option, SchemaAST } from "effect"

const isDecodeError = (error: unknown): error is HttpApiError.HttpApiDecodeError =>
  error instanceof HttpApiError.HttpApiDecodeError

/** The body could not be read or parsed (e.g. malformed JSON). */
const isUnreadableBody = (error: unknown): error is HttpServerError.RequestError =>
  error instanceof HttpServerError.RequestError && error.reason === "Decode"

/** Every field name the API's request schemas declare (plugins' groups included). */
const declaredFields = (api: HttpApi.HttpApi.Any): ReadonlySet<string> => {
  const names = new Set<string>()
  const seen = new Set<SchemaAST.AST>()
  const walk = (ast: SchemaAST.AST): void => {
    if (seen.has(ast)) return
    seen.add(ast)
    switch (ast._tag) {
      case "TypeLiteral":
        for (const property of ast.propertySignatures) {
          if (typeof property.name === "string") names.add(property.name)
          walk(property.type)
        }
        for (const index of ast.indexSignatures) walk(index.type)
        return
      case "Union":
        return ast.types.forEach(walk)
      case "TupleType":
        ast.elements.forEach((element) => walk(element.type))
        return ast.rest.forEach((rest) => walk(rest.type))
      case "Refinement":
        return walk(ast.from)
      case "Transformation":
        walk(ast.from)
        return walk(ast.to)
      case "Suspend":
        return walk(ast.f())
      default:
        return
    }
  }
  const groups: ReadonlyArray<HttpApiGroup.HttpApiGroup.AnyWithProps> = Object.values((api as unknown as { groups: object }).groups)
  for (const group of groups) {
    for (const endpoint of Object.values(group.endpoints) as ReadonlyArray<HttpApiEndpoint.HttpApiEndpoint.AnyWithProps>) {
      for (const schema of [endpoint.pathSchema, endpoint.urlParamsSchema, endpoint.payloadSchema, endpoint.headersSchema]) {
        if (Option.isSome(schema)) walk(schema.value.ast)
      }
    }
  }
  return names
}

/**
 * An issue's path, with whatever the caller named (a record's keys, e.g. a custom header's
 * name) replaced: only the API's own field names and positions are echoed.
 */
const pathOf = (fields: ReadonlySet<string>) => (path: ReadonlyArray<PropertyKey>) =>
  path.map((key) => (typeof key === "number" ? key : typeof key === "string" && fields.has(key) ? key : "<key>"))

const invalid = (message: string) => Effect.succeed(HttpServerResponse.unsafeJson({ _tag: "InvalidRequest", message }, { status: 400 }))

export const layerWithoutEchoedInput = (api: HttpApi.HttpApi.Any) => HttpApiBuilder.middleware(Effect.sync(() => {
  const echoable = pathOf(declaredFields(api))
  return (app: HttpApp.Default) =>
    // The API's app is typed as never failing, but endpoint errors do flow through here.
    (app as HttpApp.Default<unknown>).pipe(
      Effect.catchIf(isDecodeError, (error) =>
        invalid(`invalid request: ${describeIssues(error.issues.map((issue) => ({ _tag: issue._tag, path: echoable(issue.path) })), "body")}`)),
      // HttpApi turns an unparsable JSON body into a defect; its message may quote the input.
      Effect.catchSomeDefect((defect) =>
        isUnreadableBody(defect) ? Option.some(invalid("invalid request: the body is not valid JSON")) : Option.none()
      )
    ) as HttpApp.Default<never>
}))

const isUnavailable = (error: unknown): error is ServiceUnavailable => error instanceof ServiceUnavailable

const withRetryAfter = (response: HttpServerResponse.HttpServerResponse) =>
  response.status === 503 && response.headers["retry-after"] === undefined
    ? HttpServerResponse.setHeader(response, "retry-after", String(RETRY_AFTER_SECONDS))
    : response

/**
 * Every 503 — an endpoint's ServiceUnavailable (storage down, a request that outwaited the
 * database) or a page or check answered 503 — tells the caller when to retry (`Retry-After`).
 */
export const layerRetryAfter = HttpApiBuilder.middleware((app) =>
  (app as HttpApp.Default<unknown>).pipe(
    Effect.catchIf(isUnavailable, (error) =>
      Effect.succeed(HttpServerResponse.unsafeJson({ _tag: error._tag, message: error.message, retryable: true }, { status: 503 }))),
    Effect.map(withRetryAfter)
  ) as HttpApp.Default<never>
)
