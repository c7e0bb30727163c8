/** Handlers of the introspection group. */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { CurrentTeam, InvalidRequest, unavailable, within } from "@wearflow/core/http"
import { ResourceIntrospection } from "@wearflow/core/introspect"
import { decodeCursor } from "@wearflow/core/paging"
import { isUuid } from "@wearflow/core/tenancy/accounts"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Effect } from "effect"
import { WearflowApi } from "../Api.ts"
import { RESOURCES_PAGE } from "./Api.ts"

export const IntrospectLive = HttpApiBuilder.group(WearflowApi, "introspect", (handlers) =>
  Effect.gen(function* () {
    const introspection = yield* ResourceIntrospection
    const deadline = within(yield* DatabaseWait)
    return handlers.handle("resources", ({ urlParams }) =>
      Effect.gen(function* () {
        const { teamId } = yield* CurrentTeam
        const after = urlParams.cursor === undefined
          ? undefined
          : (yield* Effect.mapError(decodeCursor(urlParams.cursor, 1), (e) => new InvalidRequest({ message: e.message })))[0]
        if (after !== undefined && !isUuid(after)) return yield* new InvalidRequest({ message: "cursor is not one this API gave out" })
        // An id that cannot be a user's matches none (and never reaches a uuid column).
        if (urlParams.user_id !== undefined && !isUuid(urlParams.user_id)) return { data: [], next_cursor: null }
        const page = yield* introspection.resources(teamId, { userId: urlParams.user_id, provider: urlParams.provider }, {
          limit: urlParams.limit ?? RESOURCES_PAGE.default,
          after
        })
        return { data: page.data, next_cursor: page.next }
      }).pipe(Effect.catchTags({ SqlError: () => Effect.fail(unavailable()) }), deadline))
  })
)
