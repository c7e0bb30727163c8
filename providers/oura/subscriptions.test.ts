/**
 * The subscription daemon against the fake Oura: serialized across processes, renewals,
 * recreation of subscriptions Oura no longer knows, and pairs another callback URL holds.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { PgClient } from "@effect/sql-pg"
import * as Host from "@wearflow/core/host"
import { ConfigProvider, Effect, Layer, Redacted } from "effect"
import { createServer, type Server } from "node:http"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { freshDatabaseUrl } from "../../test/support/database.ts"
import { eventually } from "../../test/support/server.ts"
import { manifest } from "./mod.ts"
import * as Subscriptions from "./subscriptions.ts"
import { type FakeOura, type FakeOuraSubscription, startFakeOura } from "./testing/fake-oura.ts"

const TOKEN = "subscriptions-test-token"
const DAY_MS = 86_400_000

/** A callback that answers Oura's challenge for TOKEN. */
const startCallback = async () => {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost")
    const ok = url.searchParams.get("verification_token") === TOKEN
    res.writeHead(ok ? 200 : 401, { "content-type": "application/json" }).end(JSON.stringify(ok ? { challenge: url.searchParams.get("challenge") } : {}))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no address")
  return { url: `http://127.0.0.1:${address.port}/api/v1/webhooks/oura`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

let oura: FakeOura
let callback: Awaited<ReturnType<typeof startCallback>>

beforeEach(async () => {
  oura = await startFakeOura()
  callback = await startCallback()
})

afterEach(async () => {
  await oura.close()
  await callback.close()
})

const subscriptions = () => [...oura.state.subscriptions.values()]
const pairs = () => subscriptions().map((s) => `${s.event_type}:${s.data_type}`).sort()

const seeded = (init: Omit<FakeOuraSubscription, "id" | "verification_token"> & { readonly id: string }): FakeOuraSubscription => {
  const subscription = { ...init, verification_token: TOKEN }
  oura.state.subscriptions.set(subscription.id, subscription)
  return subscription
}

/** One round of `makeSubscriptions` over plain fetch. */
const roundWith = (dataTypes: ReadonlyArray<string>) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      return yield* Subscriptions.makeSubscriptions(client, {
        api: new URL(oura.url),
        clientId: Redacted.make(oura.clientId),
        clientSecret: Redacted.make(oura.clientSecret),
        verificationToken: Redacted.make(TOKEN),
        callbackUrl: callback.url,
        dataTypes
      }).reconcile
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

describe("Oura webhook subscriptions", () => {
  it("two processes starting together create each subscription once (advisory lock)", async () => {
    oura.state.webhooks.duplicates = "allow"
    const url = await freshDatabaseUrl()
    const config = ConfigProvider.fromMap(
      new Map([
        ["OURA_API_URL", oura.url],
        ["OURA_CLIENT_ID", oura.clientId],
        ["OURA_CLIENT_SECRET", oura.clientSecret],
        ["OURA_WEBHOOK_VERIFICATION_TOKEN", TOKEN],
        ["OURA_WEBHOOK_CALLBACK_URL", callback.url],
        ["OURA_WEBHOOK_DATA_TYPES", "daily_activity,sleep,workout"]
      ])
    )
    // Each process: the daemon in the plugin's sandbox, with its own database pool.
    const process = Host.load({ manifest, layer: Subscriptions.layer }, config).pipe(
      Layer.provide(FetchHttpClient.layer),
      Layer.provide(PgClient.layer({ url }))
    )
    const listed = () => oura.requests.filter((r) => r.method === "GET" && r.path === "/v2/webhook/subscription").length
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* Effect.all([Layer.build(process), Layer.build(process)], { concurrency: 2 })
          // A completed round lists twice (before and after): both processes have finished one.
          yield* Effect.promise(() => eventually(async () => (listed() >= 4 ? true : undefined), 30_000))
        })
      )
    )
    expect(pairs()).toEqual(
      ["daily_activity", "sleep", "workout"].flatMap((type) => ["create", "delete", "update"].map((event) => `${event}:${type}`)).sort()
    )
  })

  it("renews what expires within 7 days, leaves the rest, and recreates what Oura no longer knows", async () => {
    oura.state.webhooks.duplicates = "allow"
    const now = Date.now()
    const soon = seeded({ id: "soon", callback_url: callback.url, event_type: "create", data_type: "daily_activity", expiresAt: now + 3 * DAY_MS })
    const later = seeded({ id: "later", callback_url: callback.url, event_type: "update", data_type: "daily_activity", expiresAt: now + 60 * DAY_MS })
    seeded({ id: "forgotten", callback_url: callback.url, event_type: "delete", data_type: "daily_activity", expiresAt: now + DAY_MS })
    oura.inject({ method: "PUT", path: "/v2/webhook/subscription/renew/forgotten", status: 404, body: JSON.stringify({ detail: "Webhook with specified id does not exist." }) })

    const done = await roundWith(["daily_activity"])

    expect(done).toMatchObject({ renewed: 1, created: 1, takenElsewhere: 0 })
    expect(soon.expiresAt).toBeGreaterThan(now + 80 * DAY_MS)
    expect(later.expiresAt).toBe(now + 60 * DAY_MS)
    const replacements = subscriptions().filter((s) => s.event_type === "delete" && s.id !== "forgotten")
    expect(replacements).toHaveLength(1)
    expect(replacements[0]).toMatchObject({ callback_url: callback.url, verification_token: TOKEN })
    expect(oura.requests.filter((r) => r.method === "PUT").map((r) => r.path).sort()).toEqual([
      "/v2/webhook/subscription/renew/forgotten",
      "/v2/webhook/subscription/renew/soon"
    ])
  })

  it("leaves a pair another callback URL holds (409) alone, and sends the client credentials", async () => {
    const other = seeded({ id: "other", callback_url: "https://elsewhere.example/hook", event_type: "create", data_type: "sleep", expiresAt: Date.now() + DAY_MS })

    const done = await roundWith(["sleep"])

    expect(done).toMatchObject({ created: 2, renewed: 0, takenElsewhere: 1, live: 2 })
    expect(oura.state.subscriptions.get("other")).toEqual(other)
    expect(oura.requests.every((r) => !r.path.startsWith("/v2/webhook/") || (r.headers["x-client-id"] === oura.clientId && r.headers["x-client-secret"] === oura.clientSecret))).toBe(true)
  })

  it("deletes ours for data types no longer configured, and nobody else's", async () => {
    seeded({ id: "dropped", callback_url: callback.url, event_type: "create", data_type: "tag", expiresAt: Date.now() + 60 * DAY_MS })
    seeded({ id: "theirs", callback_url: "https://elsewhere.example/hook", event_type: "create", data_type: "sleep_time", expiresAt: Date.now() + 60 * DAY_MS })

    const done = await roundWith(["sleep"])

    expect(done).toMatchObject({ created: 3, removed: 1, live: 3 })
    expect(oura.state.subscriptions.has("dropped")).toBe(false)
    expect(oura.state.subscriptions.has("theirs")).toBe(true)
  })

  it("fails the round when Oura cannot verify the callback, naming no secret", async () => {
    await callback.close()
    const error = await roundWith(["sleep"]).then(() => undefined, (e: unknown) => String(e))
    expect(error).toContain("Oura answered 400 while creating the create sleep subscription")
    expect(error).not.toContain(oura.clientSecret)
    expect(error).not.toContain(TOKEN)
    callback = await startCallback()
  })
})
