/**
 * Connect flows: a single-use link URL sends the user to the provider's consent page, and the
 * provider's callback finishes the flow — the session used up first, so a replayed callback
 * cannot finish it twice — and links the account.
 */
import type { Statement } from "@effect/sql"
import { Data, Duration, Effect, Either, Option } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { PendingAuth } from "../provider.ts"
import { type Parts, ProviderUnsupported } from "./parts.ts"

/** How long a link URL stays usable. */
const LINK_TTL = Duration.hours(1)

/** The link URL is unknown, expired or already used. */
export class LinkInvalid extends Data.TaggedError("LinkInvalid")<{ readonly message: string }> {}

/** Why a connect flow ended without a connection, as the redirect's `error_type` says it. */
export type LinkErrorType = "access_denied" | "provider_unavailable" | "account_linked_elsewhere" | "misconfigured"

export type LinkOutcome =
  | { readonly _tag: "Connected"; readonly userId: string; readonly providerUserId: string; readonly backfillId: string | undefined }
  | { readonly _tag: "Failed"; readonly userId: string; readonly errorType: LinkErrorType; readonly message: string }

const linkId = (token: string) => createHash("sha256").update(token).digest("hex")

export const makeFlows = ({ accounts, authOf, decrypt, encrypt, links, sql }: Parts) => {
  /** A single-use link for the user to connect `providerId` with one of its flows; only its hash is stored. */
  const createLink = Effect.fn("Connections.createLink")(function* (
    teamId: string,
    userId: string,
    providerId: string,
    options: {
      readonly redirectUrl?: string | undefined
      readonly flow?: string | undefined
    }
  ) {
    yield* accounts.getUser(teamId, userId)
    const { auth } = yield* authOf(providerId)
    const version = options.flow ?? auth.flows[0]!
    if (!auth.flows.includes(version)) return yield* new ProviderUnsupported({ message: `${providerId} does not connect with ${version}` })
    const token = randomBytes(32).toString("base64url")
    const expiresAt = new Date(Date.now() + Duration.toMillis(LINK_TTL))
    yield* sql`
      insert into link_sessions (id, team_id, user_id, provider, redirect_url, auth_version, expires_at)
      values (${linkId(token)}, ${teamId}, ${userId}, ${providerId}, ${options.redirectUrl ?? null}, ${version}, ${expiresAt})`
    return { token, expiresAt }
  })

  const openSession = (where: Statement.Statement<unknown>) =>
    sql<{ id: string; team_id: string; user_id: string; provider: string; redirect_url: string | null; auth_version: string; code_verifier: Uint8Array | null; session_key: string | null; pending_secret: Uint8Array | null }>`
      select id, team_id, user_id, provider, redirect_url, auth_version, code_verifier, session_key, pending_secret
      from link_sessions where ${where} and completed_at is null and expires_at > now()`.pipe(Effect.map((rows) => Option.fromNullable(rows[0])))

  /** The provider's consent page for a link; opening the link again starts over. */
  const beginLink = Effect.fn("Connections.beginLink")(function* (providerId: string, token: string, callbackUrl: string) {
    const { auth } = yield* authOf(providerId)
    const session = yield* openSession(sql`id = ${linkId(token)} and provider = ${providerId}`)
    if (Option.isNone(session)) return yield* new LinkInvalid({ message: "this link is unknown, expired or already used; ask for a new one" })
    const { authorizeUrl, pending } = yield* auth.begin(session.value.auth_version, { callbackUrl, state: token })
    yield* sql`
      update link_sessions set code_verifier = ${encrypt(pending.codeVerifier)}, session_key = ${pending.sessionKey ?? null},
        pending_secret = ${encrypt(pending.secret)}
      where id = ${session.value.id}`
    return authorizeUrl
  })

  /**
   * Finishes a flow from the provider's callback: the session is found by `state` (or, for
   * flows whose callback has none, by the session key the provider reads from the callback)
   * and used up, the provider's tokens are fetched and the connection linked. Says where the
   * user goes next.
   */
  const finishLink = Effect.fn("Connections.finishLink")(function* (providerId: string, query: Readonly<Record<string, string>>, callbackUrl: string) {
    const { provider, auth } = yield* authOf(providerId)
    const sessionKey = query["state"] === undefined ? auth.sessionKeyOf?.(query) : undefined
    const where = query["state"] !== undefined
      ? sql`id = ${linkId(query["state"])}`
      : sessionKey !== undefined
      ? sql`session_key = ${sessionKey}`
      : undefined
    const found = where === undefined ? Option.none() : yield* openSession(sql`${where} and provider = ${providerId}`)
    if (Option.isNone(found)) return yield* new LinkInvalid({ message: "this sign-in is unknown, expired or already finished; start again from your link" })
    const session = found.value
    // Used up before the provider is called: a replayed callback cannot finish it twice.
    const claimed = yield* sql`update link_sessions set completed_at = now() where id = ${session.id} and completed_at is null returning id`
    if (claimed.length === 0) return yield* new LinkInvalid({ message: "this sign-in was already finished" })
    const pending: PendingAuth = {
      codeVerifier: yield* decrypt(session.code_verifier),
      sessionKey: session.session_key ?? undefined,
      secret: yield* decrypt(session.pending_secret)
    }
    const failed = (errorType: LinkErrorType, message: string): LinkOutcome => ({ _tag: "Failed", userId: session.user_id, errorType, message })
    const connected = yield* Effect.either(auth.complete(session.auth_version, { callbackUrl, pending, query }))
    const outcome: LinkOutcome = yield* Either.match(connected, {
      onLeft: (e) =>
        Effect.succeed(failed(e.reason === "denied" ? "access_denied" : e.reason === "misconfigured" ? "misconfigured" : "provider_unavailable", e.message)),
      onRight: ({ providerUserId, tokens }) =>
        links.link(session.team_id, session.user_id, provider, providerUserId, tokens, session.auth_version).pipe(
          Effect.map((linked): LinkOutcome => ({ _tag: "Connected", userId: session.user_id, providerUserId, backfillId: linked.backfillId })),
          Effect.catchTag("ProviderUserTaken", () => Effect.succeed(failed("account_linked_elsewhere", `this ${provider.name} account is connected in another workspace`)))
        )
    })
    if (outcome._tag === "Failed") {
      yield* Effect.logWarning("connect flow failed").pipe(Effect.annotateLogs({ provider: providerId, user_id: session.user_id, error_type: outcome.errorType, reason: outcome.message }))
    } else {
      yield* Effect.logInfo("provider connected").pipe(Effect.annotateLogs({ provider: providerId, user_id: session.user_id, auth_version: session.auth_version }))
    }
    return { outcome, redirectUrl: session.redirect_url ?? undefined }
  })

  return { createLink, beginLink, finishLink } as const
}
