/**
 * The pipeline against a real Postgres: inbox → ingest worker → store + outbox → sinks.
 * Garmin bodies come from the recorded fixtures.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import { Connections } from "@wearflow/core/connections/connections"
import { makeTokenCipher } from "@wearflow/core/crypto"
import { bodyOf, Inbox, IngestQueue, ingestJobId } from "@wearflow/core/pipeline/inbox"
import { IngestWorker, make as makeIngestWorker, PartGarbage } from "@wearflow/core/pipeline/ingest"
import * as SinkRunner from "@wearflow/core/pipeline/sink-runner"
import { DataQuery, parseDateRange } from "@wearflow/core/query"
import { type OutboxEvent, SinkError } from "@wearflow/core/sink"
import * as Host from "@wearflow/core/host"
import * as Garmin from "@wearflow/garmin"
import * as PostgresSink from "@wearflow/sink-postgres"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { ConfigProvider, Context, Effect, Either, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { freshDatabaseUrl } from "./support/database.ts"
import { pipelineServices } from "./support/pipeline.ts"

const fixture = (name: string) => readFileSync(new URL(`../providers/garmin/testing/fixtures/${name}.json`, import.meta.url), "utf8")
const GARMIN_USER = "4aacafe82427c251df9c9592d0c06768"
const garmin = { id: "garmin", name: "Garmin", resourceScopes: Garmin.resourceScopes }

const url = await freshDatabaseUrl()
/** Tokens are encrypted with `currentKey`; `retiredKey` is still accepted, as during a rotation. */
const currentKey = randomBytes(32)
const retiredKey = randomBytes(32)

const Services = pipelineServices({
  databaseUrl: url,
  tokenKeys: [currentKey, retiredKey],
  filesDir: path.join(os.tmpdir(), "wearflow-pipeline-files"),
  pollInterval: "20 millis"
})

const range = Either.getOrThrow(parseDateRange("2000-01-01", "2100-01-01"))

/** A team with one user linked to `garminUserId`. */
const linkedUser = (clientUserId: string, garminUserId: string) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const links = yield* Links
    const teamId = yield* accounts.ensureTeamKey(clientUserId, Redacted.make(`key-${clientUserId}`))
    const user = yield* accounts.createUser(teamId, clientUserId)
    yield* links.link(teamId, user.user_id, garmin, garminUserId, {})
    return user
  })

const ingest = (body: string) =>
  Effect.gen(function* () {
    const inboxId = yield* (yield* Inbox).commit({ provider: "garmin", kind: "push", body, itemCount: 0 })
    return yield* (yield* IngestWorker).process({ inboxId })
  })

const outboxCount = (userId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`select count(*)::int as n from outbox where user_id = ${userId}`).pipe(
    Effect.map((rows) => rows[0]!.n)
  )

layer(Services, { timeout: 60_000 })("pipeline", (it) => {
  it.effect("jobs processed at the same time each get their own outcome and events; again, all unchanged", () =>
    Effect.gen(function* () {
      const names = ["together-1", "together-2", "together-3", "together-4"]
      const users = yield* Effect.forEach(names, (name) => linkedUser(name, `garmin-${name}`))
      const bodies = names.map((name) => fixture("dailies").replaceAll(GARMIN_USER, `garmin-${name}`))
      const first = yield* Effect.all(bodies.map(ingest), { concurrency: "unbounded" })
      for (const outcome of first) expect(outcome).toMatchObject({ items: 2, created: 4, updated: 0, unchanged: 0, errors: [] })
      const counted = yield* Effect.forEach(users, (user) => outboxCount(user.user_id))
      const again = yield* Effect.all(bodies.map(ingest), { concurrency: "unbounded" })
      for (const outcome of again) expect(outcome).toMatchObject({ items: 2, created: 0, updated: 0, unchanged: 4, errors: [] })
      expect(yield* Effect.forEach(users, (user) => outboxCount(user.user_id))).toEqual(counted)
    }))

  it.effect("a batch of jobs is processed as one: each its own outcome and events; a job whose step fails fails alone, the others stand", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const inbox = yield* Inbox
      const worker = yield* IngestWorker
      const names = ["batch-1", "batch-2", "batch-3"]
      const users = yield* Effect.forEach(names, (name) => linkedUser(name, `garmin-${name}`))
      const ids = yield* Effect.forEach(names, (name) =>
        inbox.commit({ provider: "garmin", kind: "push", body: fixture("dailies").replaceAll(GARMIN_USER, `garmin-${name}`), itemCount: 0 }))
      // Two jobs of one body in the batch too: its records are written once, its events emitted once.
      const exits = yield* worker.processBatch([...ids, ids[0]!].map((inboxId) => ({ inboxId })))
      expect(exits.map((exit) => exit._tag)).toEqual(["Success", "Success", "Success", "Success"])
      const outcomes = exits.map((exit) => (exit._tag === "Success" ? exit.value : undefined))
      for (const outcome of outcomes.slice(0, 3)) expect(outcome).toMatchObject({ items: 2, created: 4, updated: 0, unchanged: 0, errors: [] })
      expect(outcomes[3]).toMatchObject({ items: 2, created: 0, updated: 0, unchanged: 4, errors: [] })
      // The link's event and four data events each.
      expect(yield* Effect.forEach(users, (user) => outboxCount(user.user_id))).toEqual([5, 5, 5])
      const [stored] = yield* sql<{ n: number }>`select count(*)::int as n from inbox where id in ${sql.in(ids)} and processed_at is not null`
      expect(stored!.n).toBe(3)

      // The outcome of one job cannot be recorded (a statement all the batch's jobs share): it
      // fails alone, with the database's error; the others are stored, each event once.
      const more = ["batch-4", "batch-5", "batch-6"]
      const moreUsers = yield* Effect.forEach(more, (name) => linkedUser(name, `garmin-${name}`))
      const moreIds = yield* Effect.forEach(more, (name) =>
        inbox.commit({ provider: "garmin", kind: "push", body: fixture("dailies").replaceAll(GARMIN_USER, `garmin-${name}`), itemCount: 0 }))
      yield* sql.unsafe(`create or replace function refuse_outcome() returns trigger language plpgsql as $$ begin raise exception 'refused'; end $$`)
      yield* sql.unsafe(`create trigger refuse_outcome before update on inbox for each row when (new.id = ${moreIds[1]} and new.outcome is not null) execute function refuse_outcome()`)
      const failing = yield* worker.processBatch(moreIds.map((inboxId) => ({ inboxId }))).pipe(
        Effect.ensuring(Effect.orDie(sql.unsafe(`drop trigger refuse_outcome on inbox`)))
      )
      expect(failing.map((exit) => exit._tag)).toEqual(["Success", "Failure", "Success"])
      expect(yield* Effect.forEach(moreUsers, (user) => outboxCount(user.user_id))).toEqual([5, 5, 5])
      const processed = yield* sql<{ id: string }>`select id from inbox where id in ${sql.in(moreIds)} and processed_at is not null order by id`
      expect(processed.map((row) => Number(row.id))).toEqual([moreIds[0], moreIds[2]])
      // Taken again, the failed job finishes; its records were stored once.
      expect(yield* worker.process({ inboxId: moreIds[1]! })).toMatchObject({ items: 2, created: 0, unchanged: 4, errors: [] })
      expect(yield* outboxCount(moreUsers[1]!.user_id)).toBe(5)
    }))

  it.effect("in one batch, data answers only its own users' history requests: historical for them, counted once in their window", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const inbox = yield* Inbox
      const asking = yield* linkedUser("history-asking", "garmin-history-asking")
      const live = yield* linkedUser("history-live", "garmin-history-live")
      // An open request of the first user's for every daily, with ends far from the data (never covered).
      const backfillId = crypto.randomUUID()
      const windowId = crypto.randomUUID()
      yield* sql`insert into backfills (id, team_id, user_id, provider, linked_at, origin, status, range_end)
                 values (${backfillId}, ${asking.team_id}, ${asking.user_id}, 'garmin', now(), 'test', 'running', '2100-01-01')`
      yield* sql`insert into backfill_windows (id, backfill_id, user_id, seq, type, resource, keys, range_start, range_end, tracked_until, status, requested_at)
                 values (${windowId}, ${backfillId}, ${asking.user_id}, 0, 'dailies', 'activity', ${["dailies"]}, '2000-01-01', '2100-01-01', '2100-01-01', 'requested', now())`
      const ids = yield* Effect.forEach(["garmin-history-asking", "garmin-history-live"], (garminUser) =>
        inbox.commit({ provider: "garmin", kind: "push", body: fixture("dailies").replaceAll(GARMIN_USER, garminUser), itemCount: 0 }))
      const exits = yield* (yield* IngestWorker).processBatch(ids.map((inboxId) => ({ inboxId })))
      expect(exits.map((exit) => exit._tag)).toEqual(["Success", "Success"])
      const historical = (userId: string) =>
        sql<{ historical: boolean }>`select historical from outbox where user_id = ${userId} and record_id is not null`.pipe(
          Effect.map((rows) => rows.map((row) => row.historical))
        )
      expect(yield* historical(asking.user_id)).toEqual([true, true, true, true])
      expect(yield* historical(live.user_id)).toEqual([false, false, false, false])
      // The fixture's two dailies, once: not the other user's as well.
      const [window] = yield* sql<{ items: number }>`select items from backfill_windows where id = ${windowId}`
      expect(window!.items).toBe(2)
    }))

  it.effect("normalizes a PUSH body into records and one event per record; an identical re-delivery adds nothing", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("idempotent", "garmin-idempotent")
      const body = fixture("dailies").replaceAll(GARMIN_USER, "garmin-idempotent")
      const first = yield* ingest(body)
      expect(first).toMatchObject({ items: 2, unlinked: 0, created: 4, updated: 0, unchanged: 0, errors: [] })
      // Four data events, after the link's provider.connection.created.
      expect(yield* outboxCount(user.user_id)).toBe(5)

      const again = yield* ingest(body)
      expect(again).toMatchObject({ created: 0, updated: 0, unchanged: 4 })
      expect(yield* outboxCount(user.user_id)).toBe(5)

      const activity = yield* (yield* DataQuery).summaries(user.user_id, "activity", range)
      expect(activity.map((a) => a.steps)).toEqual([4210, 3305])
    }))

  it.effect("the worker tells PartGarbage the characters of the large bodies' parts it processed, and nothing of whole bodies", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const inbox = yield* Inbox
      yield* linkedUser("part-garbage", "garmin-part-garbage")
      const told: Array<number> = []
      const worker = yield* makeIngestWorker().pipe(Effect.provideService(PartGarbage, { processed: (characters) => Effect.sync(() => void told.push(characters)) }))
      const daily = JSON.parse(fixture("dailies")).dailies[0]
      const records = Array.from({ length: 60 }, (_, i) => ({ ...daily, userId: "garmin-part-garbage", summaryId: `part-garbage-${i}`, filler: "x".repeat(2000) }))
      const bodyId = yield* inbox.commit({ provider: "garmin", kind: "push", ...bodyOf("dailies", records) })
      const parts = yield* sql<{ id: string; characters: number }>`select id, length(body) as characters from inbox where part_of = ${bodyId} order by part_index`
      expect(parts.length).toBeGreaterThan(1)
      const exits = yield* worker.processBatch(parts.map((part) => ({ inboxId: Number(part.id) })))
      expect(exits.every((exit) => exit._tag === "Success")).toBe(true)
      expect(told).toEqual([parts.reduce((sum, part) => sum + part.characters, 0)])

      const whole = yield* inbox.commit({ provider: "garmin", kind: "push", body: fixture("dailies").replaceAll(GARMIN_USER, "garmin-part-garbage"), itemCount: 0 })
      yield* worker.process({ inboxId: whole })
      expect(told).toHaveLength(1)
    }).pipe(Effect.scoped))

  it.effect("the inbox's one-statement commit writes the very job IngestQueue.offer would", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* IngestQueue
      const inboxId = yield* (yield* Inbox).commit({ provider: "garmin", kind: "push", body: "{}", itemCount: 0 })
      // The same job offered through the library under another id, to compare the rows.
      const referenceId = `reference-${inboxId}`
      yield* queue.offer({ inboxId }, { id: referenceId })
      const rows = yield* sql<{ id: string; queue_name: string; element: string; completed: boolean; attempts: number }>`
        select id, queue_name, element, completed, attempts from ingest_queue where id in (${ingestJobId(inboxId)}, ${referenceId}) order by sequence`
      expect(rows.map((r) => r.id)).toEqual([ingestJobId(inboxId), referenceId])
      const [ours, library] = rows.map(({ id: _, element, ...rest }) => ({ ...rest, element: JSON.parse(element) }))
      expect(ours).toEqual(library)
      yield* sql`delete from ingest_queue where id = ${referenceId}`
    }))

  it.effect("concurrent commits share transactions; each gets its own id, body and job, and a body Postgres refuses fails alone", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const inbox = yield* Inbox
      const commitAll = (bodies: ReadonlyArray<string>) =>
        Effect.forEach(bodies, (body) => Effect.either(inbox.commit({ provider: "garmin", kind: "push", body, itemCount: 0 })), { concurrency: "unbounded" })
      const stored = (ids: ReadonlyArray<number>) =>
        sql<{ id: string; body: string; job: string | null; tx: string }>`
          select i.id, i.body, q.id as job, i.xmin::text as tx from inbox i left join ingest_queue q on q.id = 'inbox-' || i.id
          where i.id in ${sql.in(ids)} order by i.id`

      const bodies = Array.from({ length: 40 }, (_, i) => `{"n":${i}}`)
      const ids = (yield* commitAll(bodies)).map(Either.getOrThrow)
      const rows = yield* stored(ids)
      expect(new Map(rows.map((r) => [Number(r.id), r.body]))).toEqual(new Map(ids.map((id, i) => [id, bodies[i]!])))
      expect(rows.every((r) => r.job === ingestJobId(Number(r.id)))).toBe(true)
      // Fewer transactions than bodies: they were committed in groups.
      expect(new Set(rows.map((r) => r.tx)).size).toBeLessThan(ids.length)

      // A NUL character (unescaped, so not JSON a handler would pass on) is refused by Postgres in text.
      const mixed = Array.from({ length: 40 }, (_, i) => (i === 17 ? `{"refused":"\u0000"}` : `{"m":${i}}`))
      const results = yield* commitAll(mixed)
      expect(results.map((r, i) => [i, r._tag])).toEqual(mixed.map((_, i) => [i, i === 17 ? "Left" : "Right"]))
      expect(results[17]).toMatchObject({ left: { _tag: "InboxUnavailable" } })
      const kept = results.flatMap((r, i) => (r._tag === "Right" ? [[r.right, mixed[i]!] as const] : []))
      expect(new Map((yield* stored(kept.map(([id]) => id))).map((r) => [Number(r.id), r.body]))).toEqual(new Map(kept))
    }))

  it.effect("a changed record emits .updated, and an older delivery never overwrites a newer one", () =>
    Effect.gen(function* () {
      const user = yield* linkedUser("revisions", "garmin-revisions")
      const original = JSON.parse(fixture("dailies").replaceAll(GARMIN_USER, "garmin-revisions"))
      const revised = structuredClone(original)
      revised.dailies[0].steps = 5000
      const sql = yield* SqlClient.SqlClient

      yield* ingest(JSON.stringify(original))
      const update = yield* ingest(JSON.stringify(revised))
      expect(update).toMatchObject({ created: 0, updated: 1, unchanged: 3 })
      const events = yield* sql<{ event_type: string }>`select event_type from outbox where user_id = ${user.user_id} order by position`
      expect(events.map((e) => e.event_type).filter((t) => t.endsWith(".updated"))).toEqual(["daily.data.activity.updated"])

      // Reprocessing the older inbox item (a replay, or a late retry) keeps the newer content.
      const [older] = yield* sql<{ id: string }>`select id from inbox where body like ${"%garmin-revisions%"} order by id limit 1`
      yield* (yield* IngestWorker).process({ inboxId: Number(older!.id) })
      const activity = yield* (yield* DataQuery).summaries(user.user_id, "activity", range)
      expect(activity[0]!.steps).toBe(5000)
    }))

  it.effect("parks items for a Garmin user nobody linked, and replays them when the user is linked", () =>
    Effect.gen(function* () {
      const accounts = yield* Accounts
      const links = yield* Links
      const outcome = yield* ingest(fixture("sleeps").replaceAll(GARMIN_USER, "garmin-late"))
      expect(outcome).toMatchObject({ items: 2, unlinked: 2, created: 0 })

      const teamId = yield* accounts.ensureTeamKey("late", Redacted.make("key-late"))
      const user = yield* accounts.createUser(teamId, "late")
      const linked = yield* links.link(teamId, user.user_id, garmin, "garmin-late", {})
      expect(linked.replayed).toBe(1)

      const queue = yield* IngestQueue
      const worker = yield* IngestWorker
      // Earlier tests left their own jobs in the queue; take until the replay comes up.
      let replay = yield* queue.take((job) => Effect.map(worker.process(job), (outcome) => ({ job, outcome })))
      while (replay.job.userKey !== "garmin-late") {
        replay = yield* queue.take((job) => Effect.map(worker.process(job), (outcome) => ({ job, outcome })))
      }
      // The body's own first job may run first now that the user is linked; either way, once.
      expect(replay.outcome).toMatchObject({ items: 2, unlinked: 0 })
      // Two sleeps; the first also carries a nap, respiration and SpO2 samples.
      expect(replay.outcome.created + replay.outcome.unchanged).toBe(5)
      const sleep = yield* (yield* DataQuery).summaries(user.user_id, "sleep", range)
      expect(sleep.map((s) => [s.type, s.deep])).toEqual([["long_sleep", 9446], ["long_sleep", 0], ["acknowledged_nap", null]])
    }))

  it.effect("fans one Garmin account out to every user linked to it", () =>
    Effect.gen(function* () {
      const accounts = yield* Accounts
      const links = yield* Links
      const a = yield* linkedUser("fan-a", "garmin-shared")
      const teamId = yield* accounts.ensureTeamKey("fan-a", Redacted.make("key-fan-a"))
      const b = yield* accounts.createUser(teamId, "fan-b")
      yield* links.link(teamId, b.user_id, garmin, "garmin-shared", {})
      const outcome = yield* ingest(fixture("activities").replaceAll(GARMIN_USER, "garmin-shared"))
      expect(outcome.created).toBe(4)
      for (const user of [a, b]) {
        const workouts = yield* (yield* DataQuery).summaries(user.user_id, "workouts", range)
        expect(workouts.map((w) => w.distance)).toEqual([519818.125, 4322.357])
      }
    }))

  it.effect("jobs of one Garmin user at the same step, their recipients read together, each get every linked user once", () =>
    Effect.gen(function* () {
      const links = yield* Links
      const user = yield* linkedUser("together", "garmin-together")
      const ref = { _tag: "UserId", id: "garmin-together" } as const
      // Concurrent look-ups are served by one statement (core/storage/batched.ts).
      const found = yield* Effect.all(
        [1, 2, 3].map((inboxId) => links.recipientsOrPark("garmin", ref, inboxId, 1)),
        { concurrency: "unbounded" }
      )
      for (const recipients of found) expect(recipients.map((r) => r.userId)).toEqual([user.user_id])
    }))

  it.effect("stores tokens encrypted, never as plaintext", () =>
    Effect.gen(function* () {
      const accounts = yield* Accounts
      const links = yield* Links
      const teamId = yield* accounts.ensureTeamKey("tokens", Redacted.make("key-tokens"))
      const user = yield* accounts.createUser(teamId, "tokens")
      yield* links.link(teamId, user.user_id, garmin, "garmin-tokens", {
        accessToken: Redacted.make("plain-access-token-123"),
        refreshToken: Redacted.make("plain-refresh-token-456")
      })
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ access_token: Uint8Array; refresh_token: Uint8Array }>`
        select access_token, refresh_token from provider_connections where user_id = ${user.user_id}`
      expect(Buffer.from(row!.access_token).toString("latin1")).not.toContain("plain-access-token")
      expect(Buffer.from(row!.refresh_token).length).toBeGreaterThan(33)
    }))

  it.effect("key rotation: tokens under a retired key are re-encrypted with the current one", () =>
    Effect.gen(function* () {
      const accounts = yield* Accounts
      const links = yield* Links
      const sql = yield* SqlClient.SqlClient
      const teamId = yield* accounts.ensureTeamKey("rotation", Redacted.make("key-rotation"))
      const user = yield* accounts.createUser(teamId, "rotation")
      yield* links.link(teamId, user.user_id, garmin, "garmin-rotation", { accessToken: Redacted.make("rotating-access-token") })
      const retired = makeTokenCipher(Redacted.make([retiredKey]))
      yield* sql`update provider_connections set access_token = ${retired.encrypt(Redacted.make("rotating-access-token"))} where user_id = ${user.user_id}`

      expect(yield* links.reencryptTokens()).toBeGreaterThanOrEqual(1)
      expect(yield* links.reencryptTokens()).toBe(0)
      const [row] = yield* sql<{ access_token: Uint8Array }>`select access_token from provider_connections where user_id = ${user.user_id}`
      const currentOnly = makeTokenCipher(Redacted.make([currentKey]))
      expect(Redacted.value(yield* currentOnly.decrypt(row!.access_token))).toBe("rotating-access-token")
      expect((yield* Effect.either(retired.decrypt(row!.access_token)))._tag).toBe("Left")
      const credentials = yield* (yield* Connections).credentialsFor("garmin", { _tag: "UserId", id: "garmin-rotation" })
      expect(Redacted.value(credentials!.bearer!)).toBe("rotating-access-token")
    }))

  it.effect("a sink acknowledges only delivered batches: a failing sink keeps its cursor, ingestion goes on", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const received: Array<OutboxEvent> = []
      let failures = 2
      const flaky = {
        id: `flaky-${randomBytes(3).toString("hex")}`,
        deliver: (batch: ReadonlyArray<OutboxEvent>) =>
          failures-- > 0
            ? Effect.fail(new SinkError({ message: "destination down", retryable: true }))
            : Effect.sync(() => void received.push(...batch)),
        health: Effect.void
      }
      const runner = yield* SinkRunner.make(flaky, { batchSize: 1000 })
      yield* linkedUser("flaky", "garmin-flaky")
      yield* ingest(fixture("activities").replaceAll(GARMIN_USER, "garmin-flaky"))
      const total = (yield* sql<{ n: number }>`select count(*)::int as n from outbox`)[0]!.n

      expect((yield* Effect.either(runner.once))._tag).toBe("Left")
      expect((yield* Effect.either(runner.once))._tag).toBe("Left")
      const [cursor] = yield* sql<{ position: string }>`select position from sink_cursors where sink_id = ${flaky.id}`
      expect(cursor!.position).toBe("0")

      // Ingestion is unaffected by the failing sink.
      const sleeps = (yield* ingest(fixture("sleeps").replaceAll(GARMIN_USER, "garmin-flaky"))).created
      expect(sleeps).toBe(5)

      yield* runner.once
      expect(received.length).toBe(total + sleeps)
      expect(new Set(received.map((e) => e.eventId)).size).toBe(received.length)
      yield* runner.once
      expect(received.length).toBe(total + sleeps)
    }))

  it.effect("dead-letters only the events a sink rejects for good, delivers the rest, and moves on", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const id = `picky-${randomBytes(3).toString("hex")}`
      const delivered: Array<string> = []
      const picky = {
        id,
        // Refuses any batch holding a heartrate event; takes everything else.
        deliver: (batch: ReadonlyArray<OutboxEvent>) =>
          batch.some((e) => e.eventType.includes(".heartrate."))
            ? Effect.fail(new SinkError({ message: "no timeseries here", retryable: false }))
            : Effect.sync(() => void delivered.push(...batch.map((e) => e.eventId))),
        health: Effect.void
      }
      const runner = yield* SinkRunner.make(picky, { batchSize: 10_000 })
      yield* runner.once
      const all = yield* sql<{ event_id: string; event_type: string }>`select event_id, event_type from outbox`
      const dead = yield* sql<{ event_id: string }>`select event_id from sink_dead_letters where sink_id = ${id}`
      const heartrate = all.filter((e) => e.event_type.includes(".heartrate.")).map((e) => e.event_id)
      expect(heartrate.length).toBeGreaterThan(0)
      expect(dead.map((d) => d.event_id).sort()).toEqual(heartrate.sort())
      expect(delivered.length).toBe(all.length - heartrate.length)
      const [cursor] = yield* sql<{ position: string }>`select position from sink_cursors where sink_id = ${id}`
      expect(Number(cursor!.position)).toBeGreaterThan(0)
    }))

  it.effect("a sink that opts out of historical data is passed over it, and still gets everything else", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const user = yield* linkedUser("history", "garmin-history")
      const insert = (historical: boolean) =>
        sql`insert into outbox (event_id, event_type, team_id, user_id, payload, historical)
            values (${crypto.randomUUID()}, 'daily.data.activity.created', ${user.team_id}, ${user.user_id}, '{}', ${historical})
            returning event_id`.pipe(Effect.map((rows) => rows[0]!.event_id as string))
      const live = yield* insert(false)
      const history = yield* insert(true)
      const notice = (yield* sql<{ event_id: string }>`
        insert into outbox (event_id, event_type, team_id, user_id, payload)
        values (${crypto.randomUUID()}, 'historical.data.activity.created', ${user.team_id}, ${user.user_id}, '{}') returning event_id`)[0]!.event_id
      const receivedBy = (historicalData: boolean) =>
        Effect.gen(function* () {
          const received: Array<string> = []
          const runner = yield* SinkRunner.make({
            id: `history-${historicalData}-${randomBytes(3).toString("hex")}`,
            deliver: (batch) => Effect.sync(() => void received.push(...batch.map((e) => e.eventId))),
            health: Effect.void,
            historicalData
          }, { batchSize: 10_000 })
          yield* runner.once
          return received.filter((id) => [live, history, notice].includes(id))
        })
      expect(yield* receivedBy(true)).toEqual([live, history, notice])
      expect(yield* receivedBy(false)).toEqual([live, notice])
    }))

  it.effect("a batch stops at its payload byte limit (one event at least), and every event still arrives once, in order", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const user = yield* linkedUser("bytes", "garmin-bytes")
      // Three events of about 3 kB each against a 5 kB limit: no batch may hold two of them.
      const big = yield* Effect.forEach([1, 2, 3], (n) =>
        sql<{ event_id: string }>`
          insert into outbox (event_id, event_type, team_id, user_id, payload)
          values (${crypto.randomUUID()}, 'daily.data.activity.created', ${user.team_id}, ${user.user_id},
                  ${JSON.stringify({ n, padding: "x".repeat(3000) })}::jsonb) returning event_id`.pipe(Effect.map((rows) => rows[0]!.event_id)))
      const batches: Array<ReadonlyArray<string>> = []
      const runner = yield* SinkRunner.make(
        { id: `bytes-${randomBytes(3).toString("hex")}`, deliver: (batch) => Effect.sync(() => void batches.push(batch.map((e) => e.eventId))), health: Effect.void },
        { batchSize: 10_000, batchBytes: 5000 }
      )
      for (let round = yield* runner.once; round._tag === "Delivered" && round.count > 0; round = yield* runner.once) {
        // A batch cut by bytes says so: the runner goes straight on to the next one.
        if (batches.flat().includes(big[0]!) && !batches.flat().includes(big[2]!)) expect(round).toMatchObject({ full: true })
      }
      const received = batches.flat()
      expect(received.filter((id) => big.includes(id))).toEqual(big)
      expect(new Set(received).size).toBe(received.length)
      for (const batch of batches) expect(batch.filter((id) => big.includes(id)).length).toBeLessThanOrEqual(1)
    }))

  it.effect("never skips an event whose transaction commits after later ones were read", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const received: Array<string> = []
      const id = `ordered-${randomBytes(3).toString("hex")}`
      const runner = yield* SinkRunner.make(
        { id, deliver: (batch) => Effect.sync(() => void received.push(...batch.map((e) => e.eventId))), health: Effect.void },
        { batchSize: 10_000 }
      )
      const user = yield* linkedUser("ordered", "garmin-ordered")
      yield* runner.once
      const before = received.length

      // A slow transaction takes an outbox position, then a fast one commits after it.
      const slow = new pg.Client({ connectionString: Redacted.value(url) })
      yield* Effect.promise(() => slow.connect())
      const insert = (eventId: string) =>
        `insert into outbox (event_id, event_type, team_id, user_id, payload)
         values ('${eventId}', 'daily.data.activity.created', '${user.team_id}', '${user.user_id}', '{}')`
      const slowId = crypto.randomUUID()
      const fastId = crypto.randomUUID()
      yield* Effect.promise(() => slow.query("begin").then(() => slow.query(insert(slowId))))
      yield* sql.unsafe(insert(fastId))

      yield* runner.once
      expect(received.slice(before)).toEqual([])

      yield* Effect.promise(() => slow.query("commit").then(() => slow.end()))
      yield* runner.once
      expect(received.slice(before).sort()).toEqual([slowId, fastId].sort())
    }))

  it.effect("the Postgres sink writes typed tables, idempotently", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const sink = yield* PostgresSink.make(sql, "wearflow_data")
      const runner = yield* SinkRunner.make(sink, { batchSize: 10_000 })
      const user = yield* linkedUser("typed", "garmin-typed")
      yield* ingest(fixture("dailies").replaceAll(GARMIN_USER, "garmin-typed"))
      yield* runner.once

      const rows = yield* sql<{ steps: string; calendar_date: Date; date: Date; heart_rate: { min_bpm: number }; provider: string }>`
        select steps, calendar_date, date, heart_rate, provider from wearflow_data.activity where user_id = ${user.user_id} order by calendar_date`
      expect(rows.map((r) => Number(r.steps))).toEqual([4210, 3305])
      expect(rows[0]!.date).toBeInstanceOf(Date)
      expect(rows[0]!.heart_rate.min_bpm).toBe(59)
      expect(rows[0]!.provider).toBe("garmin")

      const types = yield* sql<{ column_name: string; data_type: string }>`
        select column_name, data_type from information_schema.columns where table_schema = 'wearflow_data' and table_name = 'activity'`
      const typeOf = Object.fromEntries(types.map((t) => [t.column_name, t.data_type]))
      expect(typeOf).toMatchObject({
        id: "uuid",
        steps: "bigint",
        daily_movement: "double precision",
        calendar_date: "date",
        date: "timestamp with time zone",
        heart_rate: "jsonb",
        wheelchair_use: "boolean"
      })
      const samples = yield* sql<{ n: number }>`select count(*)::int as n from wearflow_data.heartrate where user_id = ${user.user_id}`
      expect(samples[0]!.n).toBe(16)

      // Re-sending the same events (as after a crash before the cursor moved) duplicates nothing.
      const events = yield* sql<{ event_id: string }>`select event_id from outbox where user_id = ${user.user_id} and event_type like 'daily.data.%'`
      expect(events.length).toBe(4)
      yield* sql`update sink_cursors set tx = '0', position = 0 where sink_id = 'postgres'`
      yield* runner.once
      const again = yield* sql<{ n: number }>`select count(*)::int as n from wearflow_data.activity where user_id = ${user.user_id}`
      expect(again[0]!.n).toBe(2)
    }))

  it.effect("the Postgres sink can write to another database and schema (SINK_POSTGRES_URL / _SCHEMA)", () =>
    Effect.gen(function* () {
      const elsewhere = yield* Effect.promise(() => freshDatabaseUrl())
      const env = ConfigProvider.fromMap(new Map([["SINK_POSTGRES_URL", Redacted.value(elsewhere)], ["SINK_POSTGRES_SCHEMA", "analytics"]]))
      const context = yield* Layer.build(Host.load(PostgresSink.plugin, env).pipe(Layer.provide(FetchHttpClient.layer)))
      const sink = Context.get(context, PostgresSink.PostgresSink)
      const runner = yield* SinkRunner.make(sink, { batchSize: 10_000 })
      const user = yield* linkedUser("elsewhere", "garmin-elsewhere")
      yield* ingest(fixture("sleeps").replaceAll(GARMIN_USER, "garmin-elsewhere"))
      yield* runner.once

      const other = new pg.Client({ connectionString: Redacted.value(elsewhere) })
      yield* Effect.promise(() => other.connect())
      const rows = yield* Effect.promise(() => other.query("select deep, total from analytics.sleep where user_id = $1 order by calendar_date", [user.user_id]))
      yield* Effect.promise(() => other.end())
      // The two nights, then the first night's nap (2023).
      expect(rows.rows.map((r) => [r.deep, r.total])).toEqual([[9446, 11588], [0, 0], [null, 600]])
    }).pipe(Effect.scoped))
})

describe("date ranges", () => {
  it.each([
    ["2016-01-11", "Day"],
    ["2016-01-11T10:00:00Z", "Instant"],
    ["2016-01-11T10:00:00.123+02:00", "Instant"]
  ])("accepts %s", (text, tag) => {
    expect(Either.getOrThrow(parseDateRange(text, undefined)).start._tag).toBe(tag)
  })

  it.each(["yesterday", "2016-13-45", "2016-02-30", "2016-02-30T10:00:00Z", "11/01/2016", ""])("rejects %j with a message naming the parameter", (text) => {
    const result = parseDateRange(text, undefined)
    expect(Either.isLeft(result) && result.left.message).toContain("start_date")
  })

  it("rejects an end before the start", () => {
    expect(Either.isLeft(parseDateRange("2016-02-01", "2016-01-01"))).toBe(true)
  })
})
