/**
 * Messages claimed at fan-out are sent at once, before the sink runner's round commits, and
 * stay at-least-once: a round that rolls back after sending is fanned out again and its
 * messages sent again under the same ids; a message handed to its lane but never attempted
 * when the process stopped is sent by the next one. Real Postgres, a loopback receiver, the
 * real `svix` verifier.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { SqlClient } from "@effect/sql"
import { Accounts } from "@wearflow/core/tenancy/accounts"
import { Links } from "@wearflow/core/connections/links"
import * as Parked from "@wearflow/core/pipeline/parked"
import * as ApiKeyAuth from "@wearflow/core/tenancy/api-key-auth"
import { layerTokenCipher } from "@wearflow/core/crypto"
import * as Engine from "@wearflow/core/engine"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { Inbox, IngestQueue, layerQueueStore } from "@wearflow/core/pipeline/inbox"
import { RecordStore } from "@wearflow/core/pipeline/store"
import * as Registry from "@wearflow/core/registry"
import type { OutboxEntry } from "@wearflow/core/sink"
import * as Database from "@wearflow/core/storage/database"
import { freshDatabase, stopEmbedded } from "@wearflow/core/testing/database"
import { ConfigProvider, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Webhook } from "svix"
import { eventually } from "../../test/support/server.ts"
import { type Receiver, startReceiver } from "../../test/support/webhook-receiver.ts"
import { Deliveries, plugin, WebhookEndpoints } from "./mod.ts"

const SECRET = `whsec_${randomBytes(24).toString("base64")}`
const cipherKey = Redacted.make([randomBytes(32)])
// One address for both "processes": the second frees what the first held when it stopped.
const runnerAddress = { host: "webhooks-fan-out", port: 42_000 + Math.floor(Math.random() * 1000) }

/** One day's activity, `steps` making each version a new event. */
const activity = (day: string, steps: number): NormalizedRecord => ({
  kind: "summary",
  resource: "activity",
  sourceId: `fan-out-activity-${day}`,
  data: {
    date: `${day}T00:00:00.000Z`, calendar_date: day, calories_total: 2100, calories_active: 400, steps,
    daily_movement: null, low: null, medium: null, high: null, floors_climbed: null, heart_rate: null,
    wheelchair_use: null, wheelchair_push: null, timezone_offset: 3600,
    source: { provider: "fan-out", type: "watch", device_id: null, app_id: null }
  }
})

let databaseUrl: Redacted.Redacted<string>
let receiver: Receiver

/** The sink in a runtime of its own: one "process". */
// Typed loosely: the registry's layer does not name the plugin's services (as in the conformance kit).
const startProcess = (): ManagedRuntime.ManagedRuntime<any, any> => {
  const Storage = Layer.mergeAll(IngestQueue.layer.pipe(Layer.provide(layerQueueStore({}))), layerTokenCipher(cipherKey)).pipe(
    Layer.provideMerge(Database.layer({ url: Option.some(databaseUrl), dataDir: "unused" }))
  )
  const Base = Layer.mergeAll(Links.Default.pipe(Layer.provide(Parked.layer), Layer.provideMerge(Accounts.Default)), Inbox.Default, RecordStore.Default, FetchHttpClient.layer).pipe(
    Layer.provideMerge(Engine.layer({ runnerAddress })),
    Layer.provideMerge(Storage)
  )
  const env = { WEARFLOW_WEBHOOK_ALLOW_HTTP: "true", WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true", WEARFLOW_WEBHOOK_ENDPOINT_CONCURRENCY: "1" }
  return ManagedRuntime.make(
    Registry.layer([plugin], ConfigProvider.fromMap(new Map(Object.entries(env)))).pipe(Layer.provide(ApiKeyAuth.layer), Layer.provideMerge(Base))
  )
}

/** A team with an endpoint at the receiver, and `count` new events of one of its users, as the runner hands them over. */
const eventsOf = (team: string, count: number) =>
  Effect.gen(function* () {
    const accounts = yield* Accounts
    const teamId = yield* accounts.ensureTeamKey(team, Redacted.make(`${team}-key`))
    yield* (yield* WebhookEndpoints).create(teamId, { url: receiver.url, secret: Redacted.make(SECRET) })
    const user = yield* accounts.createUser(teamId, `${team}-user`)
    const inboxId = yield* (yield* Inbox).commit({ provider: "fan-out", kind: "records" as never, body: "{}", itemCount: 0 })
    const store = yield* RecordStore
    for (let i = 0; i < count; i++) {
      yield* store.write({ userId: user.user_id, teamId, clientUserId: user.client_user_id }, "fan-out", [activity(`2026-11-${String(i + 1).padStart(2, "0")}`, 1000 + i)], inboxId)
    }
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ position: string; event_id: string; event_type: string; team_id: string; user_id: string; record_id: string | null; created_at: Date; historical: boolean }>`
      select position::text, event_id, event_type, team_id, user_id, record_id, created_at, historical from outbox where user_id = ${user.user_id} order by position`
    return rows.map((row): OutboxEntry => ({
      position: row.position, eventId: row.event_id, eventType: row.event_type, teamId: row.team_id, userId: row.user_id,
      recordId: row.record_id, createdAt: row.created_at, historical: row.historical
    }))
  })

/** A runner's round that fans `events` out and commits, then tells the sink it ended. */
const committedRound = (events: ReadonlyArray<OutboxEntry>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const deliveries = yield* Deliveries
    yield* sql.withTransaction(deliveries.fanOut(events))
    yield* deliveries.roundsEnded
  })

const messagesOf = (events: ReadonlyArray<OutboxEntry>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ id: string; status: string; attempts: number }>`
      select id, status, attempts from webhook_messages where event_id = any(${events.map((e) => e.eventId)}::uuid[]) order by seq`)

const allDelivered = (count: number) => <M extends { readonly status: string }>(messages: ReadonlyArray<M>) =>
  messages.length === count && messages.every((m) => m.status === "delivered") ? messages : undefined

beforeAll(async () => {
  receiver = await startReceiver()
  databaseUrl = await freshDatabase()
})

afterAll(async () => {
  await receiver?.close()
  await stopEmbedded()
})

describe("webhooks fan-out", () => {
  it("sends before the round commits; a round rolled back after sending is fanned out again, its messages sent again under the same ids, every send recorded", async () => {
    const runtime = startProcess()
    try {
      const events = await runtime.runPromise(eventsOf("fan-out-rollback", 3))
      expect(events).toHaveLength(3)
      const before = receiver.received.length
      // The round sends while its transaction is open, then rolls back.
      const rolledBack = await runtime.runPromise(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const deliveries = yield* Deliveries
          yield* deliveries.fanOut(events).pipe(
            Effect.zipRight(Effect.promise(() => eventually(async () => (receiver.received.length - before === 3 ? true : undefined)))),
            Effect.zipRight(Effect.fail("rolled back" as const)),
            sql.withTransaction
          )
        }).pipe(Effect.flip)
      )
      expect(rolledBack).toBe("rolled back")
      expect(await runtime.runPromise(messagesOf(events))).toEqual([])

      // The runner's next round fans the same events out again and commits.
      await runtime.runPromise(committedRound(events))
      // Both sends of each message recorded: the rolled-back round's (held until this round ended) and this round's.
      const messages = await eventually(async () => {
        const delivered = allDelivered(3)(await runtime.runPromise(messagesOf(events)))
        return delivered?.every((m) => m.attempts === 2) ? delivered : undefined
      })
      for (const message of messages) {
        const received = receiver.withId(message.id)
        expect(received).toHaveLength(2)
        for (const delivery of received) expect(new Webhook(SECRET).verify(delivery.body, delivery.headers)).toBeTruthy()
      }
    } finally {
      await runtime.dispose()
    }
  })

  it("a message handed to its lane at fan-out but never attempted when the process stopped is sent by the next process", async () => {
    const first = startProcess()
    let events: ReadonlyArray<OutboxEntry> = []
    try {
      events = await first.runPromise(eventsOf("fan-out-stopped", 3))
      // One request at a time per endpoint: while the first is held, the other two wait in the lane.
      receiver.answers = ["hold"]
      await first.runPromise(committedRound(events))
      await eventually(async () => (receiver.held() === 1 ? true : undefined))
    } finally {
      await first.dispose()
    }
    // Read from outside: another runtime on the runner address would take the messages over.
    const client = new pg.Client({ connectionString: Redacted.value(databaseUrl) })
    await client.connect()
    const ids = (await client.query("select id from webhook_messages where event_id = any($1::uuid[]) and status <> 'delivered'", [events.map((e) => e.eventId)])).rows.map((r) => r.id as string)
    await client.end()
    expect(ids).toHaveLength(3)
    const attempted = ids.filter((id) => receiver.withId(id).length > 0)
    expect(attempted).toHaveLength(1)
    receiver.release()

    const second = startProcess()
    try {
      await second.runtime()
      await eventually(async () => allDelivered(3)(await second.runPromise(messagesOf(events))))
      for (const id of ids) {
        expect(receiver.withId(id).length).toBeGreaterThanOrEqual(1)
        for (const delivery of receiver.withId(id)) expect(new Webhook(SECRET).verify(delivery.body, delivery.headers)).toBeTruthy()
      }
    } finally {
      await second.dispose()
    }
  })
})
