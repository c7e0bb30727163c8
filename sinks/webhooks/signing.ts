/**
 * How the webhooks sink signs its messages: core's Svix / Standard Webhooks signature
 * (core/webhook-signature.ts), under the header names each endpoint chose. During a rotation's
 * grace period the header carries one signature per secret, space-separated.
 */
import { isSecret, keyOf, newSecret as newSecretText, sign } from "@wearflow/core/webhook-signature"
import { Redacted } from "effect"

export { isSecret, keyOf, sign }

/** A new signing secret: 32 random bytes, shown as `whsec_<base64>`. */
export const newSecret = (): Redacted.Redacted<string> => Redacted.make(newSecretText())

/** Header names per endpoint: Svix's, or Standard Webhooks'. */
export type SignatureHeaders = "svix" | "webhook"

export const signedHeaders = (scheme: SignatureHeaders, id: string, timestamp: number, signature: string): Record<string, string> => ({
  [`${scheme}-id`]: id,
  [`${scheme}-timestamp`]: String(timestamp),
  [`${scheme}-signature`]: signature
})
