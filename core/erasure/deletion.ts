/**
 * Deleting a user, at once: every provider connection is ended (the provider is told, unless
 * another user shares the account: connections/disconnect.ts), every backfill is cancelled,
 * and the user is hidden (`deleted_at`) — every read, link and backfill then answers "not
 * found", and notifications for their provider accounts no longer reach them. Their data is
 * erased once the grace period has passed (erase.ts); until then `undoDelete` restores the
 * user, without the connections (the user links again).
 *
 * Polls of the ended connections stop on their own: a round checks that its connection is
 * active, and the poll starter ends (and wakes) the polls of connections that are not.
 */
import { SqlClient } from "@effect/sql"
import { Context, Data, Duration, Effect } from "effect"
import { cancelWindows } from "../backfill/schedule.ts"
import { Connections } from "../connections/connections.ts"
import { Accounts, isUuid, UserNotFound } from "../tenancy/accounts.ts"

/** How long a deleted user can be restored before their data is erased, and how often erasure looks for users past it. */
export class ErasureSettings extends Context.Tag("wearflow/ErasureSettings")<ErasureSettings, {
  readonly grace: Duration.Duration
  readonly interval: Duration.Duration
}>() {
  static readonly defaults = { grace: Duration.days(7), interval: Duration.minutes(1) }
}

/** `undoDelete` on a user that is not deleted. */
export class UserNotDeleted extends Data.TaggedError("UserNotDeleted")<{ readonly userId: string }> {}

/** `undoDelete` after the grace period: the user's erasure is due (or done). */
export class GracePeriodOver extends Data.TaggedError("GracePeriodOver")<{ readonly userId: string }> {}

export interface EndedConnection {
  readonly provider: string
  readonly providerDeregistered: boolean
  readonly sharedAccount: boolean
}

export class UserDeletion extends Effect.Service<UserDeletion>()("wearflow/UserDeletion", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const accounts = yield* Accounts
    const connections = yield* Connections
    const settings = yield* ErasureSettings
    const graceSeconds = Duration.toSeconds(settings.grace)

    /**
     * Ends the user's connections and backfills and marks them deleted, all or nothing: when a
     * provider cannot be reached to deregister, nothing changes and the caller retries.
     * Answers the backfills cancelled, whose chains the caller stops once this has committed.
     */
    const deleteUser = Effect.fn("UserDeletion.deleteUser")(function* (teamId: string, userId: string) {
      yield* accounts.getUser(teamId, userId)
      // Serializes against another delete or undo of the same user.
      yield* sql`select id from users where id = ${userId} for update`
      const connected = yield* sql<{ provider: string }>`
        select provider from provider_connections where user_id = ${userId} and status <> 'disconnected' order by provider`
      const ended: Array<EndedConnection> = []
      for (const { provider } of connected) {
        const result = yield* connections.disconnect(teamId, userId, provider)
        ended.push({ provider, ...result })
      }
      const cancelled = yield* sql<{ id: string }>`
        update backfills set status = 'cancelled', ended_at = now(), error = 'the user was deleted'
        where user_id = ${userId} and status in ('scheduled', 'running')
        returning id`
      for (const { id } of cancelled) yield* cancelWindows(sql, id, "the user was deleted")
      const [marked] = yield* sql<{ deleted_at: Date; erase_after: Date }>`
        update users set deleted_at = now(), erase_after = now() + make_interval(secs => ${graceSeconds})
        where id = ${userId}
        returning deleted_at, erase_after`
      return {
        deletedAt: marked!.deleted_at,
        eraseAfter: marked!.erase_after,
        connections: ended,
        cancelledBackfills: cancelled.map((row) => row.id)
      }
    }, sql.withTransaction)

    /** Restores a deleted user within the grace period; their connections stay ended. */
    const undoDelete = Effect.fn("UserDeletion.undoDelete")(function* (teamId: string, userId: string) {
      if (!isUuid(userId)) return yield* new UserNotFound({ userId })
      const [row] = yield* sql<{ deleted: boolean; within_grace: boolean }>`
        select deleted_at is not null as deleted, coalesce(erase_after > now(), false) as within_grace
        from users where id = ${userId} and team_id = ${teamId} for update`
      if (!row) return yield* new UserNotFound({ userId })
      if (!row.deleted) return yield* new UserNotDeleted({ userId })
      if (!row.within_grace) return yield* new GracePeriodOver({ userId })
      yield* sql`update users set deleted_at = null, erase_after = null where id = ${userId}`
      return yield* accounts.getUser(teamId, userId)
    }, sql.withTransaction)

    return { deleteUser, undoDelete } as const
  })
}) {}
