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

export class UserNotFound extends Data.TaggedError("UserNotFound")<{ readonly userId: string }> {}
export class UserExists extends Data.TaggedError("UserExists")<{ readonly userId: string }> {}

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
      const rows = yield* sql<{ id: string; client_user_id: string; team_id: string; created_at: Date }>`
        select id, client_user_id, team_id, created_at from users where id = ${userId} and team_id = ${teamId}`
      if (!rows[0]) return yield* new UserNotFound({ userId })
      return toUser(rows[0])
    })

    return { ensureTeamKey, createUser, getUser } as const
  })
}) {}
