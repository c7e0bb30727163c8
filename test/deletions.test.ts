/**
 * Deletions as core runs them, with a provider that is not Garmin: a deletion item removes
 * every record stored from the provider record it names (each resource it yielded, samples
 * included) for the linked users of that provider user only, with one
 * `daily.data.<resource>.deleted` event per removed record; the same deletion twice adds
 * nothing; a record sent again afterwards is created anew, while an older delivery replayed
 * after the deletion stays deleted; a deletion for a provider user nobody linked is parked and
 * applied at link. The Postgres sink removes the record's rows.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Links } from "@wearflow/core/connections/links"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import type { NormalizedRecord, Normalizer } from "@wearflow/core/normalizer"
import { Inbox, IngestQueue } from "@wearflow/core/pipeline/inbox"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import { type NotificationItem, type Provider, Providers } from "@wearflow/core/provider"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import * as PostgresSink from "@wearflow/sink-postgres"
import { Effect, Either, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import { freshDatabaseUrl } from "./support/database.ts"
import { pipelineServices } from "./support/pipeline.ts"

/** One day the provider sends: its activity summary and heart-rate samples share its id. */
interface Day {
  readonly user: string
  readonly id: string
  readonly day: string
  readonly steps: number
}

/** A deletion the provider sends: the user deleted record `id`. */
interface Gone {
  readonly user: string
  readonly id: string
}

const source = { provider: "relay", type: "ring", device_id: null, app_id: null } as const

const normalizeDay: Normalizer = (raw) => {
  const day = raw as Day
  const at = (hour: number) => `${day.day}T${String(hour).padStart(2, "0")}:00:00+00:00`
  const records: Array<NormalizedRecord> = [
    {
      kind: "summary",
      resource: "activity",
      sourceId: day.id,
      data: {
        date: at(0), calendar_date: day.day, calories_total: null, calories_active: null, steps: day.steps, daily_movement: null,
        low: null, medium: null, high: null, floors_climbed: null, heart_rate: null, wheelchair_use: null, wheelchair_push: null,
        timezone_offset: 0, source
      }
    },
    {
      kind: "timeseries",
      resource: "heartrate",
      sourceId: day.id,
      data: { source, data: [1, 2].map((hour) => ({ timestamp: at(hour), timezone_offset: 0, type: "ring", unit: "bpm", value: 60 + hour })) }
    }
  ]
  return Either.right(records)
}

/** Bodies of kind `days` carry records; bodies of kind `deletions` carry deletions. */
const relay: Provider = {
  id: "relay",
  name: "Relay",
  itemsOf: (kind, body) => {
    if (kind === "days") {
      return (body as { days: Array<Day> }).days.map((raw, index): NotificationItem => ({
        key: "days", index, user: { _tag: "UserId", id: raw.user }, carries: "record", raw
      }))
    }
    if (kind === "deletions") {
      return (body as { deleted: Array<Gone> }).deleted.map((raw, index): NotificationItem => ({
        key: "days", index, user: { _tag: "UserId", id: raw.user }, carries: "deletion", deleted: raw.id, raw
      }))
    }
    return []
  },
  normalizers: { days: normalizeDay },
  fetch: () => Effect.dieMessage("the relay sends no pointers"),
  lifecycle: () => undefined,
  requiredPermissions: [],
  resourceScopes: {},
  auth: undefined,
  backfill: undefined
}

const Services = pipelineServices({
  databaseUrl: await freshDatabaseUrl(),
  tokenKeys: [randomBytes(32)],
  filesDir: path.join(os.tmpdir(), "wearflow-deletions-files"),
  pollInterval: "20 millis",
  providers: Layer.succeed(Providers, new Map([[relay.id, relay]]))
})

const range = Either.getOrThrow(parseDateRange("2000-01-01", "2100-01-01"))

/** A Wearflow user (of a team of its own) linked to relay user `relayUser`. */
const linkedUser = (clientUserId: string, relayUser: string) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const teamId = yield* accounts.ensureTeamKey(clientUserId, Redacted.make(`key-${clientUserId}`))
    const user = yield* accounts.createUser(teamId, clientUserId)
    const linked = yield* links.link(teamId, user.user_id, relay, relayUser, {})
    return { userId: user.user_id, replayed: linked.replayed }
  })

const commit = (kind: "days" | "deletions", body: unknown) =>
  Effect.flatMap(Inbox, (inbox) => inbox.commit({ provider: "relay", kind, body: JSON.stringify(body), itemCount: 0 }))

const processItem = (inboxId: number) => Effect.flatMap(IngestWorker, (worker) => worker.process({ inboxId }))

const send = (days: ReadonlyArray<Day>) => Effect.flatMap(commit("days", { days }), processItem)
const remove = (gone: ReadonlyArray<Gone>) => Effect.flatMap(commit("deletions", { deleted: gone }), processItem)

const day = (user: string, id: string, steps = 1000, date = "2026-03-01"): Day => ({ user, id, day: date, steps })

/** What the data API holds for a user: activity steps by day, heart-rate sample count. */
const stored = (userId: string) =>
  Effect.gen(function* () {
    const query = yield* DataQuery
    const activity = yield* query.summaries(userId, "activity", range)
    const heartrate = yield* query.samples(userId, "heartrate", range)
    return { steps: activity.map((a) => a.steps), samples: heartrate.length }
  })

const eventsOf = (userId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ event_type: string; record_id: string | null; payload: { data: Record<string, unknown> } }>`
      select event_type, record_id, payload from outbox where user_id = ${userId} and event_type like 'daily.data.%' order by position`)

const typesOf = (events: ReadonlyArray<{ event_type: string }>) => events.map((e) => e.event_type)

layer(Services, { timeout: 60_000 })("deletions", (it) => {
  it.effect("remove every resource stored from the deleted source id, for that provider user only, with one event per record", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* linkedUser("alice", "relay-alice")
      const bob = yield* linkedUser("bob", "relay-bob")
      // Bob's own record has the same source id as Alice's: it is not hers to delete.
      yield* send([day("relay-alice", "doc-1", 1000, "2026-03-01"), day("relay-alice", "doc-2", 2000, "2026-03-02"), day("relay-bob", "doc-1", 3000)])
      expect(yield* stored(alice.userId)).toEqual({ steps: [1000, 2000], samples: 4 })

      const outcome = yield* remove([{ user: "relay-alice", id: "doc-1" }])
      expect(outcome).toMatchObject({ items: 1, unlinked: 0, created: 0, deleted: 2, errors: [] })
      expect(yield* stored(alice.userId)).toEqual({ steps: [2000], samples: 2 })
      expect(yield* stored(bob.userId)).toEqual({ steps: [3000], samples: 2 })
      const left = yield* sql<{ n: number }>`select count(*)::int as n from samples s join records r on r.id = s.record_id where r.user_id = ${alice.userId}`
      expect(left[0]!.n).toBe(2)

      const events = yield* eventsOf(alice.userId)
      const deletions = events.filter((e) => e.event_type.endsWith(".deleted"))
      expect(typesOf(deletions)).toEqual(["daily.data.activity.deleted", "daily.data.heartrate.deleted"])
      const created = new Map(events.filter((e) => e.event_type.endsWith(".created")).map((e) => [`${e.event_type.split(".")[2]}:${e.record_id}`, e]))
      for (const deletion of deletions) {
        const resource = deletion.event_type.split(".")[2]!
        // The record the deletion names is the one its created event named.
        expect(created.has(`${resource}:${deletion.record_id}`), resource).toBe(true)
        // Which record went, never its values.
        expect(Object.keys(deletion.payload.data).sort()).toEqual(["deleted_at", "id", "provider", "resource", "source_id", "user_id"])
        expect(deletion.payload.data).toMatchObject({ id: deletion.record_id, user_id: alice.userId, provider: "relay", resource, source_id: "doc-1" })
      }
      expect(typesOf(yield* eventsOf(bob.userId)).some((t) => t.endsWith(".deleted"))).toBe(false)
    }))

  it.effect("the same deletion twice adds nothing, nor does deleting what was never stored", () =>
    Effect.gen(function* () {
      const carol = yield* linkedUser("carol", "relay-carol")
      yield* send([day("relay-carol", "doc-1")])
      const first = yield* commit("deletions", { deleted: [{ user: "relay-carol", id: "doc-1" }] })
      expect(yield* processItem(first)).toMatchObject({ deleted: 2 })
      const before = (yield* eventsOf(carol.userId)).length
      // The same body processed again (a retry), the same deletion sent again, one never stored.
      expect(yield* processItem(first)).toMatchObject({ deleted: 0, errors: [] })
      expect(yield* remove([{ user: "relay-carol", id: "doc-1" }])).toMatchObject({ deleted: 0, errors: [] })
      expect(yield* remove([{ user: "relay-carol", id: "never-stored" }])).toMatchObject({ items: 1, deleted: 0, errors: [] })
      expect((yield* eventsOf(carol.userId)).length).toBe(before)
    }))

  it.effect("a source id the database refuses is an item problem, never a value in it; the other deletions apply", () =>
    Effect.gen(function* () {
      const gina = yield* linkedUser("gina", "relay-gina")
      yield* send([day("relay-gina", "doc-1")])
      // Postgres refuses NUL in text.
      const outcome = yield* remove([{ user: "relay-gina", id: "bad\u0000id" }, { user: "relay-gina", id: "doc-1" }])
      expect(outcome).toMatchObject({ deleted: 2, errors: [{ key: "days", index: 0 }] })
      expect(outcome.errors[0]!.message).not.toContain("bad")
      expect(yield* stored(gina.userId)).toEqual({ steps: [], samples: 0 })
    }))

  it.effect("a record sent again after its deletion is created anew; an older delivery replayed after it stays deleted", () =>
    Effect.gen(function* () {
      const dave = yield* linkedUser("dave", "relay-dave")
      const original = yield* commit("days", { days: [day("relay-dave", "doc-1", 1000)] })
      yield* processItem(original)
      yield* remove([{ user: "relay-dave", id: "doc-1" }])
      expect(yield* stored(dave.userId)).toEqual({ steps: [], samples: 0 })

      // The body from before the deletion, processed again (a replay or a late retry).
      expect(yield* processItem(original)).toMatchObject({ created: 0, updated: 0, unchanged: 2 })
      expect(yield* stored(dave.userId)).toEqual({ steps: [], samples: 0 })

      // The provider sends the record again: it is new.
      expect(yield* send([day("relay-dave", "doc-1", 1500)])).toMatchObject({ created: 2, updated: 0 })
      expect(yield* stored(dave.userId)).toEqual({ steps: [1500], samples: 2 })
      expect(typesOf(yield* eventsOf(dave.userId))).toEqual([
        "daily.data.activity.created",
        "daily.data.heartrate.created",
        "daily.data.activity.deleted",
        "daily.data.heartrate.deleted",
        "daily.data.activity.created",
        "daily.data.heartrate.created"
      ])
    }))

  it.effect("a deletion for a provider user nobody linked is parked, and applied when the user links", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      expect(yield* send([day("relay-erin", "doc-1"), day("relay-erin", "doc-2", 2000, "2026-03-02")])).toMatchObject({ unlinked: 2 })
      expect(yield* remove([{ user: "relay-erin", id: "doc-1" }])).toMatchObject({ unlinked: 1, deleted: 0 })
      const parked = yield* sql<{ n: number }>`select count(*)::int as n from unlinked_notifications where provider = 'relay' and provider_user_id = 'relay-erin'`
      expect(parked[0]!.n).toBe(2)

      const erin = yield* linkedUser("erin", "relay-erin")
      expect(erin.replayed).toBe(2)
      // Earlier tests left their bodies' own jobs in the queue: take until both replays ran.
      const queue = yield* IngestQueue
      const worker = yield* IngestWorker
      let replays = 0
      while (replays < 2) {
        const job = yield* queue.take((job) => Effect.as(worker.process(job), job))
        if (job.userKey === "relay-erin") replays++
      }
      // Whichever replay ran first, doc-1 ends deleted and doc-2 stored.
      expect(yield* stored(erin.userId)).toEqual({ steps: [2000], samples: 2 })
      const types = typesOf(yield* eventsOf(erin.userId))
      for (const resource of ["activity", "heartrate"]) {
        const count = (change: string) => types.filter((t) => t === `daily.data.${resource}.${change}`).length
        // doc-2's record, plus doc-1's when it was created before its deletion was replayed.
        expect(count("created") - count("deleted"), resource).toBe(1)
      }
    }))

  it.effect("the Postgres sink removes a deleted record's rows (summary by id, samples by record), idempotently", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const sink = yield* PostgresSink.make(sql, "wearflow_data")
      const runner = yield* SinkRunner.make(sink, { batchSize: 10_000 })
      const frank = yield* linkedUser("frank", "relay-frank")
      const rows = Effect.gen(function* () {
        const activity = yield* sql<{ steps: string }>`select steps from wearflow_data.activity where user_id = ${frank.userId} order by calendar_date`
        const samples = yield* sql<{ n: number }>`select count(*)::int as n from wearflow_data.heartrate where user_id = ${frank.userId}`
        return { steps: activity.map((a) => Number(a.steps)), samples: samples[0]!.n }
      })
      yield* send([day("relay-frank", "doc-1", 1000, "2026-03-01"), day("relay-frank", "doc-2", 2000, "2026-03-02")])
      yield* runner.once
      expect(yield* rows).toEqual({ steps: [1000, 2000], samples: 4 })

      yield* remove([{ user: "relay-frank", id: "doc-1" }])
      yield* runner.once
      expect(yield* rows).toEqual({ steps: [2000], samples: 2 })

      // Every event again, from the start (as after a crash before the cursor moved): the
      // creations and the deletion in one batch, in order, end the same.
      yield* sql`update sink_cursors set tx = '0', position = 0 where sink_id = 'postgres'`
      yield* runner.once
      expect(yield* rows).toEqual({ steps: [2000], samples: 2 })

      // Sent again, it is back.
      yield* send([day("relay-frank", "doc-1", 1200, "2026-03-01")])
      yield* runner.once
      expect(yield* rows).toEqual({ steps: [1200, 2000], samples: 4 })
    }))
})
