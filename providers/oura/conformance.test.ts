/** The framework's promises, checked against the Oura plugin by the conformance kit. */
import { providerConformance } from "@wearflow/core/testing"
import * as fs from "node:fs"
import { plugin } from "./mod.ts"
import { normalizers } from "./normalize.ts"
import { NOTIFICATION_KIND, PAGE_KIND, pageOf } from "./notifications.ts"
import { type FakeOura, ouraSignature, startFakeOura } from "./testing/fake-oura.ts"

const fixtures = new URL("./testing/fixtures/", import.meta.url)
const documents = (key: string): Array<Record<string, unknown>> =>
  (JSON.parse(fs.readFileSync(new URL(`${key}.list.200.json`, fixtures), "utf8")) as { data: Array<Record<string, unknown>> }).data

/** A few real-shaped documents per normalized data type; heart rate is one batch of rows (its items are batches). */
const samples: Record<string, ReadonlyArray<unknown>> = Object.fromEntries(
  Object.keys(normalizers).map((key) => [key, key === "heartrate" ? [{ data: documents(key).slice(0, 40) }] : documents(key).slice(0, 3)])
)

/** Every measured number moves by one (times, ids, days and sample intervals stay): a revision of the same document. */
const bump = (value: unknown, key = ""): unknown => {
  if (typeof value === "number") return /time|offset|id$|day|date|interval|timestamp|type/i.test(key) ? value : value + 1
  if (Array.isArray(value)) return value.map((item) => bump(item, key))
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bump(v, k)]))
  return value
}

interface OuraConformanceFake {
  readonly env: Readonly<Record<string, string>>
  readonly oura: FakeOura
  readonly connect: (providerUserId: string) => Promise<{ readonly accessToken: string; readonly refreshToken?: string | undefined }>
  readonly close: () => Promise<void>
}

/** The workout the pointer test's notification names (the fake holds it once connected). */
const pointed = documents("workout")[0]!

providerConformance<OuraConformanceFake>({
  plugin,
  folder: new URL(".", import.meta.url),
  fake: async () => {
    const oura = await startFakeOura()
    return {
      oura,
      env: {
        OURA_API_URL: oura.url,
        OURA_AUTH_URL: `${oura.url}/oauth/authorize`,
        OURA_CLIENT_ID: oura.clientId,
        OURA_CLIENT_SECRET: oura.clientSecret
      },
      connect: async (userId) => {
        oura.seed(userId, ["workout"])
        const tokens = oura.connect(userId)
        return { accessToken: tokens.access_token, refreshToken: tokens.refresh_token }
      },
      close: () => oura.close()
    }
  },
  samples,
  // A fetched page, as fetching a notification or pulling history stores it.
  recordsBody: (key, records, userId) => ({
    kind: PAGE_KIND,
    body: JSON.stringify({ [key]: [pageOf(key, userId, key === "heartrate" ? records.flatMap((batch) => (batch as { data: Array<unknown> }).data) : records)] })
  }),
  revise: (_, record) => bump(record),
  signedNotification: {
    request: (fake) => {
      const body = JSON.stringify({ event_type: "create", data_type: "workout", object_id: "conformance-doc", event_time: new Date().toISOString(), user_id: "conformance-signed" })
      const timestamp = String(Math.floor(Date.now() / 1000))
      return {
        method: "POST",
        path: "/api/v1/webhooks/oura",
        headers: { "content-type": "application/json", "x-oura-timestamp": timestamp, "x-oura-signature": ouraSignature(fake.oura.clientSecret, timestamp, body) },
        body
      }
    },
    signatureHeaders: ["x-oura-signature", "x-oura-timestamp"],
    coversBody: true
  },
  pointer: async (_, userId) => ({
    kind: NOTIFICATION_KIND,
    body: JSON.stringify({ event_type: "create", data_type: "workout", object_id: pointed["id"], event_time: new Date().toISOString(), user_id: userId })
  })
})
