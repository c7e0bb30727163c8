/**
 * `wearflow teams create | list` and `wearflow keys create | list | revoke | rotate`: teams and
 * their API keys, on the server's database directly (so the first admin key can be made, or a
 * leaked one revoked, with the server down). A new key is printed once, alone on stdout, so
 * `KEY=$(wearflow keys create ...)` keeps it; nothing else ever prints a key.
 */
import { type ApiKeyView, ApiKeys, type CreatedApiKey, type KeyScope, type Page, type Team } from "@wearflow/core/tenancy/api-keys"
import { Duration, Effect, Redacted } from "effect"
import { EnvironmentError, keysLayer, loadConfig } from "./environment.ts"
import { fail, write } from "./io.ts"

/** A table in aligned columns, the last one unpadded. */
const table = (columns: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const all = [columns, ...rows]
  const widths = columns.map((_, i) => Math.max(...all.map((r) => r[i]!.length)))
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n") + "\n"
}

export const teamsText = (teams: ReadonlyArray<Team>) => table(["id", "name", "created"], teams.map((t) => [t.id, t.name, t.created_at]))

export const keysText = (keys: ReadonlyArray<ApiKeyView>) =>
  table(
    ["id", "status", "scope", "admin", "created", "last used", "expires", "label"],
    keys.map((k) => [k.id, k.status, k.scope, k.admin ? "yes" : "no", k.created_at, k.last_used_at ?? "-", k.expires_at ?? "-", k.label])
  )

/** Every page of a list. */
const all = <A, E>(page: (cursor: string | undefined) => Effect.Effect<Page<A>, E>) =>
  Effect.gen(function* () {
    const items: Array<A> = []
    let cursor: string | undefined
    do {
      const next = yield* page(cursor)
      items.push(...next.data)
      cursor = next.nextCursor ?? undefined
    } while (cursor !== undefined)
    return items
  })

const json = (value: unknown) => write(process.stdout, JSON.stringify(value, null, 2) + "\n")

const withSecret = ({ key, ...view }: CreatedApiKey) => ({ ...view, key: Redacted.value(key) })

/** Runs `body` with the keys service on the server's database; not-found answers exit 1. */
const withKeys = <E extends { readonly _tag: string; readonly message: string }>(
  body: (keys: ApiKeys) => Effect.Effect<number, E>
) =>
  Effect.gen(function* () {
    const config = yield* loadConfig
    return yield* Effect.flatMap(ApiKeys, body).pipe(
      Effect.catchAll((e): Effect.Effect<number, EnvironmentError> =>
        e._tag === "SqlError"
          ? Effect.fail(new EnvironmentError({ message: `the database is unusable: ${e.message}` }))
          : fail(e.message).pipe(Effect.as(1))),
      Effect.provide(keysLayer(config))
    )
  })

export const createTeam = (options: { readonly name: string; readonly json: boolean }) =>
  withKeys((keys) =>
    Effect.gen(function* () {
      const team = yield* keys.createTeam(options.name)
      if (options.json) yield* json(team)
      else yield* write(process.stdout, team.id + "\n")
      return 0
    })
  )

export const listTeams = (options: { readonly json: boolean }) =>
  withKeys((keys) =>
    Effect.gen(function* () {
      const teams = yield* all((cursor) => keys.listTeams({ cursor, limit: 200 }))
      yield* options.json ? json({ data: teams }) : write(process.stdout, teamsText(teams))
      return 0
    })
  )

const printCreated = (created: CreatedApiKey, asJson: boolean, note: string) =>
  Effect.gen(function* () {
    if (asJson) yield* json(withSecret(created))
    else yield* write(process.stdout, Redacted.value(created.key) + "\n")
    yield* fail(`${note} (id ${created.id}); the key is shown this once: store it now`)
  })

export const createKey = (options: {
  readonly teamId: string
  readonly label: string
  readonly scope: KeyScope
  readonly admin: boolean
  readonly expiresInDays: number | undefined
  readonly json: boolean
}) =>
  withKeys((keys) =>
    Effect.gen(function* () {
      const expiresAt = options.expiresInDays === undefined ? undefined : new Date(Date.now() + options.expiresInDays * 86_400_000)
      const created = yield* keys.createKey(options.teamId, { label: options.label, scope: options.scope, admin: options.admin, expiresAt })
      yield* printCreated(created, options.json, `created ${options.admin ? "an admin" : options.scope === "read_only" ? "a read-only" : "a"} key`)
      return 0
    })
  )

export const listKeys = (options: { readonly teamId: string; readonly json: boolean }) =>
  withKeys((keys) =>
    Effect.gen(function* () {
      const list = yield* all((cursor) => keys.listKeys(options.teamId, { cursor, limit: 200 }))
      yield* options.json ? json({ data: list }) : write(process.stdout, keysText(list))
      return 0
    })
  )

export const revokeKey = (options: { readonly teamId: string; readonly keyId: string }) =>
  withKeys((keys) =>
    Effect.gen(function* () {
      const revoked = yield* keys.revokeKey(options.teamId, options.keyId)
      yield* fail(`revoked key ${revoked.id} (${revoked.revoked_at}); every server process refuses it now`)
      return 0
    })
  )

export const rotateKey = (options: { readonly teamId: string; readonly keyId: string; readonly overlapHours: number | undefined; readonly json: boolean }) =>
  withKeys((keys) =>
    Effect.gen(function* () {
      const { key, previous } = yield* keys.rotateKey(options.teamId, options.keyId, options.overlapHours === undefined ? undefined : Duration.hours(options.overlapHours))
      yield* printCreated(key, options.json, `rotated: the old key works until ${previous.expires_at}, the new one from now`)
      return 0
    })
  )
