/** Backfill scaffolding for server-level tests: a connected user with history, and the status API. */
import { randomBytes } from "node:crypto"
import { expect } from "vitest"
import type { FakeGarmin } from "../../providers/garmin/testing/fake-garmin.ts"
import { eventually } from "./server.ts"
import type { WearflowApi } from "./wearflow-client.ts"

export const DAY = 86_400
export const NOW = Math.floor(Date.now() / 1000)

export interface BackfillView {
  readonly backfill_id: string
  readonly status: string
  readonly origin: string
  readonly historical_pulls: Record<string, any>
}

/** The user's latest backfill as `/v2/introspect/historical_pull` shows it. */
export const historicalPulls = async (api: WearflowApi, userId: string) => {
  const { status, body } = await api("GET", `/v2/introspect/historical_pull?user_id=${userId}&provider=garmin`)
  expect(status).toBe(200)
  return body as { data: Array<BackfillView>; next_cursor: null }
}

/** Waits until the user's latest backfill has ended; answers its view. */
export const backfillFinished = (api: WearflowApi, userId: string, timeoutMs = 40_000) =>
  eventually(async () => {
    const [view] = (await historicalPulls(api, userId)).data
    return view && view.status !== "scheduled" && view.status !== "running" ? view : undefined
  }, timeoutMs)

/**
 * A Wearflow user linked through the API to a new Garmin user who has 40 days of `types`
 * history at the fake (none with `history: false`): linking starts its backfill.
 */
export const connectedUser = async (
  garmin: FakeGarmin,
  api: WearflowApi,
  name: string,
  options: {
    readonly permissions?: Array<string>
    readonly history?: boolean
    readonly types?: ReadonlyArray<string>
    /** How far back Garmin lets this user's backfills start (epoch s), set before linking starts one. */
    readonly backfillMinStartTimeInSeconds?: number
  } = {}
) => {
  const garminId = `garmin-${name}-${randomBytes(3).toString("hex")}`
  const accessToken = `token-${garminId}`
  garmin.addUser(garminId, {
    ...(options.permissions ? { permissions: options.permissions } : {}),
    backfillMinStartTimeInSeconds: options.backfillMinStartTimeInSeconds,
    oauth2: { accessToken, accessTokenExpiresAt: Date.now() + DAY * 1000, refreshToken: `refresh-${garminId}`, refreshTokenExpiresAt: Date.now() + 90 * DAY * 1000 }
  })
  const seeded = options.history === false
    ? {}
    : garmin.seedHistory(garminId, { from: NOW - 40 * DAY, to: NOW - DAY, types: options.types ?? ["dailies", "sleeps", "activities"] })
  const created = await api("POST", "/v2/user", { client_user_id: name })
  expect(created.status).toBe(200)
  const userId = created.body.user_id as string
  const linked = await api("POST", `/v2/user/${userId}/connections/garmin`, {
    provider_user_id: garminId,
    oauth2: { access_token: accessToken, expires_at: new Date(Date.now() + DAY * 1000).toISOString() }
  })
  expect(linked.status).toBe(200)
  return { userId, garminId, seeded }
}
