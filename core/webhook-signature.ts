/**
 * Standard Webhooks / Svix signatures for the webhooks core sends itself (the operator
 * webhook): `v1,` + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)), the key being the
 * decoded bytes of a `whsec_<base64>` secret — what `svix` and `standardwebhooks` verify.
 * (The webhooks sink signs customers' messages the same way with its own module: core names no sink.)
 */
import { Redacted } from "effect"
import { createHmac, randomBytes } from "node:crypto"

const PREFIX = "whsec_"

/** A new secret: 32 random bytes, as `whsec_<base64>`. */
export const newSecret = (): string => PREFIX + randomBytes(32).toString("base64")

/** Whether `text` is a usable secret: `whsec_` and 24–64 bytes of base64. */
export const isSecret = (text: string): boolean => {
  if (!text.startsWith(PREFIX)) return false
  const encoded = text.slice(PREFIX.length)
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) return false
  const bytes = Buffer.from(encoded, "base64").length
  return bytes >= 24 && bytes <= 64
}

/** The headers of one signed request, under both Svix's and Standard Webhooks' names. */
export const signedHeaders = (secret: Redacted.Redacted<string>, id: string, timestamp: number, body: string): Record<string, string> => {
  const key = Buffer.from(Redacted.value(secret).slice(PREFIX.length), "base64")
  const signature = "v1," + createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature,
    "svix-id": id,
    "svix-timestamp": String(timestamp),
    "svix-signature": signature
  }
}
