/** The framework's promises, checked against the Garmin plugin by the conformance kit. */
import { providerConformance } from "@wearflow/core/testing"
import * as fs from "node:fs"
import { plugin } from "./mod.ts"
import { normalizers } from "./normalize.ts"
import { startFakeGarmin } from "./testing/fake-garmin.ts"

const fixtures = new URL("./testing/fixtures/", import.meta.url)

/** The PUSH fixture records of every normalized key (one file per key; real-shaped). */
const samples: Record<string, ReadonlyArray<unknown>> = Object.fromEntries(
  Object.keys(normalizers).flatMap((key) => {
    const file = new URL(`${key}.json`, fixtures)
    if (!fs.existsSync(file)) return []
    return [[key, (JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, ReadonlyArray<unknown>>)[key] ?? []]]
  })
)

/** Every measured number moves by one (times, offsets and ids stay): a revision of the same summary. */
const bump = (value: unknown, key = ""): unknown => {
  if (typeof value === "number") return /time|offset|id$|date/i.test(key) ? value : value + 1
  if (Array.isArray(value)) return value.map((item) => bump(item, key))
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bump(v, k)]))
  return value
}

const CONSUMER = { consumerKey: "conformance-garmin-key", consumerSecret: "conformance-garmin-secret" }

providerConformance({
  plugin,
  folder: new URL(".", import.meta.url),
  fake: async () => {
    const garmin = await startFakeGarmin(CONSUMER)
    return {
      env: garmin.env,
      connect: async (userId) => {
        const now = Math.floor(Date.now() / 1000)
        const oauth2 = { accessToken: `access-${userId}`, accessTokenExpiresAt: now * 1000 + 86_400_000, refreshToken: `refresh-${userId}`, refreshTokenExpiresAt: now * 1000 + 86_400_000 }
        garmin.addUser(userId, { oauth2 })
        garmin.seedHistory(userId, { from: now - 86_400, to: now, types: ["dailies"] })
        return { accessToken: oauth2.accessToken, refreshToken: oauth2.refreshToken }
      },
      pingUrl: garmin.pingUrl.bind(garmin),
      close: () => garmin.close()
    }
  },
  samples,
  recordsBody: (key, records, userId) => ({
    kind: "push",
    body: JSON.stringify({ [key]: records.map((record) => ({ ...(record as object), userId, userAccessToken: undefined })) })
  }),
  revise: (_, record) => bump(record),
  signedNotification: {
    request: (fake) => ({
      method: "POST",
      path: "/api/v1/webhooks/garmin/push",
      headers: { "content-type": "application/json", "garmin-client-id": fake.env.GARMIN_CLIENT_ID! },
      body: JSON.stringify({ dailies: [] })
    }),
    signatureHeaders: ["garmin-client-id"],
    coversBody: false
  },
  pointer: async (fake, userId) => {
    const now = Math.floor(Date.now() / 1000)
    return { kind: "ping", body: JSON.stringify({ dailies: [{ userId, callbackURL: fake.pingUrl("dailies", { userId }, now - 86_400, now) }] }) }
  }
})
