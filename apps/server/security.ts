/** The API-key security every `/v2` group but the connect flow's pages uses. */
import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { ServiceUnavailable, Unauthorized } from "@wearflow/core/http"
import { Context, Schema } from "effect"

/** The team the caller's API key belongs to. */
export class CurrentTeam extends Context.Tag("wearflow/CurrentTeam")<CurrentTeam, { readonly teamId: string }>() {}

export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("ApiKeyAuth", {
  failure: Schema.Union(Unauthorized, ServiceUnavailable),
  provides: CurrentTeam,
  security: { apiKey: HttpApiSecurity.apiKey({ in: "header", key: "x-api-key" }) }
}) {}
