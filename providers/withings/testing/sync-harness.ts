/**
 * What the poll and backfill tests share: the plugin's call against a fake Withings over
 * loopback (unmetered budget), pages recorded in memory, users seeded with recent data, and
 * what the committed pages normalize to.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { SqlClient } from "@effect/sql"
import * as Host from "@wearflow/core/host"
import { IngestWorker } from "@wearflow/core/pipeline/ingest"
import type { Credentials, HistoryPage, HistoryPages, Provider, SyncPages } from "@wearflow/core/provider"
import type { NormalizedRecord } from "@wearflow/core/normalizer"
import { ConfigProvider, Effect, Either, Layer, Redacted } from "effect"
import * as Budget from "../budget.ts"
import { WithingsConfig } from "../config.ts"
import { pageItemsOf } from "../items.ts"
import { manifest } from "../mod.ts"
import { normalizers } from "../normalize.ts"
import { layerProviderOn, WithingsProvider } from "../provider.ts"
import { type Call, makeCall } from "../rpc.ts"
import { type FakeWithings, type SeedPart, shiftDays, type StampedResource, type WithingsDocument } from "./fake-withings.ts"

export const DAY_S = 86_400

/** The Provider as the plugin host builds it (sandboxed client, declared variables only), pointed at `fake`, unmetered. */
export const sandboxedProvider = (fake: FakeWithings): Promise<Provider> =>
  Effect.runPromise(
    Effect.provide(
      WithingsProvider,
      Host.load({ manifest, layer: layerProviderOn.pipe(Layer.provide(Layer.succeed(Budget.WithingsBudget, Budget.unlimited))) }, ConfigProvider.fromMap(new Map([["WITHINGS_API_URL", fake.url]])))
        .pipe(Layer.provide(FetchHttpClient.layer))
    )
  )

/** Processes every Withings inbox row not yet processed, as an ingest taker would. */
export const processWaiting = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const worker = yield* IngestWorker
  const rows = yield* sql<{ id: string }>`select id::text from inbox where provider = 'withings' and processed_at is null order by id`
  for (const row of rows) yield* worker.process({ inboxId: Number(row.id) })
})

/** The plugin's configuration and call against `fake`, with `env` on top of its URL. */
export const callTo = (fake: FakeWithings, env: Record<string, string> = {}): Promise<{ config: WithingsConfig; call: Call }> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const config = yield* WithingsConfig
      const client = yield* HttpClient.HttpClient
      return { config, call: makeCall(client, config, Budget.unlimited) }
    }).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ WITHINGS_API_URL: fake.url, ...env })))),
      Effect.provide(FetchHttpClient.layer)
    )
  )

export interface Committed extends HistoryPage {
  readonly page: number
}

/** Pages committed in memory, as core's SyncPages/HistoryPages would store them. */
export const recorder = (providerUserId: string, failAt?: number): SyncPages & HistoryPages & { readonly commits: Array<Committed> } => {
  const commits: Array<Committed> = []
  return {
    providerUserId,
    commits,
    commit: (page, content) =>
      page === failAt
        ? Effect.fail({ _tag: "PageCommitError", message: "test", retryable: true } as never)
        : Effect.sync(() => {
          commits.push({ page, ...content })
          return true
        })
  }
}

/** A connection's credentials for a fake user, with the scopes the state names (undefined: unknown). */
export const connectionOf = (fake: FakeWithings, userId: string, scopes?: ReadonlyArray<string>, granted?: ReadonlyArray<string>): Credentials => {
  const tokens = fake.connect(userId, granted ?? scopes)
  return { bearer: Redacted.make(tokens.access_token), state: scopes === undefined ? { userid: userId } : { userid: userId, scopes } }
}

const newest = (docs: ReadonlyArray<WithingsDocument>, field: string) => Math.max(...docs.map((d) => Number(d[field] ?? 0)))

/**
 * Seeds the recorded examples so their data is a few days old and every document was
 * modified within the last hour (inside any lookback): measures, activity, workouts, three
 * nights with their sleep series, devices.
 */
export const seedRecent = (fake: FakeWithings, userId: string, nights = 3): void => {
  const now = Math.floor(Date.now() / 1000)
  const shiftFor = (docs: ReadonlyArray<WithingsDocument>, field: string) => Math.floor((now - newest(docs, field)) / DAY_S) - 2
  fake.seed(userId, ["devices"])
  const user = fake.state.users.get(userId)!
  for (const part of ["measuregrps", "activities", "workouts"] as const satisfies ReadonlyArray<SeedPart & StampedResource>) {
    fake.seed(userId, [part])
    user[part] = user[part].map((doc) => shiftDays(doc, shiftFor(user[part], part === "activities" ? "modified" : part === "measuregrps" ? "date" : "startdate")))
  }
  fake.seed(userId, ["sleepSummaries", "sleepSeries"])
  user.sleepSummaries = user.sleepSummaries.slice(0, nights)
  const sleepShift = shiftFor(user.sleepSummaries, "enddate")
  user.sleepSummaries = user.sleepSummaries.map((doc) => shiftDays(doc, sleepShift))
  user.sleepSeries = user.sleepSeries.map((doc) => shiftDays(doc, sleepShift))
  for (const part of ["measuregrps", "activities", "workouts", "sleepSummaries"] as const) {
    user[part] = user[part].map((doc, i) => ({ ...doc, modified: now - 3600 + i }))
  }
}

/** Intraday samples an hour after the UTC midnight of today and of `daysAgo` days before. */
export const seedIntraday = (fake: FakeWithings, userId: string, daysAgo: ReadonlyArray<number>): void => {
  const today = Math.floor(Date.now() / 1000 / DAY_S) * DAY_S
  for (const ago of daysAgo) {
    fake.add(userId, "intraday", { timestamp: today - ago * DAY_S + 3600, deviceid: "d1", model_id: 93, steps: 100 + ago, calories: 4, distance: 70, duration: 60 })
  }
}

/** Every item of the committed pages, normalized; fails on an item the normalizer refuses. */
export const recordsOf = (commits: ReadonlyArray<HistoryPage>): Array<NormalizedRecord> =>
  commits.flatMap(({ body, kind }) =>
    pageItemsOf(kind, JSON.parse(body)).flatMap((item) => {
      const normalizer = normalizers[item.key as keyof typeof normalizers]
      if (normalizer === undefined) return []
      return Either.getOrThrowWith(normalizer(item.raw), (e) => new Error(`${item.key}: ${e.message}`))
    })
  )

/** The ids of the documents a list of pages holds, by page kind. */
export const documentsOf = (commits: ReadonlyArray<HistoryPage>, kind: string): Array<Record<string, unknown>> =>
  commits.filter((c) => c.kind === kind).flatMap((c) => pageItemsOf(kind, JSON.parse(c.body)).map((item) => item.raw as Record<string, unknown>))
