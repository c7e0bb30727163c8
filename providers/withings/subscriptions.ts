/** STUB — replaced by the notification work: a connection's notification subscriptions, per appli its scopes allow. */
import { Effect } from "effect"
import type { Call } from "./rpc.ts"
import type { WithingsConfig } from "./config.ts"
import type { SubscriptionUpkeep } from "./sync.ts"

export const makeSubscriptions = (_call: Call, _config: WithingsConfig): SubscriptionUpkeep => ({ ensure: () => Effect.void })
