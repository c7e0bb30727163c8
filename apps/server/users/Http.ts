/** Handlers of the users list, deletion and undo (users/Api.ts). */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { interruptChain } from "@wearflow/core/backfill/backfills"
import { Links } from "@wearflow/core/connections/links"
import { UserDeletion } from "@wearflow/core/erasure/deletion"
import { ApiId, Conflict, CurrentTeam, InvalidRequest, NotFound, ServiceUnavailable, unavailable, within } from "@wearflow/core/http"
import { DatabaseWait } from "@wearflow/core/storage/database"
import { Accounts, isUuid, type User, type UserPosition } from "@wearflow/core/tenancy/accounts"
import { Duration, Effect } from "effect"
import { PAGE_DEFAULT, UserLifecycleApi } from "./Api.ts"

/** The longest a provider call inside a request may take (the providers' own request timeout). */
const PROVIDER_WAIT = Duration.seconds(30)

const notFound = () => new NotFound({ message: "user not found" })
/** A deleted user, until erased: not found, and how to bring it back. */
export const deletedNotFound = () =>
  new NotFound({ message: "user deleted; POST /v2/user/undo_delete restores it until its data is erased" })

/** The cursor is opaque to callers: where the previous page ended, base64url. */
const encodeCursor = (position: UserPosition) => Buffer.from(`${position.micros}.${position.userId}`).toString("base64url")

const decodeCursor = (cursor: string) => {
  const [micros, userId, ...rest] = Buffer.from(cursor, "base64url").toString("utf8").split(".")
  return rest.length === 0 && micros !== undefined && /^-?\d{1,19}$/.test(micros) && userId !== undefined && isUuid(userId)
    ? Effect.succeed({ micros, userId } satisfies UserPosition)
    : Effect.fail(new InvalidRequest({ message: "invalid cursor: pass the next_cursor of the previous page" }))
}

const UserLifecycleHttpApi = HttpApi.make(ApiId).add(UserLifecycleApi)

export const UserLifecycleLive = HttpApiBuilder.group(UserLifecycleHttpApi, "userLifecycle", (handlers) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const deletion = yield* UserDeletion
    const wait = yield* DatabaseWait
    const deadline = within(wait)
    const deadlineWithProvider = within(Duration.sum(wait, PROVIDER_WAIT))

    const view = (user: User, sources: ReadonlyArray<{ provider: string; provider_user_id: string; status: string; scopes: ReadonlyArray<string>; created_at: string }>) => ({
      user_id: user.user_id,
      team_id: user.team_id,
      client_user_id: user.client_user_id,
      created_on: user.created_at,
      connected_sources: sources.map((c) => ({
        provider: c.provider,
        provider_user_id: c.provider_user_id,
        status: c.status,
        scopes: c.scopes,
        created_on: c.created_at
      }))
    })

    return handlers
      .handle("list", ({ urlParams }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const after = urlParams.cursor === undefined ? undefined : yield* decodeCursor(urlParams.cursor)
          const page = yield* accounts.listUsers(teamId, urlParams.limit ?? PAGE_DEFAULT, after)
          const sources = page.users.length === 0 ? new Map() : yield* links.connectionsOfUsers(page.users.map((u) => u.user_id))
          return {
            users: page.users.map((user) => view(user, sources.get(user.user_id) ?? [])),
            next_cursor: page.next === undefined ? null : encodeCursor(page.next)
          }
        }).pipe(Effect.catchTags({ SqlError: () => Effect.fail(unavailable()) }), deadline))
      .handle("delete", ({ path }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const deleted = yield* deletion.deleteUser(teamId, path.user_id)
          // Committed: the cancelled backfills' chains stop now rather than at their next step.
          yield* Effect.forEach(deleted.cancelledBackfills, interruptChain, { discard: true })
          yield* Effect.logInfo("user deleted").pipe(Effect.annotateLogs({ user_id: path.user_id, connections: deleted.connections.length }))
          return {
            user_id: path.user_id,
            status: "deleted" as const,
            deleted_at: deleted.deletedAt.toISOString(),
            erase_after: deleted.eraseAfter.toISOString(),
            connections: deleted.connections.map((c) => ({
              provider: c.provider,
              provider_deregistered: c.providerDeregistered,
              shared_account: c.sharedAccount
            })),
            cancelled_backfills: deleted.cancelledBackfills.length
          }
        }).pipe(
          Effect.catchTags({
            UserNotFound: (e) => Effect.fail(e.deleted ? deletedNotFound() : notFound()),
            // Cannot happen (the user's connections were just read, under the user's lock); a retry settles it.
            NotConnected: () => Effect.fail(unavailable()),
            AuthError: (e) => Effect.fail(new ServiceUnavailable({ message: `${e.message}; nothing was changed, retry later`, retryable: true })),
            DecryptionError: () => Effect.fail(unavailable()),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadlineWithProvider
        ))
      .handle("undoDelete", ({ payload }) =>
        Effect.gen(function* () {
          const { teamId } = yield* CurrentTeam
          const user = yield* deletion.undoDelete(teamId, payload.user_id)
          yield* Effect.logInfo("user restored").pipe(Effect.annotateLogs({ user_id: user.user_id }))
          return view(user, yield* links.connectionsOf(user.user_id))
        }).pipe(
          Effect.catchTags({
            UserNotFound: () => Effect.fail(notFound()),
            UserNotDeleted: () => Effect.fail(new Conflict({ message: "the user is not deleted" })),
            GracePeriodOver: () => Effect.fail(new Conflict({ message: "the grace period is over: the user's data is being erased and cannot be restored" })),
            SqlError: () => Effect.fail(unavailable())
          }),
          deadline
        ))
  }))
