/**
 * Teams and their API keys, as an operator manages them: create and list teams; create keys
 * (the secret is returned once, only its SHA-256 is stored), list them (never a secret or a
 * hash), revoke them, rotate them with an overlap. And the look-up every authenticated request
 * makes: a revoked or expired key opens nothing, on every process at once, because every
 * request asks the database (no cache to invalidate).
 *
 * When a key was last used is written off the request path, at most once a minute per key.
 */
import { SqlClient } from "@effect/sql"
import { Data, Duration, Effect, Option, Queue, Redacted } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { hashApiKey } from "../crypto.ts"
import { isUuid } from "./accounts.ts"

export type KeyScope = "full" | "read_only"
export type KeyStatus = "active" | "expired" | "revoked"

export interface Team {
  readonly id: string
  readonly name: string
  readonly created_at: string
}

/** A key as listed: what it may do and its times; never its secret or hash. */
export interface ApiKeyView {
  readonly id: string
  readonly team_id: string
  readonly label: string
  readonly scope: KeyScope
  readonly admin: boolean
  readonly status: KeyStatus
  readonly created_at: string
  readonly last_used_at: string | null
  readonly expires_at: string | null
  readonly revoked_at: string | null
}

/** A key just made: its view and, this once, its secret. */
export interface CreatedApiKey extends ApiKeyView {
  readonly key: Redacted.Redacted<string>
}

/** Whom an accepted key speaks for. */
export interface KeyIdentity {
  readonly keyId: string
  readonly teamId: string
  readonly scope: KeyScope
  readonly admin: boolean
}

export interface Page<A> {
  readonly data: ReadonlyArray<A>
  /** Pass as `cursor` for the next page; null on the last. */
  readonly nextCursor: string | null
}

export interface NewKey {
  readonly label: string
  readonly scope?: KeyScope | undefined
  readonly admin?: boolean | undefined
  readonly expiresAt?: Date | undefined
}

export class TeamNotFound extends Data.TaggedError("TeamNotFound")<{ readonly message: string }> {}
export class ApiKeyNotFound extends Data.TaggedError("ApiKeyNotFound")<{ readonly message: string }> {}
/** A rotation of a key that no longer opens anything. */
export class ApiKeyInactive extends Data.TaggedError("ApiKeyInactive")<{ readonly message: string }> {}
/** A cursor this API did not hand out. */
export class InvalidCursor extends Data.TaggedError("InvalidCursor")<{ readonly message: string }> {}
/** An expiry in the past, an overlap out of range. */
export class InvalidKeyRequest extends Data.TaggedError("InvalidKeyRequest")<{ readonly message: string }> {}

/** Recognisable in logs, scanners and config files: `wf_` and 256 random bits. */
export const generateApiKey = () => Redacted.make(`wf_${randomBytes(32).toString("base64url")}`)

export const DEFAULT_PAGE = 50
export const MAX_PAGE = 200
/** How long a rotated key keeps working beside its successor, unless the caller says otherwise. */
export const DEFAULT_ROTATION_OVERLAP = Duration.hours(24)
export const MAX_ROTATION_OVERLAP = Duration.days(30)
/** last_used_at is at most this stale (and written at most this often per key). */
const TOUCH_EVERY_MS = 60_000

/** Cursors are the (created_at in microseconds, id) of the page's last row, opaque to callers. */
const encodeCursor = (position: string, id: string) => Buffer.from(`${position}.${id}`).toString("base64url")
const decodeCursor = (cursor: string) => {
  const [, position, id] = /^(\d{1,20})\.([0-9a-f-]{36})$/.exec(Buffer.from(cursor, "base64url").toString("utf8")) ?? []
  return position !== undefined && id !== undefined && isUuid(id)
    ? Effect.succeed({ position, id })
    : Effect.fail(new InvalidCursor({ message: "cursor is not one this API returned" }))
}

type KeyRow = {
  id: string
  team_id: string
  label: string
  scope: KeyScope
  admin: boolean
  status: KeyStatus
  created_at: Date
  last_used_at: Date | null
  expires_at: Date | null
  revoked_at: Date | null
  position: string
}

const pageSize = (limit: number | undefined) => Math.min(Math.max(1, Math.floor(limit ?? DEFAULT_PAGE)), MAX_PAGE)

const iso = (d: Date | null) => (d === null ? null : d.toISOString())

const toView = (row: KeyRow): ApiKeyView => ({
  id: row.id,
  team_id: row.team_id,
  label: row.label,
  scope: row.scope,
  admin: row.admin,
  status: row.status,
  created_at: row.created_at.toISOString(),
  last_used_at: iso(row.last_used_at),
  expires_at: iso(row.expires_at),
  revoked_at: iso(row.revoked_at)
})

const pageOf = <R extends { id: string; position: string }, A>(rows: ReadonlyArray<R>, limit: number, view: (row: R) => A): Page<A> => {
  const shown = rows.slice(0, limit)
  const last = shown[shown.length - 1]
  return { data: shown.map(view), nextCursor: rows.length > limit && last ? encodeCursor(last.position, last.id) : null }
}

export class ApiKeys extends Effect.Service<ApiKeys>()("wearflow/ApiKeys", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const keyColumns = sql`id, team_id, label, scope, admin, created_at, last_used_at, expires_at, revoked_at,
      case when revoked_at is not null then 'revoked' when expires_at <= now() then 'expired' else 'active' end as status,
      (extract(epoch from created_at) * 1000000)::bigint::text as position`

    /** After the row at `cursor` in (created_at, id) order; everything when there is none. */
    const after = (cursor: string | undefined) =>
      cursor === undefined
        ? Effect.succeed(sql`true`)
        : Effect.map(decodeCursor(cursor), ({ position, id }) =>
          sql`(created_at, id) > (timestamptz 'epoch' + ${position}::bigint * interval '1 microsecond', ${id}::uuid)`)

    const teamExists = (teamId: string) =>
      isUuid(teamId)
        ? Effect.map(sql`select 1 from teams where id = ${teamId}`, (rows) => rows.length > 0)
        : Effect.succeed(false)

    const requireTeam = (teamId: string) =>
      Effect.flatMap(teamExists(teamId), (exists) => (exists ? Effect.void : Effect.fail(new TeamNotFound({ message: "no such team" }))))

    const createTeam = Effect.fn("ApiKeys.createTeam")(function* (name: string) {
      const [row] = yield* sql<{ id: string; name: string; created_at: Date }>`
        insert into teams (id, name) values (${randomUUID()}, ${name}) returning id, name, created_at`
      return { id: row!.id, name: row!.name, created_at: row!.created_at.toISOString() } satisfies Team
    })

    const listTeams = Effect.fn("ApiKeys.listTeams")(function* (options: { readonly limit?: number | undefined; readonly cursor?: string | undefined } = {}) {
      const limit = pageSize(options.limit)
      const rows = yield* sql<{ id: string; name: string; created_at: Date; position: string }>`
        select id, name, created_at, (extract(epoch from created_at) * 1000000)::bigint::text as position
        from teams where ${yield* after(options.cursor)} order by created_at, id limit ${limit + 1}`
      return pageOf(rows, limit, (r): Team => ({ id: r.id, name: r.name, created_at: r.created_at.toISOString() }))
    })

    const insertKey = (teamId: string, spec: NewKey) =>
      Effect.gen(function* () {
        const key = generateApiKey()
        const [row] = yield* sql<KeyRow>`
          insert into api_keys (key_hash, team_id, label, scope, admin, expires_at)
          values (${hashApiKey(key)}, ${teamId}, ${spec.label}, ${spec.scope ?? "full"}, ${spec.admin ?? false}, ${spec.expiresAt ?? null})
          returning ${keyColumns}`
        return { ...toView(row!), key } satisfies CreatedApiKey
      })

    const createKey = Effect.fn("ApiKeys.createKey")(function* (teamId: string, spec: NewKey) {
      if (spec.expiresAt !== undefined && spec.expiresAt.getTime() <= Date.now()) {
        return yield* new InvalidKeyRequest({ message: "expires_at must be in the future" })
      }
      yield* requireTeam(teamId)
      return yield* insertKey(teamId, spec)
    })

    const listKeys = Effect.fn("ApiKeys.listKeys")(function* (
      teamId: string,
      options: { readonly limit?: number | undefined; readonly cursor?: string | undefined } = {}
    ) {
      yield* requireTeam(teamId)
      const limit = pageSize(options.limit)
      const rows = yield* sql<KeyRow>`
        select ${keyColumns} from api_keys
        where team_id = ${teamId} and ${yield* after(options.cursor)}
        order by created_at, id limit ${limit + 1}`
      return pageOf(rows, limit, toView)
    })

    const keyNotFound = () => new ApiKeyNotFound({ message: "no such API key in this team" })

    /** Revoked at once for every process (each request asks the database). Revoking twice changes nothing. */
    const revokeKey = Effect.fn("ApiKeys.revokeKey")(function* (teamId: string, keyId: string) {
      if (!isUuid(teamId) || !isUuid(keyId)) return yield* keyNotFound()
      const [row] = yield* sql<KeyRow>`
        update api_keys set revoked_at = coalesce(revoked_at, now())
        where id = ${keyId} and team_id = ${teamId}
        returning ${keyColumns}`
      if (!row) return yield* keyNotFound()
      return toView(row)
    })

    /**
     * A new key with the old one's label, scope and admin flag; the old one keeps working for
     * `overlap` (zero: it stops now), so callers can move over without a gap.
     */
    const rotateKey = Effect.fn("ApiKeys.rotateKey")(function* (teamId: string, keyId: string, overlap: Duration.DurationInput = DEFAULT_ROTATION_OVERLAP) {
      const overlapMs = Duration.toMillis(overlap)
      if (!(overlapMs >= 0 && overlapMs <= Duration.toMillis(MAX_ROTATION_OVERLAP))) {
        return yield* new InvalidKeyRequest({ message: "the overlap must be from 0 to 30 days" })
      }
      if (!isUuid(teamId) || !isUuid(keyId)) return yield* keyNotFound()
      return yield* Effect.gen(function* () {
        const [old] = yield* sql<KeyRow>`select ${keyColumns} from api_keys where id = ${keyId} and team_id = ${teamId} for update`
        if (!old) return yield* keyNotFound()
        if (old.status !== "active") return yield* new ApiKeyInactive({ message: `the key is ${old.status}; create a new one instead` })
        const created = yield* insertKey(teamId, { label: old.label, scope: old.scope, admin: old.admin })
        const [previous] = yield* sql<KeyRow>`
          update api_keys set expires_at = least(coalesce(expires_at, 'infinity'), now() + ${overlapMs}::float8 * interval '1 millisecond')
          where id = ${keyId}
          returning ${keyColumns}`
        return { key: created, previous: toView(previous!) }
      }).pipe(sql.withTransaction)
    })

    // last_used_at: requests only note the key; one fiber writes, at most once a minute per key.
    const touched = new Map<string, number>()
    const pendingTouches = yield* Queue.dropping<string>(1024)
    yield* Queue.take(pendingTouches).pipe(
      Effect.flatMap((id) =>
        sql`update api_keys set last_used_at = now()
            where id = ${id} and (last_used_at is null or last_used_at < now() - interval '1 minute')`
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("could not record an API key's last use", cause)),
      Effect.forever,
      Effect.forkScoped
    )
    const noteUse = (id: string, lastUsedAt: Date | null) =>
      Effect.sync(() => {
        const now = Date.now()
        if (lastUsedAt !== null && now - lastUsedAt.getTime() < TOUCH_EVERY_MS) return
        if (now - (touched.get(id) ?? 0) < TOUCH_EVERY_MS) return
        touched.set(id, now)
        pendingTouches.unsafeOffer(id)
      })

    /** The key's identity if it opens anything now: known, not revoked, not expired. */
    const authenticate = (key: Redacted.Redacted<string>) =>
      Effect.gen(function* () {
        const [row] = yield* sql<{ id: string; team_id: string; scope: KeyScope; admin: boolean; last_used_at: Date | null }>`
          select id, team_id, scope, admin, last_used_at from api_keys
          where key_hash = ${hashApiKey(key)} and revoked_at is null and (expires_at is null or expires_at > now())`
        if (!row) return Option.none<KeyIdentity>()
        yield* noteUse(row.id, row.last_used_at)
        return Option.some<KeyIdentity>({ keyId: row.id, teamId: row.team_id, scope: row.scope, admin: row.admin })
      })

    return { createTeam, listTeams, createKey, listKeys, revokeKey, rotateKey, authenticate } as const
  })
}) {}
