/**
 * A connection's notification subscriptions against the fake Withings, whose subscribe checks
 * our callback URL with a HEAD (answered here by a loopback server): the applis the scopes
 * allow and no others, nothing twice, what vanished made again, ours at an old secret revoked.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import type { Credentials } from "@wearflow/core/provider"
import { Cause, ConfigProvider, Effect, Exit, Option, Redacted } from "effect"
import { createServer, type Server } from "node:http"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import * as Budget from "./budget.ts"
import { CALLBACK_PATH, WithingsConfig } from "./config.ts"
import { makeCall, type WithingsError } from "./rpc.ts"
import { makeSubscriptions } from "./subscriptions.ts"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"

const SECRET = "subscriptions-test-secret-0001"
const OLD_SECRET = "subscriptions-test-secret-0000"

/** A callback that answers Withings' HEAD check; it records the paths it was asked for. */
const startCallback = async () => {
  const heads: Array<string> = []
  const server: Server = createServer((req, res) => {
    if (req.method === "HEAD") heads.push(req.url ?? "")
    res.writeHead(req.method === "HEAD" ? 200 : 405).end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no address")
  return { url: `http://127.0.0.1:${address.port}`, heads, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

let withings: FakeWithings
let callback: Awaited<ReturnType<typeof startCallback>>

beforeEach(async () => {
  withings = await startFakeWithings()
  callback = await startCallback()
})

afterEach(async () => {
  await withings.close()
  await callback.close()
})

const ourUrl = (secret = SECRET) => `${callback.url}${CALLBACK_PATH}/${secret}`

/** The plugin's configuration as its environment would give it; an empty value leaves the setting unset. */
const configWith = (env: Record<string, string>) => {
  const all = { WITHINGS_API_URL: withings.url, WEARFLOW_PUBLIC_URL: callback.url, WITHINGS_NOTIFY_SECRET: SECRET, ...env }
  return Effect.runPromise(Effect.withConfigProvider(WithingsConfig, ConfigProvider.fromMap(new Map(Object.entries(all).filter(([, value]) => value !== "")))))
}

/** A connection to fake user `userId` with the scopes Withings granted (`known: false`: scopes not kept). */
const connection = (userId: string, scopes: ReadonlyArray<string>, known = true): Credentials => {
  const tokens = withings.connect(userId, scopes)
  return { bearer: Redacted.make(tokens.access_token), state: known ? { userid: userId, scopes } : { userid: userId } }
}

const upkeep = async (env: Record<string, string> = {}) => {
  const config = await configWith(env)
  const run = <A>(effect: (subscriptions: ReturnType<typeof makeSubscriptions>) => Effect.Effect<A, WithingsError>) =>
    Effect.runPromiseExit(
      Effect.gen(function* () {
        const client = yield* HttpClient.HttpClient
        return yield* effect(makeSubscriptions(makeCall(client, config, Budget.unlimited), config))
      }).pipe(Effect.provide(FetchHttpClient.layer))
    )
  return {
    ensure: async (credentials: Credentials, userId: string) => Exit.getOrElse(await run((s) => s.ensure(credentials, userId)), (cause) => { throw new Error(String(cause)) }),
    ensureExit: (credentials: Credentials, userId: string) => run((s) => s.ensure(credentials, userId)),
    revoke: async (credentials: Credentials) => Exit.getOrElse(await run((s) => s.revoke(credentials)), (cause) => { throw new Error(String(cause)) })
  }
}

/** The user's subscriptions at the fake, as `appli@secret` (or the whole URL when not ours). */
const subscriptionsOf = (userId: string) =>
  withings.state.subscriptions
    .filter((sub) => sub.userId === userId)
    .sort((a, b) => a.appli - b.appli || a.callbackurl.localeCompare(b.callbackurl))
    .map((sub) => `${sub.appli}@${sub.callbackurl.startsWith(`${callback.url}${CALLBACK_PATH}/`) ? sub.callbackurl.slice(callback.url.length + CALLBACK_PATH.length + 1) : sub.callbackurl}`)

const subscribeCalls = () => withings.requests.filter((r) => r.path === "/notify" && r.params["action"] === "subscribe")

describe("Withings notification subscriptions", () => {
  it("subscribes exactly the applis the connection's scopes allow, each checked by Withings' HEAD", async () => {
    const { ensure } = await upkeep()
    await ensure(connection("101", ["user.metrics"]), "101")
    await ensure(connection("102", ["user.activity"]), "102")
    expect(subscriptionsOf("101")).toEqual(["1", "2", "4", "46"].map((appli) => `${appli}@${SECRET}`))
    expect(subscriptionsOf("102")).toEqual(["16", "44", "46"].map((appli) => `${appli}@${SECRET}`))
    // Withings checked the callback for each, at our secret URL.
    expect(withings.state.checks.map((check) => check.passed)).toEqual([true, true, true, true, true, true, true])
    expect(new Set(callback.heads)).toEqual(new Set([`${CALLBACK_PATH}/${SECRET}`]))
    // Every call went with the user's own token.
    expect(withings.requests.filter((r) => r.path === "/notify").every((r) => r.headers["authorization"]?.startsWith("Bearer "))).toBe(true)
  })

  it("subscribes nothing new on a second round, and makes again what vanished at Withings", async () => {
    const { ensure } = await upkeep()
    const credentials = connection("201", ["user.metrics", "user.activity"])
    await ensure(credentials, "201")
    expect(subscriptionsOf("201")).toEqual(["1", "2", "4", "16", "44", "46"].map((appli) => `${appli}@${SECRET}`))
    const first = subscribeCalls().length
    expect(first).toBe(6)

    await ensure(credentials, "201")
    expect(subscribeCalls().length).toBe(first)

    withings.state.subscriptions = withings.state.subscriptions.filter((sub) => sub.appli !== 44)
    await ensure(credentials, "201")
    expect(subscribeCalls().slice(first).map((r) => r.params["appli"])).toEqual(["44"])
    expect(subscriptionsOf("201")).toContain(`44@${SECRET}`)
  })

  it("revokes ours at an older secret once the new ones exist, and leaves other callback URLs alone", async () => {
    const { ensure } = await upkeep({ WITHINGS_NOTIFY_APPLIS: "1,46" })
    const credentials = connection("301", ["user.metrics"])
    const foreign = "https://elsewhere.example/withings/hook"
    for (const appli of [1, 46]) withings.state.subscriptions.push({ userId: "301", appli, callbackurl: ourUrl(OLD_SECRET), comment: "", expires: 2_147_483_647 })
    withings.state.subscriptions.push({ userId: "301", appli: 1, callbackurl: foreign, comment: "", expires: 2_147_483_647 })
    // Ours at the current secret for an appli no longer configured goes too.
    withings.state.subscriptions.push({ userId: "301", appli: 4, callbackurl: ourUrl(), comment: "", expires: 2_147_483_647 })

    await ensure(credentials, "301")

    expect(subscriptionsOf("301")).toEqual([`1@${SECRET}`, `1@${foreign}`, `46@${SECRET}`])
    const actions = withings.requests.filter((r) => r.path === "/notify").map((r) => `${r.params["action"]}:${r.params["appli"] ?? ""}`)
    // New first, then the old ones: no moment without a subscription.
    expect(actions.indexOf("subscribe:46")).toBeLessThan(actions.indexOf("revoke:1"))
  })

  it("skips an appli Withings answers unauthorized (scopes not kept), without failing", async () => {
    const { ensure } = await upkeep()
    await ensure(connection("401", ["user.metrics"], false), "401")
    expect(subscriptionsOf("401")).toEqual(["1", "2", "4", "46"].map((appli) => `${appli}@${SECRET}`))
    // Tried, refused with Withings' unauthorized status, and left.
    expect(subscribeCalls().map((r) => r.params["appli"]).sort()).toEqual(["1", "16", "2", "4", "44", "46"])
  })

  it("does nothing without a callback URL (no secret or no public URL)", async () => {
    for (const env of [{ WITHINGS_NOTIFY_SECRET: "" }, { WEARFLOW_PUBLIC_URL: "" }]) {
      const { ensure } = await upkeep(env)
      await ensure(connection("701", ["user.metrics"]), "701")
    }
    expect(withings.requests.filter((r) => r.path === "/notify")).toEqual([])
  })

  it("fails with Withings' outcome when the token is refused, naming neither token nor user", async () => {
    const { ensureExit } = await upkeep()
    const exit = await ensureExit({ bearer: Redacted.make("not-a-token"), state: { userid: "501", scopes: ["user.metrics"] } }, "501")
    const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
    expect(error).toMatchObject({ _tag: "WithingsError", outcome: "invalid_token", status: 401 })
    const text = String(Exit.isFailure(exit) ? exit.cause : "")
    expect(text).not.toContain("not-a-token")
    expect(text).not.toContain("501")
  })

  it("revoke removes every subscription of ours, at any secret, and no one else's", async () => {
    const { ensure, revoke } = await upkeep()
    const credentials = connection("601", ["user.activity"])
    await ensure(credentials, "601")
    withings.state.subscriptions.push({ userId: "601", appli: 16, callbackurl: ourUrl(OLD_SECRET), comment: "", expires: 2_147_483_647 })
    withings.state.subscriptions.push({ userId: "601", appli: 16, callbackurl: "https://elsewhere.example/hook", comment: "", expires: 2_147_483_647 })
    await revoke(credentials)
    expect(subscriptionsOf("601")).toEqual(["16@https://elsewhere.example/hook"])
  })
})
