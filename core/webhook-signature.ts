/**
 * Standard Webhooks / Svix signatures: `v1,` + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)),
 * the key being the decoded bytes of a `whsec_<base64>` secret — what `svix` and
 * `standardwebhooks` verify. The operator webhook (operator-webhook.ts) and the webhooks sink
 * both sign with it.
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

/** The HMAC key of a `whsec_` secret. */
export const keyOf = (secret: Redacted.Redacted<string>): Buffer => Buffer.from(Redacted.value(secret).slice(PREFIX.length), "base64")

/** The signature header value for one request, one `v1,` entry per key (several during a secret's rotation). */
export const sign = (keys: ReadonlyArray<Buffer>, id: string, timestamp: number, body: string): string =>
  keys.map((key) => "v1," + createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")).join(" ")

/** The headers of one request signed with `secret`, under both Svix's and Standard Webhooks' names. */
export const signedRequestHeaders = (secret: Redacted.Redacted<string>, id: string, timestamp: number, body: string): Record<string, string> => {
  const signature = sign([keyOf(secret)], id, timestamp, body)
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature,
    "svix-id": id,
    "svix-timestamp": String(timestamp),
    "svix-signature": signature
  }
}
