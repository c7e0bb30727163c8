/** Moved to the webhooks sink (sinks/webhooks/Api.ts); kept until the app mounts plugin routes from the registry. */
export { WebhooksApi } from "@wearflow/sink-webhooks"
