/**
 * The provider contract as core runs it, with a provider that is not Garmin: notify-then-fetch
 * notifications (pointer items under a kind of its own), fetched records stored under the
 * kind the provider names, users routed by id or by an alias of the connection, and the
 * provider's own state handed back to it, decrypted, when it fetches.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Accounts } from "@wearflow/core/accounts"
import { aliasDigest } from "@wearflow/core/crypto"
import { Inbox } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import { type Credentials, type NotificationItem, type Provider, Providers } from "@wearflow/core/provider"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import { Effect, Either, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { normalizers } from "../providers/garmin/normalize.ts"
import { freshDatabaseUrl } from "./support/database.ts"
import { pipelineServices } from "./support/pipeline.ts"

const ACME_USER = "acme-user-1"
const ROUTING_SECRET = "acme-routing-secret"
const dailies = (JSON.parse(readFileSync(new URL("../providers/garmin/testing/fixtures/dailies.json", import.meta.url), "utf8")) as { dailies: Array<Record<string, unknown>> }).dailies

/** What the provider was asked to fetch, with the credentials it was given. */
const fetches: Array<{ readonly item: NotificationItem; readonly credentials: Credentials | undefined }> = []

interface Notice {
  readonly user?: string
  readonly secret?: string
  readonly record: number
}

/** A provider whose notifications only say "record n changed": the worker fetches each. */
const acme: Provider = {
  id: "acme",
  name: "Acme",
  itemsOf: (kind, body) => {
    if (kind === "changes") {
      return ((body as { changes: Array<Notice> }).changes).map((raw, index): NotificationItem => ({
        key: "dailies",
        index,
        user: raw.user !== undefined ? { _tag: "UserId", id: raw.user } : { _tag: "Alias", digest: aliasDigest(raw.secret!) },
        carries: "pointer",
        raw
      }))
    }
    if (kind === "fetched") {
      return ((body as { dailies: Array<unknown> }).dailies).map((raw, index): NotificationItem => ({
        key: "dailies",
        index,
        user: { _tag: "UserId", id: ACME_USER },
        carries: "record",
        raw
      }))
    }
    return []
  },
  normalizers: { dailies: normalizers.dailies },
  fetch: (item, credentials) =>
    Effect.sync(() => {
      fetches.push({ item, credentials })
      return { _tag: "Records", kind: "fetched", key: "dailies", records: [{ ...dailies[(item.raw as Notice).record], userId: ACME_USER }] } as const
    }),
  lifecycle: () => undefined,
  requiredPermissions: [],
  resourceScopes: {},
  auth: undefined,
  backfill: undefined,
  aliasesOf: (credentials) => {
    const routing = (credentials.state as { routing?: string } | undefined)?.routing
    return routing === undefined ? [] : [Redacted.make(routing)]
  }
}

const Services = pipelineServices({
  databaseUrl: await freshDatabaseUrl(),
  tokenKeys: [randomBytes(32)],
  filesDir: path.join(os.tmpdir(), "wearflow-contract-files"),
  pollInterval: "20 millis",
  providers: Layer.succeed(Providers, new Map([[acme.id, acme]]))
})

layer(Services, { timeout: 60_000 })("a notify-then-fetch provider", (it) => {
  it.effect("fetches what each notification points at, with the connection's credentials and state, and stores what came back", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const accounts = yield* Accounts
      const worker = yield* IngestWorker
      const teamId = yield* accounts.ensureTeamKey("acme", Redacted.make("key-acme"))
      const user = yield* accounts.createUser(teamId, "acme-client-user")
      yield* accounts.link(teamId, user.user_id, acme, ACME_USER, { accessToken: Redacted.make("acme-bearer"), state: { routing: ROUTING_SECRET } })
      // The alias is kept as its digest only.
      const aliases = yield* sql<{ digest: Uint8Array }>`select digest from connection_aliases`
      expect(aliases.map((a) => Buffer.from(a.digest).toString("hex"))).toEqual([aliasDigest(ROUTING_SECRET)])

      const body = JSON.stringify({ changes: [{ user: ACME_USER, record: 0 }, { secret: ROUTING_SECRET, record: 1 }] })
      const inboxId = yield* (yield* Inbox).commit({ provider: "acme", kind: "changes", body, itemCount: 2 })
      expect(yield* worker.process({ inboxId })).toMatchObject({ items: 2, unlinked: 0, pulled: 2, created: 0, errors: [] })
      expect(fetches.map((f) => [Redacted.value(f.credentials!.bearer!), f.credentials!.state])).toEqual([
        ["acme-bearer", { routing: ROUTING_SECRET }],
        ["acme-bearer", { routing: ROUTING_SECRET }]
      ])

      const stored = yield* sql<{ id: string; kind: string; source_index: number }>`
        select id, kind, source_index from inbox where source_inbox_id = ${inboxId} order by source_index`
      expect(stored.map((r) => [r.kind, r.source_index])).toEqual([["fetched", 0], ["fetched", 1]])
      let created = 0
      for (const row of stored) created += (yield* worker.process({ inboxId: Number(row.id) })).created
      expect(created).toBeGreaterThan(0)
      const range = Either.getOrThrow(parseDateRange("2000-01-01", "2100-01-01"))
      const activity = yield* (yield* DataQuery).summaries(user.user_id, "activity", range)
      expect(activity.map((a) => a.steps).sort()).toEqual(dailies.map((d) => d["steps"]).sort())
    }))
})
