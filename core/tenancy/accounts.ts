/**
 * Tenancy: teams and their users (the teams' API keys: api-keys.ts). Every read and write is
 * scoped to a team: tenants never see each other's users. The lowest floor of core; provider connections
 * (links.ts, connections.ts) stand on it.
 */
import { SqlClient } from "@effect/sql"
import { Data, Effect, type Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { hashApiKey } from "../crypto.ts"

export interface User {
  readonly user_id: string
  readonly client_user_id: string
  readonly team_id: string
  readonly created_at: string
}

/** No such user in the team; `deleted` when the user was deleted and waits for erasure. */
export class UserNotFound extends Data.TaggedError("UserNotFound")<{ readonly userId: string; readonly deleted?: boolean }> {}
export class UserExists extends Data.TaggedError("UserExists")<{ readonly userId: string }> {}

/** Where a page of users ends: the last user's creation time (microseconds since the epoch) and id. */
export interface UserPosition {
  readonly micros: string
  readonly userId: string
}

export const isUuid = (s: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)

export class Accounts extends Effect.Service<Accounts>()("wearflow/Accounts", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /**
     * Makes sure `key` opens team `name`, creating the team the first time. The bootstrap key
     * (WEARFLOW_API_KEY) is made with `admin`: whoever holds it manages teams and keys.
     */
    const ensureTeamKey = Effect.fn("Accounts.ensureTeamKey")(function* (name: string, key: Redacted.Redacted<string>, options: { readonly admin?: boolean } = {}) {
      const hash = hashApiKey(key)
      const admin = options.admin ?? false
      // Replicas starting together bootstrap the same key: one creates the team, the others find it.
      yield* sql`select pg_advisory_xact_lock(hashtextextended('wearflow:bootstrap-key', 0))`
      const existing = yield* sql<{ team_id: string; active: boolean }>`
        update api_keys set admin = admin or ${admin} where key_hash = ${hash}
        returning team_id, revoked_at is null and (expires_at is null or expires_at > now()) as active`
      if (existing[0]) {
        if (!existing[0].active) yield* Effect.logWarning("the bootstrap API key (WEARFLOW_API_KEY) is revoked or expired: it opens nothing; set another key")
        return existing[0].team_id
      }
      const teamId = randomUUID()
      yield* sql`insert into teams (id, name) values (${teamId}, ${name})`
      yield* sql`insert into api_keys (key_hash, team_id, label, admin) values (${hash}, ${teamId}, 'bootstrap', ${admin})`
      return teamId
    }, sql.withTransaction)

    const toUser = (row: { id: string; client_user_id: string; team_id: string; created_at: Date }): User => ({
      user_id: row.id,
      client_user_id: row.client_user_id,
      team_id: row.team_id,
      created_at: row.created_at.toISOString()
    })

    const createUser = Effect.fn("Accounts.createUser")(function* (teamId: string, clientUserId: string) {
      const rows = yield* sql<{ id: string; client_user_id: string; team_id: string; created_at: Date }>`
        insert into users (id, team_id, client_user_id) values (${randomUUID()}, ${teamId}, ${clientUserId})
        on conflict (team_id, client_user_id) do nothing
        returning id, client_user_id, team_id, created_at`
      if (rows[0]) return toUser(rows[0])
      const [existing] = yield* sql<{ id: string }>`select id from users where team_id = ${teamId} and client_user_id = ${clientUserId}`
      return yield* new UserExists({ userId: existing!.id })
    })

    const getUser = Effect.fn("Accounts.getUser")(function* (teamId: string, userId: string) {
      if (!isUuid(userId)) return yield* new UserNotFound({ userId })
      const rows = yield* sql<{ id: string; client_user_id: string; team_id: string; created_at: Date; deleted: boolean }>`
        select id, client_user_id, team_id, created_at, deleted_at is not null as deleted from users where id = ${userId} and team_id = ${teamId}`
      if (!rows[0]) return yield* new UserNotFound({ userId })
      // A deleted user is gone for every purpose (data, links, backfills) until restored.
      if (rows[0].deleted) return yield* new UserNotFound({ userId, deleted: true })
      return toUser(rows[0])
    })

    /**
     * A page of the team's users (deleted ones left out), oldest first, after `after` — the
     * last user of the previous page — and whether more follow.
     */
    const listUsers = Effect.fn("Accounts.listUsers")(function* (teamId: string, limit: number, after: UserPosition | undefined) {
      const rows = yield* sql<{ id: string; client_user_id: string; team_id: string; created_at: Date; micros: string }>`
        select id, client_user_id, team_id, created_at, (extract(epoch from created_at) * 1000000)::bigint::text as micros
        from users
        where team_id = ${teamId} and deleted_at is null
          ${after === undefined ? sql`` : sql`and (created_at, id) > ('epoch'::timestamptz + ${after.micros}::bigint * interval '1 microsecond', ${after.userId}::uuid)`}
        order by created_at, id
        limit ${limit + 1}`
      const page = rows.slice(0, limit)
      const last = page[page.length - 1]
      return {
        users: page.map(toUser),
        next: rows.length > limit && last !== undefined ? { micros: last.micros, userId: last.id } satisfies UserPosition : undefined
      }
    })

    return { ensureTeamKey, createUser, getUser, listUsers } as const
  })
}) {}
