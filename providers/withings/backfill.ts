/** STUB — replaced by the sync work: history, fetched by the same code as the poll over a date range. */
import type { ProviderBackfill } from "@wearflow/core/provider"
import { Effect } from "effect"
import type { Call } from "./rpc.ts"
import type { WithingsConfig } from "./config.ts"

export const makeBackfill = (_call: Call, _config: WithingsConfig): ProviderBackfill => ({
  types: [],
  request: () => Effect.succeed({ _tag: "Unavailable", message: "not built yet" }),
  itemTime: () => undefined
})
