/** STUB — replaced by the sync work: polling what changed since a connection's cursor. */
import type { Credentials, ProviderSync } from "@wearflow/core/provider"
import { Effect } from "effect"
import type { Call, WithingsError } from "./rpc.ts"
import type { WithingsConfig } from "./config.ts"

/** What the poll asks of the notification side: the connection's subscriptions made right. */
export interface SubscriptionUpkeep {
  readonly ensure: (credentials: Credentials, userid: string) => Effect.Effect<void, WithingsError>
}

export const makeSync = (_call: Call, config: WithingsConfig, _subscriptions: SubscriptionUpkeep): ProviderSync => ({
  interval: config.sync.interval,
  poll: () => Effect.succeed({ _tag: "Unavailable", message: "not built yet" })
})
