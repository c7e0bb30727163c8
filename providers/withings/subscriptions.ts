/**
 * A connection's notification subscriptions. Withings' are per user and per category
 * (`appli`), made with the user's token, and Withings checks our callback URL (HEAD) when one
 * is made. `ensure` lists the user's subscriptions, subscribes each configured appli the
 * connection's scopes allow that is not subscribed at our callback URL, and revokes ours that
 * are no longer wanted: at an older callback URL of ours (the secret was rotated) or for an
 * appli no longer configured or allowed. The poll calls it now and then (sync.ts); errors are
 * WithingsErrors for the poll to weigh. Nothing here logs a user's id or the callback URL.
 */
import type { Credentials } from "@wearflow/core/provider"
import { Effect, Metric, Option, Schema } from "effect"
import { APPLI_SCOPES, CALLBACK_PATH, callbackUrlOf, type WithingsConfig } from "./config.ts"
import { type Call, WithingsError } from "./rpc.ts"
import { allows, stateOf } from "./state.ts"
import type { SubscriptionUpkeep } from "./sync.ts"

/** The upkeep the poll needs, and the removal of every subscription of ours (disconnect, tests). */
export interface WithingsSubscriptions extends SubscriptionUpkeep {
  readonly revoke: (credentials: Credentials) => Effect.Effect<void, WithingsError>
}

const NOTIFY_PATH = "/notify"

/** Shown in Withings' list of the user's subscriptions. */
const COMMENT = "Wearflow"

const subscribed = Metric.counter("wearflow_withings_subscriptions_created_total")
const revoked = Metric.counter("wearflow_withings_subscriptions_revoked_total")

const Profile = Schema.Struct({ appli: Schema.Number, callbackurl: Schema.String })
type Profile = typeof Profile.Type
const Listed = Schema.Struct({ profiles: Schema.optionalWith(Schema.Array(Profile), { default: () => [] }) })
const decodeListed = Schema.decodeUnknown(Listed)

/** The user's token, and their id for the per-user budget. */
interface Caller {
  readonly credentials: Credentials
  readonly userid: string | undefined
}

export const makeSubscriptions = (call: Call, config: WithingsConfig): WithingsSubscriptions => {
  const callbackUrl = callbackUrlOf(config)
  /** Every callback URL of this server starts so, whatever its secret. */
  const ourBase = Option.map(config.notify.publicUrl, (base) => `${base}${CALLBACK_PATH}/`)
  const isOurs = (profile: Profile) => Option.isSome(ourBase) && profile.callbackurl.startsWith(ourBase.value)

  let warned = false
  const notConfigured = Effect.suspend(() => {
    if (warned) return Effect.void
    warned = true
    return Effect.logWarning("Withings notifications are not subscribed: WITHINGS_NOTIFY_SECRET or WEARFLOW_PUBLIC_URL is not set; connections are polled only")
  })

  const rpc = ({ credentials, userid }: Caller, action: string, fields?: Readonly<Record<string, string | number>>) =>
    call({ path: NOTIFY_PATH, action, fields, bearer: credentials.bearer, user: userid })

  const list = (caller: Caller) =>
    rpc(caller, "list").pipe(
      Effect.flatMap((body) => decodeListed(body)),
      Effect.map((listed) => listed.profiles),
      Effect.catchTag("ParseError", () => Effect.fail(new WithingsError({ outcome: "unavailable", message: "Withings' answer to list is not what its API documents" })))
    )

  /** Subscribes one appli; false when the grant does not cover it (unauthorized): skipped, not an error. */
  const subscribe = (caller: Caller, url: string, appli: number) =>
    rpc(caller, "subscribe", { callbackurl: url, appli, comment: COMMENT }).pipe(
      Effect.as(true),
      Effect.tap(() => Metric.increment(subscribed)),
      Effect.catchIf((e) => e.outcome === "unauthorized", () => Effect.succeed(false))
    )

  /** Revokes one subscription; one Withings no longer knows (status 503, `invalid`) is gone already. */
  const revokeOne = (caller: Caller, profile: Profile) =>
    rpc(caller, "revoke", { callbackurl: profile.callbackurl, appli: profile.appli }).pipe(
      Effect.tap(() => Metric.increment(revoked)),
      Effect.catchIf((e) => e.outcome === "invalid", () => Effect.void)
    )

  const ensure = (credentials: Credentials, userid: string): Effect.Effect<void, WithingsError> => {
    if (Option.isNone(callbackUrl)) return notConfigured
    const url = callbackUrl.value
    const caller = { credentials, userid }
    return Effect.gen(function* () {
      const profiles = yield* list(caller)
      const wanted = config.notify.applis.filter((appli) => allows(credentials, APPLI_SCOPES[appli] ?? null))
      let created = 0
      let skipped = 0
      for (const appli of wanted) {
        if (profiles.some((profile) => profile.callbackurl === url && profile.appli === appli)) continue
        if (yield* subscribe(caller, url, appli)) created++
        else skipped++
      }
      // After the new ones exist, so a rotated secret leaves no gap.
      const unwanted = profiles.filter((profile) => isOurs(profile) && (profile.callbackurl !== url || !wanted.includes(profile.appli)))
      for (const profile of unwanted) yield* revokeOne(caller, profile)
      yield* Effect.logDebug("Withings notification subscriptions checked").pipe(Effect.annotateLogs({ created, revoked: unwanted.length, not_granted: skipped }))
    }).pipe(Effect.annotateLogs("plugin", "withings"))
  }

  const revoke = (credentials: Credentials): Effect.Effect<void, WithingsError> =>
    Effect.gen(function* () {
      if (Option.isNone(ourBase)) return
      const caller = { credentials, userid: stateOf(credentials)?.userid }
      for (const profile of (yield* list(caller)).filter(isOurs)) yield* revokeOne(caller, profile)
    })

  return { ensure, revoke }
}
