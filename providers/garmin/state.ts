/**
 * What Garmin keeps per connection besides the OAuth 2.0 tokens core stores: the OAuth 1.0a
 * token and secret of a connection made with OAuth 1.0a, or of one moved to OAuth 2.0, which
 * Garmin honours for 30 days after the exchange (`oauth1ValidUntil`). Core keeps it encrypted
 * and hands it back as `Credentials.state`; this module alone reads it.
 */
import type { Credentials, LegacyCredentialsHook } from "@wearflow/core/provider"
import { Duration, Either, type Redacted, Schema } from "effect"

/** The connect flows: OAuth 2.0 (PKCE), the default, and OAuth 1.0a (three-legged). */
export const OAUTH2 = "oauth2"
export const OAUTH1 = "oauth1"

/** How long Garmin honours an OAuth 1.0a token after its exchange for OAuth 2.0. */
export const OAUTH1_GRACE = Duration.days(30)

const Pair = Schema.Struct({ token: Schema.Redacted(Schema.String), secret: Schema.Redacted(Schema.String) })

export const GarminState = Schema.Struct({
  /** The OAuth 1.0a token and secret. */
  oauth1: Schema.optional(Pair),
  /** Set when the connection moved to OAuth 2.0: the pair signs requests until then. */
  oauth1ValidUntil: Schema.optional(Schema.Date)
})
export type GarminState = typeof GarminState.Type

export interface OAuth1Pair {
  readonly token: Redacted.Redacted<string>
  readonly secret: Redacted.Redacted<string>
}

const decode = Schema.decodeUnknownEither(GarminState)

/** The state as core stores it (JSON data, encrypted by core). */
export const encodeState = (state: GarminState): unknown => Schema.encodeSync(GarminState)(state)

/** A connection's Garmin state; none when it keeps none (or one this version cannot read). */
export const stateOf = (credentials: Pick<Credentials, "state"> | undefined): GarminState =>
  credentials?.state === undefined ? {} : Either.getOrElse(decode(credentials.state), () => ({}))

/** The OAuth 1.0a pair while Garmin honours it: always for an OAuth 1.0a connection, until the grace ends for a moved one. */
export const usableOAuth1 = (credentials: Pick<Credentials, "state"> | undefined, now = Date.now()): OAuth1Pair | undefined => {
  const state = stateOf(credentials)
  if (state.oauth1 === undefined) return undefined
  return state.oauth1ValidUntil === undefined || state.oauth1ValidUntil.getTime() > now ? state.oauth1 : undefined
}

/** Credentials of an OAuth 1.0a connection (no bearer), for calls made while connecting. */
export const oauth1Credentials = (pair: OAuth1Pair): Credentials => ({ bearer: undefined, state: encodeState({ oauth1: pair }) })

/**
 * OAuth 1.0a notifications name the user by their token: the token is the connection's alias
 * while the state holds it (after the move too, so notifications of that era keep routing).
 */
export const aliasesOf = (credentials: Credentials): ReadonlyArray<Redacted.Redacted<string>> => {
  const { oauth1 } = stateOf(credentials)
  return oauth1 === undefined ? [] : [oauth1.token]
}

/** Garmin's state from the columns core kept before providers owned their state. */
export const legacyState: LegacyCredentialsHook = (legacy) => {
  if (legacy.pair !== undefined) return { state: encodeState({ oauth1: legacy.pair }), flow: OAUTH1 }
  if (legacy.previous !== undefined) {
    const { token, secret, validUntil } = legacy.previous
    // A moved connection without an end date is past its grace (the exchange always set one).
    return { state: encodeState({ oauth1: { token, secret }, oauth1ValidUntil: validUntil ?? new Date(0) }), flow: legacy.flow }
  }
  return { state: undefined, flow: legacy.flow }
}
