/**
 * HttpApi answers a request it cannot decode with a 400 whose body quotes the offending
 * input. Those values may be health data, so decode failures are answered with a body that
 * names the fields and the kind of problem only. (An API-level middleware: it sees the
 * failure before HttpApi encodes it; server middleware runs after the response is written.)
 */
import { HttpApiBuilder, HttpApiError, type HttpApp, HttpServerError, HttpServerResponse } from "@effect/platform"
import { describeIssues } from "@wearflow/core/normalizer"
import { Effect, Option } from "effect"

const isDecodeError = (error: unknown): error is HttpApiError.HttpApiDecodeError =>
  error instanceof HttpApiError.HttpApiDecodeError

/** The body could not be read or parsed (e.g. malformed JSON). */
const isUnreadableBody = (error: unknown): error is HttpServerError.RequestError =>
  error instanceof HttpServerError.RequestError && error.reason === "Decode"

const invalid = (message: string) => Effect.succeed(HttpServerResponse.unsafeJson({ _tag: "InvalidRequest", message }, { status: 400 }))

export const layerWithoutEchoedInput = HttpApiBuilder.middleware((app) =>
  // The API's app is typed as never failing, but endpoint errors do flow through here.
  (app as HttpApp.Default<unknown>).pipe(
    Effect.catchIf(isDecodeError, (error) => invalid(`invalid request: ${describeIssues(error.issues, "body")}`)),
    // HttpApi turns an unparsable JSON body into a defect; its message may quote the input.
    Effect.catchSomeDefect((defect) =>
      isUnreadableBody(defect) ? Option.some(invalid("invalid request: the body is not valid JSON")) : Option.none()
    )
  ) as HttpApp.Default<never>
)
