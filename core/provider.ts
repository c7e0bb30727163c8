/**
 * The Provider contract: how a provider's notification bodies split into items addressed to
 * provider users, and the normalizer for each item kind. Its HTTP routes are an
 * HttpApiGroup exported from its `mod.ts`; pulls, OAuth and backfill join this contract as
 * providers need them.
 */
import { Context, Layer } from "effect"
import type { Normalizer } from "./normalizer.ts"

/** One record of a notification body, addressed to one provider user. */
export interface NotificationItem {
  /** The body's top-level key, e.g. Garmin's `dailies`. */
  readonly key: string
  readonly index: number
  /** The provider's id for the user (Garmin `userId`); undefined when the item lacks one. */
  readonly providerUserId: string | undefined
  readonly raw: unknown
}

export interface Provider {
  readonly id: string
  /** Splits a stored notification body into items, in body order. */
  readonly itemsOf: (body: unknown) => ReadonlyArray<NotificationItem>
  /** One normalizer per item key; keys without one are stored but produce no records. */
  readonly normalizers: Readonly<Record<string, Normalizer>>
}

/** The providers this process runs, by id. */
export class Providers extends Context.Tag("wearflow/Providers")<Providers, ReadonlyMap<string, Provider>>() {
  static readonly layer = (providers: ReadonlyArray<Provider>) =>
    Layer.succeed(Providers, new Map(providers.map((provider) => [provider.id, provider])))
}
