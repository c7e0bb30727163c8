/** STUB — replaced by the notification work: the callback's handlers. */
import { HttpApi, HttpApiBuilder } from "@effect/platform"
import { ApiId } from "@wearflow/core/http"
import { Effect } from "effect"
import { WithingsApi } from "./Api.ts"

const WithingsHttpApi = HttpApi.make(ApiId).add(WithingsApi)

export const layer = HttpApiBuilder.group(WithingsHttpApi, "withings", (handlers) => Effect.succeed(handlers))
