/** OAuth 1.0a request signing (HMAC-SHA1) for Garmin's legacy endpoints, via `oauth-1.0a`. */
import { Redacted } from "effect"
import { createHmac } from "node:crypto"
import OAuth from "oauth-1.0a"

export interface OAuth1Key {
  readonly key: Redacted.Redacted<string>
  readonly secret: Redacted.Redacted<string>
}

/**
 * The `Authorization` header for `method url` (query parameters and `form` fields are signed
 * too; `oauth_*` fields among them travel in the header itself), with the consumer key/secret
 * and, when given, the user's token/secret.
 */
export const authorizationHeader = (
  consumer: OAuth1Key,
  token: OAuth1Key | undefined,
  request: { readonly method: string; readonly url: string; readonly form?: Record<string, string> }
): string => {
  const oauth = new OAuth({
    consumer: { key: Redacted.value(consumer.key), secret: Redacted.value(consumer.secret) },
    signature_method: "HMAC-SHA1",
    hash_function: (base, key) => createHmac("sha1", key).update(base).digest("base64")
  })
  const authorization = oauth.authorize(
    { url: request.url, method: request.method, ...(request.form ? { data: request.form } : {}) },
    token ? { key: Redacted.value(token.key), secret: Redacted.value(token.secret) } : undefined
  )
  return oauth.toHeader(authorization).Authorization
}
