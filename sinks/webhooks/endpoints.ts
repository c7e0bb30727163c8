/**
 * Webhook endpoints, per team: create, change, delete; custom headers; the signing secret and
 * its rotation; the message log with every attempt; resend, recover and test messages.
 * Secrets and custom headers are stored encrypted. Every query is scoped to the caller's team.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { clearAlerts, resolveAlert } from "@wearflow/core/alerts"
import { isUuid } from "@wearflow/core/tenancy/accounts"
import { decodeCursor, isInstantIdKey, pageOf } from "@wearflow/core/paging"
import { type DecryptionError, reencrypted, TokenCipher } from "@wearflow/core/crypto"
import { PublicInternet } from "@wearflow/core/public-internet"
import { Context, Data, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { Deliveries } from "./deliveries.ts"
import { WebhookSettings } from "./settings.ts"
import { isSecret, newSecret, type SignatureHeaders } from "./signing.ts"

export class EndpointNotFound extends Data.TaggedError("EndpointNotFound")<{ readonly id: string }> {
  override get message() {
    return "webhook endpoint not found"
  }
}

export class MessageNotFound extends Data.TaggedError("MessageNotFound")<{ readonly id: string }> {
  override get message() {
    return "webhook message not found"
  }
}

/** The URL may not be reached (scheme, credentials, a private address); the message says why. */
export class EndpointRefused extends Data.TaggedError("EndpointRefused")<{ readonly message: string }> {}

/** Bad input the caller can fix (headers, secret, filter). */
export class InvalidEndpoint extends Data.TaggedError("InvalidEndpoint")<{ readonly message: string }> {}

export interface Endpoint {
  readonly id: string
  readonly url: string
  readonly description: string
  readonly rate_limit: number | null
  readonly disabled: boolean
  readonly disabled_reason: string | null
  readonly filter_types: ReadonlyArray<string>
  readonly signature_headers: SignatureHeaders
  readonly fifo: boolean
  readonly created_at: string
  readonly updated_at: string
}

export interface EndpointChanges {
  readonly url?: string | undefined
  readonly description?: string | undefined
  readonly rate_limit?: number | null | undefined
  readonly disabled?: boolean | undefined
  readonly filter_types?: ReadonlyArray<string> | undefined
  readonly signature_headers?: SignatureHeaders | undefined
  readonly fifo?: boolean | undefined
}

export interface NewEndpoint extends EndpointChanges {
  readonly url: string
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** A secret of the caller's own (`whsec_...`); generated when absent. */
  readonly secret?: Redacted.Redacted<string> | undefined
}

export interface Attempt {
  readonly attempt: number
  readonly trigger: string
  readonly attempted_at: string
  readonly status: "success" | "failure"
  readonly response_status_code: number | null
  readonly latency_ms: number
  readonly response_excerpt: string | null
  readonly error: string | null
}

export interface MessageView {
  readonly id: string
  readonly event_id: string | null
  readonly event_type: string
  readonly user_id: string | null
  readonly status: "pending" | "retrying" | "delivered" | "failed"
  readonly created_at: string
  readonly delivered_at: string | null
  readonly attempts: ReadonlyArray<Attempt>
}

export interface MessageQuery {
  readonly status?: MessageView["status"]
  readonly limit: number
  /** `next_cursor` of the previous page. */
  readonly before?: string
}

type Failure = SqlError.SqlError | EndpointNotFound

type EndpointRow = Omit<Endpoint, "created_at" | "updated_at"> & { readonly created_at: Date; readonly updated_at: Date }

const view = (row: EndpointRow): Endpoint => ({
  ...row,
  created_at: row.created_at.toISOString(),
  updated_at: row.updated_at.toISOString()
})

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/
// Set by Wearflow on every request, or by HTTP itself.
const RESERVED = /^(svix-|webhook-|content-type$|content-length$|host$|user-agent$|connection$|transfer-encoding$|keep-alive$|upgrade$|te$|trailer$|expect$)/i

export const checkHeaders = (headers: Readonly<Record<string, string>>): InvalidEndpoint | undefined => {
  const entries = Object.entries(headers)
  if (entries.length > 20) return new InvalidEndpoint({ message: "at most 20 custom headers" })
  // Headers are named by position: error bodies never echo the caller's values.
  for (const [index, [name, value]] of entries.entries()) {
    const which = `custom header ${index + 1} of ${entries.length}`
    if (!HEADER_NAME.test(name)) return new InvalidEndpoint({ message: `${which}: the name is not a valid HTTP token` })
    if (RESERVED.test(name)) return new InvalidEndpoint({ message: `${which}: the name is one Wearflow sets (svix-*, webhook-*, content-type, ...) and cannot be overridden` })
    if (typeof value !== "string" || value.length > 4096 || /[\r\n\u0000]/.test(value)) {
      return new InvalidEndpoint({ message: `${which}: the value must be one line of at most 4096 characters` })
    }
  }
  return undefined
}

/** Exact event types, or a prefix ending in `*` (`daily.data.*`). */
const checkFilter = (types: ReadonlyArray<string>): InvalidEndpoint | undefined =>
  types.length > 100 || types.some((t) => !/^[a-z0-9_.]+\*?$|^\*$/.test(t))
    ? new InvalidEndpoint({ message: "filter_types: at most 100 event types (letters, digits, `_`, `.`; a trailing `*` matches a prefix)" })
    : undefined

export class WebhookEndpoints extends Context.Tag("wearflow/webhooks/WebhookEndpoints")<WebhookEndpoints, {
  readonly create: (teamId: string, input: NewEndpoint) => Effect.Effect<Endpoint, SqlError.SqlError | EndpointRefused | InvalidEndpoint>
  readonly list: (teamId: string) => Effect.Effect<ReadonlyArray<Endpoint>, SqlError.SqlError>
  /** At most `limit` endpoints in creation order after the cursor's, and the next page's cursor (null on the last). */
  readonly listPage: (teamId: string, limit: number, cursor: string | undefined) => Effect.Effect<{ readonly data: ReadonlyArray<Endpoint>; readonly next_cursor: string | null }, SqlError.SqlError | InvalidEndpoint>
  readonly get: (teamId: string, id: string) => Effect.Effect<Endpoint, Failure>
  readonly update: (teamId: string, id: string, changes: EndpointChanges) => Effect.Effect<Endpoint, Failure | EndpointRefused | InvalidEndpoint>
  readonly remove: (teamId: string, id: string) => Effect.Effect<void, Failure>
  readonly headers: (teamId: string, id: string) => Effect.Effect<Record<string, string>, Failure>
  readonly setHeaders: (teamId: string, id: string, headers: Readonly<Record<string, string>>) => Effect.Effect<Record<string, string>, Failure | InvalidEndpoint>
  readonly secret: (teamId: string, id: string) => Effect.Effect<Redacted.Redacted<string>, Failure>
  /** A new secret (the caller's or generated); the old one keeps signing for the grace period. */
  readonly rotateSecret: (teamId: string, id: string, key: Option.Option<Redacted.Redacted<string>>) => Effect.Effect<Redacted.Redacted<string>, Failure | InvalidEndpoint>
  readonly messages: (teamId: string, id: string, query: MessageQuery) => Effect.Effect<{ readonly data: ReadonlyArray<MessageView>; readonly next_cursor: string | null }, Failure>
  /** Sends one message again now, under its id; a fresh retry schedule follows if it fails. */
  readonly resend: (teamId: string, messageId: string) => Effect.Effect<void, SqlError.SqlError | MessageNotFound>
  /** Sends again every failed message created since `since`; how many. */
  readonly recover: (teamId: string, id: string, since: Date) => Effect.Effect<number, Failure>
  /** Sends a `webhook.test` event to the endpoint; the message id. */
  readonly test: (teamId: string, id: string) => Effect.Effect<string, Failure>
  /** After an encryption key rotation: re-encrypts secrets and headers with the current key; how many endpoints. */
  readonly reencrypt: Effect.Effect<number, SqlError.SqlError | DecryptionError>
}>() {}

export const layer = Layer.effect(
  WebhookEndpoints,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cipher = yield* TokenCipher
    const settings = yield* WebhookSettings
    const deliveries = yield* Deliveries
    const internet = (yield* PublicInternet).guard(settings.reach)
    const decrypt = (bytes: Uint8Array) => cipher.decrypt(bytes).pipe(Effect.orDie)

    const columns = sql`id, url, description, rate_limit, disabled, disabled_reason, filter_types, signature_headers, fifo, created_at, updated_at`

    // An id that cannot be an endpoint's matches none (and never reaches the uuid column).
    const find = (teamId: string, id: string) =>
      (isUuid(id)
        ? sql<EndpointRow>`select ${columns} from webhook_endpoints where team_id = ${teamId} and id = ${id}`
        : Effect.succeed<ReadonlyArray<EndpointRow>>([])).pipe(
        Effect.flatMap((rows) => (rows[0] ? Effect.succeed(rows[0]) : Effect.fail(new EndpointNotFound({ id }))))
      )

    const checked = (input: EndpointChanges) =>
      Effect.gen(function* () {
        const filter = input.filter_types && checkFilter(input.filter_types)
        if (filter) return yield* filter
        if (input.url !== undefined) {
          yield* internet.checkUrl(input.url).pipe(Effect.mapError(({ message }) => new EndpointRefused({ message })))
        }
      })

    const create = (teamId: string, input: NewEndpoint) =>
      Effect.gen(function* () {
        const headerProblem = input.headers && checkHeaders(input.headers)
        if (headerProblem) return yield* headerProblem
        yield* checked(input)
        if (input.secret && !isSecret(Redacted.value(input.secret))) {
          return yield* new InvalidEndpoint({ message: "secret must be `whsec_` followed by 24 to 64 bytes of base64" })
        }
        const secret = input.secret ?? newSecret()
        const headers = input.headers && Object.keys(input.headers).length > 0 ? cipher.encrypt(Redacted.make(JSON.stringify(input.headers))) : null
        const rows = yield* sql<EndpointRow>`
          insert into webhook_endpoints (id, team_id, url, description, rate_limit, disabled, filter_types, signature_headers, fifo, headers, secret)
          values (${randomUUID()}, ${teamId}, ${input.url}, ${input.description ?? ""}, ${input.rate_limit ?? null}, ${input.disabled ?? false},
                  ${input.filter_types ?? []}::text[], ${input.signature_headers ?? "svix"}, ${input.fifo ?? false}, ${headers}, ${cipher.encrypt(secret)})
          returning ${columns}`
        return view(rows[0]!)
      })

    const update = (teamId: string, id: string, changes: EndpointChanges) =>
      Effect.gen(function* () {
        const current = yield* find(teamId, id)
        yield* checked(changes)
        const rows = yield* sql<EndpointRow>`
          update webhook_endpoints set
            url = ${changes.url ?? current.url},
            description = ${changes.description ?? current.description},
            rate_limit = ${changes.rate_limit === undefined ? current.rate_limit : changes.rate_limit},
            disabled = ${changes.disabled ?? current.disabled},
            disabled_reason = case when ${changes.disabled ?? current.disabled} then disabled_reason end,
            failing_since = case when ${changes.disabled === false} then null else failing_since end,
            filter_types = ${changes.filter_types ?? current.filter_types}::text[],
            signature_headers = ${changes.signature_headers ?? current.signature_headers},
            fifo = ${changes.fifo ?? current.fifo},
            updated_at = now()
          where id = ${current.id}
          returning ${columns}`
        // Re-enabled by its team: the operator's endpoint.disabled alert clears.
        if (changes.disabled === false) yield* resolveAlert(sql, "endpoint.disabled", current.id)
        yield* deliveries.invalidate(current.id)
        return view(rows[0]!)
      })

    const headers = (teamId: string, id: string) =>
      Effect.gen(function* () {
        const { id: endpointId } = yield* find(teamId, id)
        const rows = yield* sql<{ headers: Uint8Array | null }>`select headers from webhook_endpoints where id = ${endpointId}`
        const stored = rows[0]?.headers
        return stored ? (JSON.parse(Redacted.value(yield* decrypt(stored))) as Record<string, string>) : {}
      })

    const setHeaders = (teamId: string, id: string, next: Readonly<Record<string, string>>) =>
      Effect.gen(function* () {
        const { id: endpointId } = yield* find(teamId, id)
        const problem = checkHeaders(next)
        if (problem) return yield* problem
        const stored = Object.keys(next).length > 0 ? cipher.encrypt(Redacted.make(JSON.stringify(next))) : null
        yield* sql`update webhook_endpoints set headers = ${stored}, updated_at = now() where id = ${endpointId}`
        yield* deliveries.invalidate(endpointId)
        return { ...next }
      })

    const secret = (teamId: string, id: string) =>
      Effect.gen(function* () {
        const { id: endpointId } = yield* find(teamId, id)
        const rows = yield* sql<{ secret: Uint8Array }>`select secret from webhook_endpoints where id = ${endpointId}`
        return yield* decrypt(rows[0]!.secret)
      })

    const rotateSecret = (teamId: string, id: string, key: Option.Option<Redacted.Redacted<string>>) =>
      Effect.gen(function* () {
        const { id: endpointId } = yield* find(teamId, id)
        if (Option.isSome(key) && !isSecret(Redacted.value(key.value))) {
          return yield* new InvalidEndpoint({ message: "key must be `whsec_` followed by 24 to 64 bytes of base64" })
        }
        const next = Option.getOrElse(key, newSecret)
        yield* sql`
          update webhook_endpoints set previous_secret = secret, secret = ${cipher.encrypt(next)},
            previous_secret_until = now() + make_interval(secs => ${Duration.toSeconds(settings.secretGrace)}), updated_at = now()
          where id = ${endpointId}`
        yield* deliveries.invalidate(endpointId)
        return next
      }).pipe(sql.withTransaction)

    const messages = (teamId: string, id: string, query: MessageQuery) =>
      Effect.gen(function* () {
        const { id: endpointId } = yield* find(teamId, id)
        const rows = yield* sql<Omit<MessageView, "attempts" | "created_at" | "delivered_at"> & {
          seq: string
          created_at: Date
          delivered_at: Date | null
          attempt_log: ReadonlyArray<Attempt>
        }>`
          select m.id, m.event_id, m.event_type, m.user_id, case when m.status = 'sending' then 'pending' else m.status end as status, m.created_at, m.delivered_at, m.seq::text as seq,
            coalesce((
              select json_agg(json_build_object(
                'attempt', a.attempt, 'trigger', a.trigger, 'attempted_at', a.attempted_at, 'status', a.status,
                'response_status_code', a.response_status, 'latency_ms', a.latency_ms,
                'response_excerpt', a.response_excerpt, 'error', a.error) order by a.attempt)
              from webhook_attempts a where a.message_id = m.id), '[]'::json) as attempt_log
          from webhook_messages m
          where m.endpoint_id = ${endpointId}
            ${query.status ? sql`and m.status = any(${query.status === "pending" ? ["pending", "sending"] : [query.status]}::text[])` : sql``}
            ${query.before ? sql`and m.seq < ${query.before}::bigint` : sql``}
          order by m.seq desc
          limit ${query.limit + 1}`
        const page = rows.slice(0, query.limit)
        return {
          data: page.map(({ seq: _seq, attempt_log, ...m }) => ({
            ...m,
            created_at: m.created_at.toISOString(),
            delivered_at: m.delivered_at?.toISOString() ?? null,
            attempts: attempt_log.map((a) => ({ ...a, attempted_at: new Date(a.attempted_at).toISOString() }))
          })),
          next_cursor: rows.length > query.limit ? page[page.length - 1]!.seq : null
        }
      })

    const resend = (teamId: string, messageId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql`
          update webhook_messages set status = 'pending', run = run + 1, lease_until = '-infinity', updated_at = now()
          where id = ${messageId} and team_id = ${teamId} returning id`
        if (rows.length === 0) return yield* new MessageNotFound({ id: messageId })
        yield* deliveries.wake
      })

    const recover = (teamId: string, id: string, since: Date) =>
      Effect.gen(function* () {
        const { id: endpointId } = yield* find(teamId, id)
        const rows = yield* sql`
          update webhook_messages set status = 'pending', run = run + 1, lease_until = '-infinity', updated_at = now()
          where endpoint_id = ${endpointId} and status = 'failed' and created_at >= ${since} returning id`
        if (rows.length > 0) yield* deliveries.wake
        return rows.length
      })

    const test = (teamId: string, id: string) =>
      Effect.gen(function* () {
        const endpoint = yield* find(teamId, id)
        const messageId = `msg_${randomUUID().replaceAll("-", "")}`
        const payload = { event_type: "webhook.test", data: { endpoint_id: endpoint.id, message: "a test event from Wearflow" }, team_id: teamId }
        yield* sql`insert into webhook_messages (id, endpoint_id, team_id, event_type, payload)
                   values (${messageId}, ${endpoint.id}, ${teamId}, 'webhook.test', ${JSON.stringify(payload)}::jsonb)`
        yield* deliveries.wake
        return messageId
      })

    const reencrypt = Effect.gen(function* () {
      const columns = ["secret", "previous_secret", "headers"] as const
      type Row = Record<(typeof columns)[number], Uint8Array | null> & { id: string }
      const rows = yield* sql<Row>`select id, secret, previous_secret, headers from webhook_endpoints`
      let moved = 0
      for (const row of rows) {
        const fresh = yield* reencrypted(cipher, columns.map((c) => row[c]))
        if (!fresh) continue
        const [secret, previous, headers] = fresh
        // Only if no rotation or header change rewrote the row meanwhile.
        yield* sql`
          update webhook_endpoints set secret = ${secret!}, previous_secret = ${previous ?? null}, headers = ${headers ?? null}
          where id = ${row.id} and secret = ${row.secret} and headers is not distinct from ${row.headers}`
        yield* deliveries.invalidate(row.id)
        moved++
      }
      return moved
    })

    return {
      reencrypt,
      create,
      list: (teamId) => sql<EndpointRow>`select ${columns} from webhook_endpoints where team_id = ${teamId} order by created_at, id`.pipe(Effect.map((rows) => rows.map(view))),
      listPage: (teamId, limit, cursor) =>
        Effect.gen(function* () {
          // The cursor is the last endpoint's (created_at, id), as Postgres prints them: exact to the microsecond.
          const after = cursor === undefined ? undefined : Either.getOrUndefined(decodeCursor(cursor, 2))
          if (cursor !== undefined && (after === undefined || !isInstantIdKey(after))) {
            return yield* new InvalidEndpoint({ message: "cursor is not one this API gave out" })
          }
          const rows = yield* sql<EndpointRow & { k_created: string; k_id: string }>`
            select ${columns}, created_at::text as k_created, id::text as k_id from webhook_endpoints
            where team_id = ${teamId} ${after === undefined ? sql`` : sql`and (created_at, id) > (${after[0]}::timestamptz, ${after[1]}::uuid)`}
            order by created_at, id limit ${limit + 1}`
          const { items, next } = pageOf(rows, limit, (r) => [r.k_created, r.k_id])
          return { data: items.map(view), next_cursor: next }
        }),
      get: (teamId, id) => Effect.map(find(teamId, id), view),
      update,
      remove: (teamId, id) =>
        find(teamId, id).pipe(
          Effect.flatMap((row) =>
            sql`delete from webhook_endpoints where id = ${row.id}`.pipe(
              // Its open alerts (disabled, exhausted messages) concern nothing any more.
              Effect.zipRight(clearAlerts(sql, sql`select id from alerts where endpoint_id = ${row.id} and status = 'open'`)),
              Effect.zipRight(deliveries.forget(row.id))
            ))
        ),
      headers,
      setHeaders,
      secret,
      rotateSecret,
      messages,
      resend,
      recover,
      test
    }
  })
)
