/**
 * The conformance kit (`@wearflow/core/testing`): one call in a plugin's test file runs the
 * framework's promises against it, as Airbyte's acceptance tests do for connectors.
 *
 *   providerConformance({ plugin, folder, fake, samples, recordsBody, revise, ... })
 *
 * It checks: the manifest is valid and asks for no core secret; the plugin's source reaches
 * no undeclared host or variable (no process.env, Bun.*, global fetch, other plugins); every
 * normalizer is total on real-shaped and hostile records (typed item errors, never
 * exceptions, never a value in a message); through the real pipeline on Postgres the same
 * notification twice adds nothing and a revision emits `.updated`; signed notifications
 * without or with a wrong signature are refused and store nothing; the plugin's fake server
 * serves what the plugin fetches; a polled provider's poll stores what its fake holds, page
 * by page through core's sync pages, and polling again from the cursor it answered adds
 * nothing.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServer from "@effect/platform/HttpServer"
import { SqlClient } from "@effect/sql"
import { ConfigProvider, Duration, Effect, Either, Layer, ManagedRuntime, Redacted } from "effect"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Accounts } from "../tenancy/accounts.ts"
import { Connections } from "../connections/connections.ts"
import { Links } from "../connections/links.ts"
import { ApiId } from "../http.ts"
import { Inbox } from "../pipeline/inbox.ts"
import { type IngestOutcome, IngestWorker } from "../pipeline/ingest.ts"
import { allowsEnv, type Plugin } from "../plugin.ts"
import { Providers } from "../provider.ts"
import { checkPlugin } from "../registry.ts"
import { freshDatabase, stopEmbedded } from "./database.ts"
import { hostileVariants, MARKER } from "./hostile.ts"
import { pipelineWith } from "./pipeline.ts"
import { validated } from "./records.ts"
import { scanPluginSource } from "./source-scan.ts"
import { syncPages } from "../sync/pages.ts"

export { scanPluginSource } from "./source-scan.ts"
export { hostileVariants, MARKER } from "./hostile.ts"
export { errorOf, samplesOf, shape, summaryOf, validated } from "./records.ts"

/** A provider's fake server, started for a run. */
export interface FakeServer {
  /** The plugin's configuration that points it at the fake (every name must be declared). */
  readonly env: Readonly<Record<string, string>>
  /** Tokens for a provider user the fake knows, as a connection holds them. */
  readonly connect?: (providerUserId: string) => Promise<{ readonly accessToken: string; readonly refreshToken?: string | undefined }>
  readonly close: () => Promise<void>
}

/** An inbox body: what the plugin stores for a notification it received or data it fetched. */
export interface StoredBody {
  readonly kind: string
  readonly body: string
}

export interface RouteRequest {
  readonly method: string
  /** Path and query, e.g. `/api/v1/webhooks/acme`. */
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

export interface ProviderConformanceOptions<F extends FakeServer = FakeServer> {
  readonly plugin: Plugin
  /** The plugin's folder (`new URL(".", import.meta.url)` in its test file). */
  readonly folder: string | URL
  readonly fake: () => Promise<F>
  /** Real-shaped raw records per normalizer key; every normalizer needs at least one. */
  readonly samples: Readonly<Record<string, ReadonlyArray<unknown>>>
  /** A body carrying `records` of `key` for provider user `providerUserId`, as the plugin stores pushed or fetched records. */
  readonly recordsBody: (key: string, records: ReadonlyArray<unknown>, providerUserId: string) => StoredBody
  /** The record with its content changed, as the provider would send a revision. */
  readonly revise: (key: string, record: unknown) => unknown
  /** For providers that sign notifications: a request the plugin's route must accept. */
  readonly signedNotification?: {
    readonly request: (fake: F) => RouteRequest
    /** The headers that carry the signature or shared secret (lower case). */
    readonly signatureHeaders: ReadonlyArray<string>
    /** Whether the signature covers the body (then a changed body is refused too). */
    readonly coversBody: boolean
  }
  /**
   * For providers whose notifications point at data to fetch: a notification about data the
   * fake holds for `providerUserId` (linked with `fake.connect`'s tokens), and how many
   * records fetching it must store at least.
   */
  readonly pointer?: (fake: F, providerUserId: string) => Promise<StoredBody>
}

/** Variables a plugin may never ask for: the app's own secrets and database. */
const CORE_SECRETS = ["DATABASE_URL", "WEARFLOW_API_KEY", "WEARFLOW_ENCRYPTION_KEY", "PGPASSWORD"]

/** Runs the provider conformance suite as a `describe` block. */
export const providerConformance = <F extends FakeServer>(options: ProviderConformanceOptions<F>) => {
  const { plugin } = options
  const id = plugin.manifest.id
  const folder = typeof options.folder === "string" ? options.folder : fileURLToPath(options.folder)

  describe(`conformance: provider ${id}`, () => {
    let fake: F
    let runtime: ManagedRuntime.ManagedRuntime<any, any>
    let services: ReturnType<typeof pipelineWith>
    // One memo map: the routes' handler (signature test) shares the runtime's services.
    const memoMap = Effect.runSync(Layer.makeMemoMap)
    const run = <A>(effect: Effect.Effect<A, unknown, any>): Promise<A> => runtime.runPromise(effect)

    beforeAll(async () => {
      fake = await options.fake()
      services = pipelineWith(plugin, await freshDatabase(), fake.env)
      runtime = ManagedRuntime.make(services, memoMap)
      await runtime.runtime()
    })

    afterAll(async () => {
      await runtime?.dispose()
      await fake?.close()
      await stopEmbedded()
    })

    it("has a valid manifest, asks for no core secret, and builds from its fake's configuration alone", async () => {
      expect(checkPlugin(plugin)).toBeUndefined()
      expect(plugin.manifest.kind).toBe("provider")
      expect(plugin.manifest.version).toMatch(/^\d+\.\d+\.\d+/)
      expect(plugin.manifest.permissions.env.filter((pattern) => pattern === "*" || CORE_SECRETS.some((name) => allowsEnv({ env: [pattern] }, name)))).toEqual([])
      expect(Object.keys(fake.env).filter((name) => !allowsEnv(plugin.manifest.permissions, name))).toEqual([])
      const hosts = await Effect.runPromise(
        Effect.withConfigProvider(plugin.manifest.permissions.net, ConfigProvider.fromMap(new Map(Object.entries(fake.env))))
      )
      expect(hosts.every((host) => typeof host === "string" && host.length > 0 && host !== "*")).toBe(true)
      const providers = await run(Providers)
      expect(providers.get(id)?.id).toBe(id)
    })

    it("reaches nothing its manifest does not declare: no process.env, Bun.*, global fetch or other plugins in its source", () => {
      expect(scanPluginSource(folder).map((v) => `${v.file}:${v.line} ${v.rule}`)).toEqual([])
    })

    it("has a real-shaped sample for every normalizer, and normalizes each without an error into schema-valid records", async () => {
      const provider = (await run(Providers)).get(id)!
      for (const key of Object.keys(provider.normalizers)) {
        const samples = options.samples[key] ?? []
        expect(samples.length, `samples for normalizer ${key}`).toBeGreaterThan(0)
        for (const sample of samples) {
          const result = provider.normalizers[key]!(sample)
          expect(Either.isRight(result) ? "ok" : result.left.message, `normalizer ${key}`).toBe("ok")
          // Each record satisfies its resource's schema exactly, as the store and sinks expect.
          if (Either.isRight(result)) validated(result.right)
        }
      }
    })

    it("is total on hostile records: typed item errors, never exceptions, never a value in a message", async () => {
      const provider = (await run(Providers)).get(id)!
      for (const [key, normalize] of Object.entries(provider.normalizers)) {
        for (const variant of hostileVariants(options.samples[key]?.[0] ?? {})) {
          let result: ReturnType<typeof normalize>
          try {
            result = normalize(variant)
          } catch (error) {
            throw new Error(`normalizer ${key} threw on a hostile record: ${error instanceof Error ? error.message : "non-error"}`)
          }
          if (Either.isLeft(result)) {
            expect(result.left._tag).toBe("ItemError")
            expect(result.left.message).not.toContain(MARKER)
          }
        }
      }
    })

    describe("through the real pipeline", () => {
      const linkedUser = (name: string, providerUserId: string, tokens: { readonly accessToken?: string; readonly refreshToken?: string | undefined } = {}) =>
        Effect.gen(function* () {
          const accounts = yield* Accounts
          const links = yield* Links
          const provider = (yield* Providers).get(id)!
          const teamId = yield* accounts.ensureTeamKey(`conformance-${name}`, Redacted.make(`conformance-key-${name}`))
          const user = yield* accounts.createUser(teamId, name)
          yield* links.link(teamId, user.user_id, provider, providerUserId, {
            accessToken: tokens.accessToken === undefined ? undefined : Redacted.make(tokens.accessToken),
            refreshToken: tokens.refreshToken === undefined ? undefined : Redacted.make(tokens.refreshToken)
          })
          return user.user_id
        })

      /** Processes an inbox row, then what fetching its items committed (rows sourced from it), summed. */
      const processAll = (inboxId: number): Effect.Effect<IngestOutcome, unknown, any> =>
        Effect.gen(function* () {
          const outcome = yield* (yield* IngestWorker).process({ inboxId })
          const sql = yield* SqlClient.SqlClient
          const fetched = yield* sql<{ id: string }>`select id from inbox where source_inbox_id = ${inboxId} order by source_index`
          let total = outcome
          for (const row of fetched) {
            const more = yield* processAll(Number(row.id))
            total = {
              ...total,
              created: total.created + more.created,
              updated: total.updated + more.updated,
              unchanged: total.unchanged + more.unchanged,
              unlinked: total.unlinked + more.unlinked,
              errors: [...total.errors, ...more.errors]
            }
          }
          return total
        })

      const ingest = (stored: StoredBody) =>
        Effect.gen(function* () {
          const inboxId = yield* (yield* Inbox).commit({ provider: id, kind: stored.kind as never, body: stored.body, itemCount: 0 })
          return yield* processAll(inboxId)
        })

      const events = (userId: string, suffix: string) =>
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ n: number }>`select count(*)::int as n from outbox where user_id = ${userId} and record_id is not null and event_type like ${`%.${suffix}`}`).pipe(
          Effect.map((rows) => rows[0]!.n)
        )

      it("stores each sample once: the same notification twice adds nothing, and a revision emits .updated", async () => {
        const userId = await run(linkedUser("idempotent", "conformance-user"))
        let created = 0
        for (const [key, samples] of Object.entries(options.samples)) {
          const body = options.recordsBody(key, samples, "conformance-user")
          const first = await run(ingest(body))
          expect(first.errors, `errors storing ${key}`).toEqual([])
          expect(first.unlinked).toBe(0)
          created += first.created
          const again = await run(ingest(body))
          expect({ key, created: again.created, updated: again.updated }).toEqual({ key, created: 0, updated: 0 })
        }
        expect(created).toBeGreaterThan(0)
        expect(await run(events(userId, "created"))).toBeGreaterThanOrEqual(created)

        let revised = 0
        for (const [key, samples] of Object.entries(options.samples)) {
          const revision = await run(ingest(options.recordsBody(key, [options.revise(key, samples[0])], "conformance-user")))
          expect(revision.errors).toEqual([])
          expect(revision.created).toBe(0)
          revised += revision.updated
        }
        expect(revised).toBeGreaterThan(0)
        expect(await run(events(userId, "updated"))).toBeGreaterThanOrEqual(revised)
      })

      if (options.pointer !== undefined) {
        const pointer = options.pointer
        it("fetches what a notification points at from its fake server and stores it", async () => {
          expect(fake.connect, "the fake must offer connect() to issue tokens").toBeDefined()
          const tokens = await fake.connect!("conformance-fetch-user")
          const userId = await run(linkedUser("fetch", "conformance-fetch-user", tokens))
          const outcome = await run(ingest(await pointer(fake, "conformance-fetch-user")))
          expect(outcome.errors).toEqual([])
          expect(outcome, "fetching from the fake stored nothing").toMatchObject({ unlinked: 0 })
          expect(outcome.created).toBeGreaterThan(0)
          expect(await run(events(userId, "created"))).toBe(outcome.created)
        })
      }

      it("if it is polled: polls its fake from no cursor and stores what it holds, and a poll from the cursor it answered adds nothing", async (ctx) => {
        const provider = (await run(Providers)).get(id)!
        const sync = provider.sync
        if (sync === undefined) return ctx.skip()
        expect(fake.connect, "a polled provider's fake must offer connect() to issue tokens").toBeDefined()
        const tokens = await fake.connect!("conformance-poll-user")
        const userId = await run(linkedUser("poll", "conformance-poll-user", tokens))
        expect(Duration.toMillis(sync.interval)).toBeGreaterThan(0)
        /** Every round until the provider stops asking for another at once, each page processed; the rounds' summed outcome. */
        const pollToEnd = (from: string | undefined, firstRound: number) =>
          Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            const inbox = yield* Inbox
            const credentials = yield* (yield* Connections).credentialsFor(id, { _tag: "UserId", id: "conformance-poll-user" })
            const [connection] = yield* sql<{ id: string }>`select id from provider_connections where provider = ${id} and provider_user_id = ${"conformance-poll-user"}`
            let cursor = from
            let total: IngestOutcome = { items: 0, unlinked: 0, created: 0, updated: 0, unchanged: 0, deleted: 0, pulled: 0, errors: [] }
            for (let round = firstRound; round < firstRound + 100; round++) {
              const pages = syncPages(sql, inbox, { provider: id, connectionId: connection!.id, round, providerUserId: "conformance-poll-user" })
              const answer = yield* sync.poll(credentials!, cursor, pages)
              expect(answer._tag, `round ${round} of the poll`).toBe("Polled")
              if (answer._tag !== "Polled") break
              const stored = yield* sql<{ id: string }>`select inbox_id as id from sync_pages where connection_id = ${connection!.id} and round = ${round} and inbox_id is not null order by page`
              for (const row of stored) {
                const outcome = yield* processAll(Number(row.id))
                total = { ...total, created: total.created + outcome.created, updated: total.updated + outcome.updated, errors: [...total.errors, ...outcome.errors] }
              }
              cursor = answer.cursor
              if (!answer.more) return { total, cursor, round }
            }
            throw new Error("the provider asked for another round at once 100 times")
          })
        const first = await run(pollToEnd(undefined, 1))
        expect(first.total.errors).toEqual([])
        expect(first.total.created, "the first poll stored nothing from the fake").toBeGreaterThan(0)
        expect(await run(events(userId, "created"))).toBe(first.total.created)
        const again = await run(pollToEnd(first.cursor, first.round + 1))
        expect(again.total.errors).toEqual([])
        expect({ created: again.total.created, updated: again.total.updated }).toEqual({ created: 0, updated: 0 })
      })

      if (options.signedNotification !== undefined) {
        const signed = options.signedNotification
        it("refuses notifications without or with a wrong signature, storing nothing; accepts a signed one", async () => {
          const api = (plugin.routes ?? []).reduce<HttpApi.HttpApi.Any>((api, group) => (api as HttpApi.HttpApi<typeof ApiId>).add(group as never), HttpApi.make(ApiId))
          const { dispose, handler } = HttpApiBuilder.toWebHandler(
            Layer.mergeAll(HttpApiBuilder.api(api as never).pipe(Layer.provide(services)), HttpServer.layerContext) as never,
            { memoMap }
          )
          try {
            const inboxRows = () => run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`select count(*)::int as n from inbox where provider = ${id}`)).then((rows) => rows[0]!.n)
            const send = (request: RouteRequest) =>
              handler(new Request(`http://conformance.local${request.path}`, { method: request.method, headers: request.headers, body: request.body }))
            const valid = signed.request(fake)
            const before = await inboxRows()
            const unsigned = { ...valid, headers: Object.fromEntries(Object.entries(valid.headers).filter(([name]) => !signed.signatureHeaders.includes(name.toLowerCase()))) }
            expect((await send(unsigned)).status).toBe(401)
            const corrupted = {
              ...valid,
              headers: Object.fromEntries(Object.entries(valid.headers).map(([name, value]) => [name, signed.signatureHeaders.includes(name.toLowerCase()) ? `${value}0` : value]))
            }
            expect((await send(corrupted)).status).toBe(401)
            if (signed.coversBody) expect((await send({ ...valid, body: `${valid.body} ` })).status).toBe(401)
            expect(await inboxRows()).toBe(before)
            const accepted = await send(valid)
            expect(accepted.status).toBeLessThan(300)
            expect(await inboxRows()).toBe(before + 1)
          } finally {
            await dispose()
          }
        })
      }
    })
  })
}
export { type Destination, sinkConformance, type SinkConformanceOptions } from "./sink.ts"
