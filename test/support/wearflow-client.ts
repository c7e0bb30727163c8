/**
 * HTTP helpers for a Wearflow server under test: its `/v2` API, Garmin's webhooks, and the
 * inbox outcomes the ingest worker records. Base URLs and database clients are passed as
 * getters, read on every call, so helpers can be made before beforeAll starts the server.
 */
import type pg from "pg"
import { expect } from "vitest"
import { eventually } from "./server.ts"

export interface ApiReply {
  readonly status: number
  readonly body: any
}

/** Calls `/v2` routes with `x-api-key`; answers the status and the parsed JSON body (null when empty). */
export const wearflowApi =
  (baseUrl: () => string, apiKey: string) =>
  async (method: string, route: string, body?: unknown): Promise<ApiReply> => {
    const response = await fetch(`${baseUrl()}${route}`, {
      method,
      headers: { "x-api-key": apiKey, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    return { status: response.status, body: (text.length > 0 ? JSON.parse(text) : null) as any }
  }

export type WearflowApi = ReturnType<typeof wearflowApi>

/** Waits until `userId` has activity summaries on `day` (YYYY-MM-DD); answers their steps. */
export const dailySteps = (api: WearflowApi, userId: string, day: string, timeoutMs: number) =>
  eventually(async () => {
    const { body } = await api("GET", `/v2/summary/activity/${userId}?start_date=${day}&end_date=${day}`)
    return body.activity.length > 0 ? (body.activity as Array<{ steps: number }>).map((a) => a.steps) : undefined
  }, timeoutMs)

export type GarminWebhook = "ping" | "push"

/** Posts a notification to Garmin's `kind` webhook with `garmin-client-id`; a string body goes verbatim. */
export const sendGarminNotification = (baseUrl: string, clientId: string, kind: GarminWebhook, body: unknown) =>
  fetch(`${baseUrl}/api/v1/webhooks/garmin/${kind}`, {
    method: "POST",
    headers: { "garmin-client-id": clientId, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/** Posts notifications to Garmin's `kind` webhook, expects each accepted (200), and answers its inbox_id. */
export const garminWebhook =
  (baseUrl: () => string, clientId: string, kind: GarminWebhook) =>
  async (body: unknown): Promise<number> => {
    const response = await sendGarminNotification(baseUrl(), clientId, kind, body)
    expect(response.status).toBe(200)
    return ((await response.json()) as { inbox_id: number }).inbox_id
  }

/** What the ingest worker recorded for a PING body. */
export interface PingOutcome {
  readonly pulled: number
  readonly unlinked: number
  readonly errors: Array<{ key: string; index: number; message: string }>
}

/** Waits until the worker has processed an inbox row, and answers its `outcome`. */
export const inboxOutcomes =
  (db: () => pg.Client, timeoutMs: number) =>
  (inboxId: number): Promise<PingOutcome> =>
    eventually(async () => {
      const row = (await db().query("select outcome from inbox where id = $1 and processed_at is not null", [inboxId])).rows[0]
      return row?.outcome as PingOutcome | undefined
    }, timeoutMs)
