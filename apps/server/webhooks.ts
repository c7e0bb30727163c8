/** Moved to the webhooks sink (sinks/webhooks/http.ts); kept until the app mounts plugin routes from the registry. */
export { WebhooksLive } from "@wearflow/sink-webhooks"
