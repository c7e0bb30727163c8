/**
 * The framework's promises, checked against the webhooks sink by the conformance kit: a
 * customer's receiver on loopback, every delivery verified with the real `svix` package.
 */
import { sinkConformance } from "@wearflow/core/testing"
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { Webhook } from "svix"
import { startReceiver } from "../../test/support/webhook-receiver.ts"
import { plugin, WebhookEndpoints } from "./mod.ts"

const SECRET = `whsec_${randomBytes(24).toString("base64")}`

const query = async <A>(databaseUrl: Redacted.Redacted<string>, text: string): Promise<Array<A>> => {
  const client = new pg.Client({ connectionString: Redacted.value(databaseUrl) })
  await client.connect()
  try {
    return (await client.query(text)).rows as Array<A>
  } finally {
    await client.end()
  }
}

sinkConformance({
  plugin,
  folder: new URL(".", import.meta.url),
  destination: async () => {
    const receiver = await startReceiver()
    return {
      // The receiver is on loopback, over plain HTTP: allowed for this run only.
      env: { WEARFLOW_WEBHOOK_ALLOW_HTTP: "true", WEARFLOW_WEBHOOK_ALLOW_PRIVATE: "true" },
      prepare: (teamId) =>
        Effect.flatMap(WebhookEndpoints, (endpoints) => endpoints.create(teamId, { url: receiver.url, secret: Redacted.make(SECRET) })),
      settled: async (databaseUrl) => {
        for (;;) {
          const [row] = await query<{ n: number }>(databaseUrl, "select count(*)::int as n from webhook_messages where status in ('pending', 'sending', 'retrying')")
          if (row!.n === 0) return
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      },
      // What the customer received, each delivery verified; the events they carry, by message id.
      snapshot: async (databaseUrl) => {
        const payloads = receiver.received.map((delivery) => ({
          id: delivery.headers["svix-id"]!,
          payload: new Webhook(SECRET).verify(delivery.body, delivery.headers)
        }))
        const ids = payloads.map((p) => p.id)
        const messages = ids.length === 0
          ? []
          : await query<{ id: string; event_id: string }>(databaseUrl, `select id, event_id::text from webhook_messages where id in (${ids.map((id) => `'${id.replace(/[^A-Za-z0-9_]/g, "")}'`).join(", ")})`)
        return {
          eventIds: messages.map((m) => m.event_id),
          contents: payloads.sort((a, b) => a.id.localeCompare(b.id))
        }
      },
      close: () => receiver.close()
    }
  }
})
