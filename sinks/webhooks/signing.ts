/**
 * Svix / Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)),
 * where the key is the decoded bytes of a `whsec_<base64>` secret. During a rotation's grace
 * period the header carries one signature per secret, space-separated.
 */
import { Redacted } from "effect"
import { createHmac, randomBytes } from "node:crypto"

const PREFIX = "whsec_"

/** A new signing secret: 32 random bytes, shown as `whsec_<base64>`. */
export const newSecret = (): Redacted.Redacted<string> => Redacted.make(PREFIX + randomBytes(32).toString("base64"))

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

/** The signature header value for one message attempt, one `v1,` entry per key. */
export const sign = (keys: ReadonlyArray<Buffer>, id: string, timestamp: number, body: string): string =>
  keys.map((key) => "v1," + createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")).join(" ")

/** Header names per endpoint: Svix's, or Standard Webhooks'. */
export type SignatureHeaders = "svix" | "webhook"

export const signedHeaders = (scheme: SignatureHeaders, id: string, timestamp: number, signature: string): Record<string, string> => ({
  [`${scheme}-id`]: id,
  [`${scheme}-timestamp`]: String(timestamp),
  [`${scheme}-signature`]: signature
})
