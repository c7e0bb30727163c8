/**
 * The API-key check behind `ApiKeyAuth` (core/http.ts): the key names a team, or the request
 * is refused. A database that does not answer within WEARFLOW_DATABASE_WAIT is a 503, not a
 * hung request. The app's groups and plugins' groups share it.
 */
import { Effect, Layer, Option } from "effect"
import { Accounts } from "./accounts.ts"
import { ApiKeyAuth, unavailable, Unauthorized, within } from "../http.ts"
import { DatabaseWait } from "../storage/database.ts"

export const layer = Layer.effect(
  ApiKeyAuth,
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const deadline = within(yield* DatabaseWait)
    return {
      apiKey: (key) =>
        accounts.teamForApiKey(key).pipe(
          Effect.mapError(unavailable),
          deadline,
          Effect.flatMap(
            Option.match({
              onNone: () => Effect.fail(new Unauthorized({ message: "missing or unknown x-api-key" })),
              onSome: (teamId) => Effect.succeed({ teamId })
            })
          )
        )
    }
  })
)

