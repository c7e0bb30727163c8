/**
 * The webhooks sink: every outbox event becomes one message per endpoint of its team whose
 * filter it passes, signed Svix-style (`svix-*` or `webhook-*` headers) and retried on
 * Svix's schedule. Messages are recorded in the sink runner's transaction (so each event
 * fans out once), already claimed, and sent at once; their outcomes are recorded after it
 * commits (deliveries.ts).
 *
 * Permissions: endpoints are customers' own URLs, configured at run time, so the sink cannot
 * name its hosts up front (`net` is empty). It declares `internet` instead, and the host
 * grants it the public-internet guard (core/public-internet.ts) its URLs and connections go
 * through: https only, and no private, loopback or link-local address unless the operator
 * allows them (WEARFLOW_WEBHOOK_ALLOW_HTTP, WEARFLOW_WEBHOOK_ALLOW_PRIVATE).
 */
import { SqlClient } from "@effect/sql"
import type { Manifest, Plugin } from "@wearflow/core/plugin"
import { type Sink, sinkErrorFromSql } from "@wearflow/core/sink"
import { Config, Context, Effect, Layer } from "effect"
import { WebhooksApi } from "./Api.ts"
import * as Deliveries from "./deliveries.ts"
import * as Endpoints from "./endpoints.ts"
import { migrate } from "./migrations.ts"
import * as Retry from "./retry.ts"
import * as Retention from "./retention.ts"
import { config, type Settings, WebhookSettings } from "./settings.ts"
import { WebhooksLive } from "./http.ts"

export const manifest: Manifest<Settings> = {
  id: "webhooks",
  kind: "sink",
  version: "0.1.0",
  permissions: { net: Config.succeed([]), internet: true, env: ["WEARFLOW_WEBHOOK_*"] },
  config
}

export class WebhooksSink extends Context.Tag("wearflow/sinks/WebhooksSink")<WebhooksSink, Sink>() {}

const classify = sinkErrorFromSql("webhooks")

const sinkLayer = Layer.effect(
  WebhooksSink,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const deliveries = yield* Deliveries.Deliveries
    const settings = yield* WebhookSettings
    return {
      id: manifest.id,
      // Entries: the fan-out reads the bodies of the messages it claims itself, as text, so
      // payloads are neither sized by the runner nor parsed and printed again here.
      reads: "entries",
      // One message per (event, matching endpoint), in outbox order (deliveries.ts).
      deliver: (batch) => deliveries.fanOut(batch).pipe(Effect.mapError(classify)),
      health: sql`select 1 from webhook_endpoints limit 1`.pipe(Effect.asVoid, Effect.mapError(classify)),
      afterCommit: deliveries.roundsEnded,
      // A deleted user's messages and their attempts (the log's rows go with their message).
      eraseUser: (userId) =>
        sql`with gone as (delete from webhook_messages where user_id = ${userId} returning id)
            delete from webhook_notices where message_id in (select id from gone)`.pipe(Effect.asVoid, Effect.mapError(classify)),
      historicalData: settings.historicalData,
      retention: yield* Retention.make
    } satisfies Sink
  })
)

/**
 * After an encryption key rotation, endpoints' secrets and custom headers move to the current
 * key in the background, so the old key can be dropped; a failure is logged, never fatal.
 */
const KeyRotation = Layer.scopedDiscard(
  Effect.flatMap(Endpoints.WebhookEndpoints, (endpoints) => endpoints.reencrypt).pipe(
    Effect.tap((moved) => (moved > 0 ? Effect.logInfo("re-encrypted webhook secrets with the current key").pipe(Effect.annotateLogs("endpoints", moved)) : Effect.void)),
    Effect.catchAllCause((cause) => Effect.logError("could not re-encrypt webhook secrets", cause)),
    Effect.annotateLogs("sink", manifest.id),
    Effect.forkScoped
  )
)

/** The sink, the endpoint management, the retry workflows and key rotation, on the app's database. */
export const layer = Layer.mergeAll(sinkLayer, KeyRotation.pipe(Layer.provideMerge(Endpoints.layer)), Retry.layer).pipe(
  Layer.provideMerge(Deliveries.layer),
  Layer.provideMerge(Layer.effect(WebhookSettings, config)),
  Layer.provide(Layer.effectDiscard(migrate))
)

/** The plugin: the sink, its retry workflows and key rotation, and the endpoints API's handlers. */
export const plugin = {
  manifest,
  layer: WebhooksLive.pipe(Layer.provideMerge(layer)),
  // Short idle polls: webhook latency is the time from the outbox to the customer.
  sink: { tag: WebhooksSink, pacing: { idle: "20 millis", batchSize: 1000 } },
  routes: [WebhooksApi]
} satisfies Plugin

export { WebhooksApi } from "./Api.ts"

export { Deliveries } from "./deliveries.ts"
export { EndpointNotFound, EndpointRefused, InvalidEndpoint, MessageNotFound, WebhookEndpoints } from "./endpoints.ts"
export type { Endpoint, EndpointChanges, MessageView, NewEndpoint } from "./endpoints.ts"
export { WebhookSettings } from "./settings.ts"
