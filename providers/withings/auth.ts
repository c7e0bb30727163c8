/** STUB — replaced by the auth work: Withings' OAuth 2.0 through core's OAuth module, and the signed revoke. */
import type { HttpClient } from "@effect/platform"
import { AuthError, type ProviderAuth } from "@wearflow/core/provider"
import { Effect } from "effect"
import type { Call } from "./rpc.ts"
import type { WithingsConfig } from "./config.ts"

/** The one connect flow Withings offers. */
export const OAUTH2 = "oauth2"

export const makeAuth = (_client: HttpClient.HttpClient, _config: WithingsConfig, _call: Call): ProviderAuth => {
  const todo = Effect.fail(new AuthError({ message: "not built yet", reason: "misconfigured" }))
  return { flows: [OAUTH2], begin: () => todo, complete: () => todo, refresh: () => todo, deregister: () => todo }
}
