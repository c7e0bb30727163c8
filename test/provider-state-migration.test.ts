/**
 * Migration 0009 and the start-up move (core/legacy-credentials.ts): secrets core kept in its
 * own columns for OAuth 1.0a connections move into Garmin's encrypted state, the token digests
 * connections were routed by become aliases, and key rotation covers the state.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Migrator, SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import * as Parked from "@wearflow/core/pipeline/parked"
import { Connections } from "@wearflow/core/connections/connections"
import { aliasDigest, layerTokenCipher, makeTokenCipher, TokenCipher } from "@wearflow/core/crypto"
import * as Host from "@wearflow/core/host"
import { moveLegacyCredentials } from "@wearflow/core/connections/legacy-credentials"
import { IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { Providers } from "@wearflow/core/provider"
import { migrate, migrations } from "@wearflow/core/storage/database"
import * as Garmin from "@wearflow/garmin"
import { stateOf, usableOAuth1 } from "../providers/garmin/state.ts"
import { ConfigProvider, Effect, Layer, Redacted } from "effect"
import { createHash, randomBytes, randomUUID } from "node:crypto"
import { freshDatabaseUrl } from "./support/database.ts"

const url = await freshDatabaseUrl()
const currentKey = randomBytes(32)
const retiredKey = randomBytes(32)
const cipher = makeTokenCipher(Redacted.make([currentKey]))
const retired = makeTokenCipher(Redacted.make([retiredKey]))
const unknownKey = makeTokenCipher(Redacted.make([randomBytes(32)]))
const enc = (value: string, using = cipher) => using.encrypt(Redacted.make(value))
const sha256 = (value: string) => createHash("sha256").update(value).digest()

const Services = Connections.Default.pipe(
  Layer.provideMerge(Links.Default.pipe(Layer.provide(Parked.layer), Layer.provideMerge(Accounts.Default))),
  Layer.provideMerge(
    Providers.fromTags(Garmin.GarminProvider).pipe(
      Layer.provide(Host.load({ manifest: Garmin.manifest, layer: Garmin.layerProvider }, ConfigProvider.fromMap(new Map()))),
      Layer.provide(FetchHttpClient.layer)
    )
  ),
  Layer.provideMerge(IngestQueue.layer.pipe(Layer.provide(layerQueueStore({})))),
  Layer.provideMerge(layerTokenCipher(Redacted.make([currentKey, retiredKey])))
)

const HOUR = 3_600_000

it.effect("moves OAuth 1.0a secrets into Garmin's state once, keeps routing by token digest, and rotates the state's key", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // The schema before 0009, with connections as core stored them then.
    yield* Migrator.make({})({ loader: Effect.map(migrations, (all) => all.filter(([id]) => id < 9)) })
    const teamId = randomUUID()
    yield* sql`insert into teams (id, name) values (${teamId}, 'legacy')`
    const connection = (name: string, columns: Record<string, unknown>) =>
      Effect.gen(function* () {
        const userId = randomUUID()
        yield* sql`insert into users (id, team_id, client_user_id) values (${userId}, ${teamId}, ${name})`
        yield* sql`insert into provider_connections ${sql.insert({ id: randomUUID(), user_id: userId, provider: "garmin", provider_user_id: `garmin-${name}`, status: "active", ...columns })}`
        return userId
      })
    // Made with OAuth 1.0a: the pair in access_token and token_secret.
    const oauth1 = yield* connection("oauth1", {
      auth_version: "oauth1",
      access_token: enc("token-a"),
      token_secret: enc("secret-a"),
      access_token_hash: sha256("token-a")
    })
    // Moved to OAuth 2.0, the old pair within its grace, and past it.
    const moved = (name: string, validUntil: Date) =>
      connection(name, {
        auth_version: "oauth2",
        access_token: enc(`bearer-${name}`),
        refresh_token: enc(`refresh-${name}`),
        oauth1_token: enc(`token-${name}`),
        oauth1_token_secret: enc(`secret-${name}`),
        oauth1_valid_until: validUntil,
        access_token_hash: sha256(`token-${name}`)
      })
    const inGrace = yield* moved("grace", new Date(Date.now() + 24 * HOUR))
    const pastGrace = yield* moved("expired", new Date(Date.now() - HOUR))
    // Encrypted with a key this process does not have: left for a start that has it.
    const undecryptable = yield* connection("unknown-key", { auth_version: "oauth1", access_token: enc("token-u", unknownKey), token_secret: enc("secret-u", unknownKey) })

    yield* migrate
    const row = (userId: string) =>
      sql<{ auth_version: string | null; access_token: Uint8Array | null; provider_state: Uint8Array | null; token_secret: Uint8Array | null; oauth1_token: Uint8Array | null; oauth1_valid_until: Date | null }>`
        select auth_version, access_token, provider_state, token_secret, oauth1_token, oauth1_valid_until from provider_connections where user_id = ${userId}`.pipe(
        Effect.map((rows) => rows[0]!)
      )
    const credentials = (token: string) =>
      Effect.flatMap(Connections, (connections) => connections.credentialsFor("garmin", { _tag: "Alias", digest: aliasDigest(token) }))

    yield* Effect.gen(function* () {
      // Building Connections moved them.
      for (const userId of [oauth1, inGrace, pastGrace]) {
        expect(yield* row(userId)).toMatchObject({ token_secret: null, oauth1_token: null, oauth1_valid_until: null, provider_state: expect.anything() })
      }
      expect(yield* row(oauth1)).toMatchObject({ auth_version: "oauth1", access_token: null })
      expect((yield* row(undecryptable)).token_secret).not.toBeNull()

      // Routed by the token digest the connection kept; signed with the pair while Garmin honours it.
      const a = yield* credentials("token-a")
      expect(a!.bearer).toBeUndefined()
      expect(usableOAuth1(a)).toEqual({ token: Redacted.make("token-a"), secret: Redacted.make("secret-a") })
      const grace = yield* credentials("token-grace")
      expect(Redacted.value(grace!.bearer!)).toBe("bearer-grace")
      expect(Redacted.value(usableOAuth1(grace)!.secret)).toBe("secret-grace")
      const expired = yield* credentials("token-expired")
      expect(Redacted.value(expired!.bearer!)).toBe("bearer-expired")
      expect(usableOAuth1(expired)).toBeUndefined()
      expect(Redacted.value(stateOf(expired).oauth1!.token)).toBe("token-expired")

      // Once: a second start finds nothing to move and leaves the state as it is.
      const before = (yield* row(inGrace)).provider_state
      expect(yield* moveLegacyCredentials(yield* TokenCipher, yield* Providers)).toBe(0)
      expect(Buffer.from((yield* row(inGrace)).provider_state!).equals(Buffer.from(before!))).toBe(true)

      // Key rotation re-encrypts the state too (it cannot run past a row under an unknown key).
      yield* sql`delete from provider_connections where user_id = ${undecryptable}`
      const state = Redacted.value(yield* cipher.decrypt((yield* row(oauth1)).provider_state!))
      yield* sql`update provider_connections set provider_state = ${enc(state, retired)} where user_id = ${oauth1}`
      expect(yield* (yield* Links).reencryptTokens()).toBeGreaterThanOrEqual(1)
      expect(Redacted.value(yield* cipher.decrypt((yield* row(oauth1)).provider_state!))).toBe(state)
      expect(usableOAuth1(yield* credentials("token-a"))).toBeDefined()
    }).pipe(Effect.provide(Services))
  }).pipe(Effect.provide(PgClient.layer({ url })), Effect.scoped))
