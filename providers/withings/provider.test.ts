/** The Withings Provider as provider.ts builds it: token calls draw on the shared request budget too. */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { ConfigProvider, Duration, Effect, Layer, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type RequestBudget, type Turn, WithingsBudget } from "./budget.ts"
import { layerProviderOn, WithingsProvider } from "./provider.ts"
import { type FakeWithings, startFakeWithings } from "./testing/fake-withings.ts"

let fake: FakeWithings
beforeAll(async () => {
  fake = await startFakeWithings()
})
afterAll(async () => {
  await fake?.close()
})

/** A budget that answers `turns` in order (then Go), counting every take. */
const scripted = (turns: ReadonlyArray<Turn>) => {
  const queue = [...turns]
  const taken = { count: 0 }
  const budget: RequestBudget = { take: () => Effect.sync(() => (taken.count++, queue.shift() ?? { _tag: "Go" })) }
  return { budget, taken }
}

const providerWith = (budget: RequestBudget) =>
  Effect.runPromise(
    WithingsProvider.pipe(
      Effect.provide(layerProviderOn.pipe(Layer.provide(Layer.merge(Layer.succeed(WithingsBudget, budget), FetchHttpClient.layer)))),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({
        WITHINGS_API_URL: fake.url,
        WITHINGS_AUTH_URL: `${fake.url}/oauth2_user/authorize2`,
        WITHINGS_CLIENT_ID: fake.clientId,
        WITHINGS_CLIENT_SECRET: fake.clientSecret
      }))))
    )
  )

describe("the Withings Provider", () => {
  it("takes a turn from the shared budget for each token call, waiting while the budget has no room", async () => {
    fake.addUser("7100000001")
    const tokens = fake.connect("7100000001")
    const { budget, taken } = scripted([{ _tag: "Wait", after: Duration.millis(30) }, { _tag: "Wait", after: Duration.millis(30) }])
    const provider = await providerWith(budget)
    // The authorize URL is built here: no request, no turn.
    await Effect.runPromise(provider.auth!.begin("oauth2", { callbackUrl: "https://app.example/cb", state: "s" }))
    expect(taken.count).toBe(0)
    const before = fake.state.counters.refreshes
    const refreshed = await Effect.runPromise(provider.auth!.refresh(Redacted.make(tokens.refresh_token)))
    expect(refreshed.accessToken).toBeDefined()
    // Two waits, then the turn that let the refresh go; Withings saw one refresh.
    expect(taken.count).toBe(3)
    expect(fake.state.counters.refreshes).toBe(before + 1)
  })
})
