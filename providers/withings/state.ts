/**
 * What the plugin keeps per connection in core's encrypted provider state: the Withings user
 * id (notifications carry only it) and the scopes the user granted, which decide what is
 * polled and which notification categories are subscribed. Credentials carry no scopes of
 * their own, so they travel here.
 */
import type { Credentials } from "@wearflow/core/provider"
import { Option, Schema } from "effect"

export const WithingsState = Schema.Struct({
  userid: Schema.String,
  /** The scopes Withings' token answer listed; absent when unknown (tokens linked without them). */
  scopes: Schema.optional(Schema.Array(Schema.String))
})
export type WithingsState = typeof WithingsState.Type

const decode = Schema.decodeUnknownOption(WithingsState)

/** The connection's state, when it has one the plugin wrote. */
export const stateOf = (credentials: Credentials): WithingsState | undefined => Option.getOrUndefined(decode(credentials.state))

/** Whether the connection may use `scope`: granted, or unknown (then Withings' answer decides). */
export const allows = (credentials: Credentials, scope: string | null): boolean => {
  if (scope === null) return true
  const scopes = stateOf(credentials)?.scopes
  return scopes === undefined || scopes.includes(scope)
}
