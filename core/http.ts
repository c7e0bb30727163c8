/**
 * What every HTTP contract shares: the API id all groups are built against (so plugin groups
 * and the app's groups form one HttpApi), and the wire errors. Error bodies carry a message
 * that names what is wrong, never the request's values.
 */
import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

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
