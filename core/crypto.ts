/**
 * Encryption at rest for provider tokens (AES-256-GCM), hashing of API keys, and the
 * deterministic ids the store derives from natural keys.
 *
 * Ciphertext layout: `[version=1][key id: 4 bytes][iv: 12][tag: 16][ciphertext]`. The key id
 * lets rotation decrypt old rows with the old key and re-encrypt them with the new one.
 */
import { Context, Data, Effect, Layer, Redacted } from "effect"
import { createCipheriv, createDecipheriv, createHash, hash as digest, randomBytes, timingSafeEqual } from "node:crypto"

export class DecryptionError extends Data.TaggedError("DecryptionError")<{ readonly message: string }> {}

const VERSION = 1

const keyIdOf = (key: Uint8Array) => createHash("sha256").update(key).digest().subarray(0, 4)

export class TokenCipher extends Context.Tag("wearflow/TokenCipher")<
  TokenCipher,
  {
    /** Encrypts with the current key. */
    readonly encrypt: (plaintext: Redacted.Redacted<string>) => Uint8Array
    /** Decrypts with whichever configured key the ciphertext names. */
    readonly decrypt: (ciphertext: Uint8Array) => Effect.Effect<Redacted.Redacted<string>, DecryptionError>
    /** Whether the ciphertext was made with a key other than the current one. */
    readonly isStale: (ciphertext: Uint8Array) => boolean
  }
>() {}

/** Parses a 32-byte key given as base64 or 64 hex characters. */
export const parseKey = (text: string): Uint8Array | undefined => {
  const trimmed = text.trim()
  const bytes = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, "hex") : Buffer.from(trimmed, "base64")
  return bytes.length === 32 ? bytes : undefined
}

/**
 * Parses a key list, `current[,older...]`: rotation is adding a new key in front, letting
 * Accounts.reencryptTokens move every token to it, then dropping the old key.
 */
export const parseKeys = (text: string): ReadonlyArray<Uint8Array> | undefined => {
  const keys = text.split(",").map(parseKey)
  return keys.length > 0 && keys.every((k) => k !== undefined) ? (keys as ReadonlyArray<Uint8Array>) : undefined
}

export const makeTokenCipher = (keys: Redacted.Redacted<ReadonlyArray<Uint8Array>>): TokenCipher["Type"] => {
  const byId = Redacted.value(keys).map((secret) => ({ secret, keyId: keyIdOf(secret) }))
  const current = byId[0]!
  const keyOf = (data: Buffer) => byId.find((k) => timingSafeEqual(data.subarray(1, 5), k.keyId))
  return {
    encrypt: (plaintext) => {
      const iv = randomBytes(12)
      const cipher = createCipheriv("aes-256-gcm", current.secret, iv)
      const body = Buffer.concat([cipher.update(Redacted.value(plaintext), "utf8"), cipher.final()])
      return Buffer.concat([Buffer.from([VERSION]), current.keyId, iv, cipher.getAuthTag(), body])
    },
    decrypt: (ciphertext) =>
      Effect.try({
        try: () => {
          const data = Buffer.from(ciphertext)
          const key = data[0] === VERSION ? keyOf(data) : undefined
          if (!key) throw new Error("encrypted with a key that is not configured")
          const decipher = createDecipheriv("aes-256-gcm", key.secret, data.subarray(5, 17))
          decipher.setAuthTag(data.subarray(17, 33))
          return Redacted.make(Buffer.concat([decipher.update(data.subarray(33)), decipher.final()]).toString("utf8"))
        },
        catch: (e) => new DecryptionError({ message: `cannot decrypt token: ${e instanceof Error ? e.message : "unknown"}` })
      }),
    isStale: (ciphertext) => !Buffer.from(ciphertext).subarray(1, 5).equals(current.keyId)
  }
}

/**
 * After a key rotation: the ciphertexts (a row's encrypted columns) made again with the current
 * key, in order, or undefined when none was made with an older one.
 */
export const reencrypted = (cipher: TokenCipher["Type"], ciphertexts: ReadonlyArray<Uint8Array | null>) =>
  ciphertexts.some((c) => c !== null && cipher.isStale(c))
    ? Effect.all(ciphertexts.map((c) => (c === null ? Effect.succeed(null) : Effect.map(cipher.decrypt(c), cipher.encrypt))))
    : Effect.succeed(undefined)

export const layerTokenCipher = (keys: Redacted.Redacted<ReadonlyArray<Uint8Array>>) => Layer.succeed(TokenCipher, makeTokenCipher(keys))

/**
 * The digest a connection alias is stored and looked up by (UserRef `Alias`): SHA-256 of the
 * secret, in hex. Providers put it in stored bodies in place of the secret.
 */
export const aliasDigest = (secret: string) => createHash("sha256").update(secret).digest("hex")

/** SHA-256 of an API key; only hashes are stored and looked up. */
export const hashApiKey = (key: Redacted.Redacted<string>) => createHash("sha256").update(Redacted.value(key)).digest()

/** A stable UUID (v8 layout) derived from a natural key, so reprocessing yields the same id. */
export const stableUuid = (...parts: ReadonlyArray<string>): string => {
  // One-shot hash: a store write derives one id per record, and createHash's object cost more.
  const hash = digest("sha256", parts.join("\u0000"), "buffer")
  hash[6] = (hash[6]! & 0x0f) | 0x80
  hash[8] = (hash[8]! & 0x3f) | 0x80
  const hex = hash.subarray(0, 16).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** Constant-time string comparison (for shared secrets, e.g. a header a provider signs its notifications with). */
export const constantTimeEquals = (a: string, b: string): boolean => {
  const ha = createHash("sha256").update(a).digest()
  const hb = createHash("sha256").update(b).digest()
  return timingSafeEqual(ha, hb)
}
