/**
 * What a poll fetched goes to the inbox as notification bodies, each page once per round:
 * the key (connection, round, page, digest of the body) is claimed in the transaction that
 * stores the page's inbox row and ingest job. A round tried again from the same cursor stores
 * a page again only when its content changed — never twice, and nothing fetched is dropped.
 */
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import type { Inbox } from "../pipeline/inbox.ts"
import { PageCommitError, type SyncPages } from "../provider.ts"

export interface RoundTarget {
  readonly provider: string
  readonly connectionId: string
  readonly round: number
  readonly providerUserId: string
}

export const syncPages = (sql: SqlClient.SqlClient, inbox: Inbox, target: RoundTarget): SyncPages => ({
  providerUserId: target.providerUserId,
  commit: (page, content) =>
    Effect.gen(function* () {
      const digest = createHash("sha256").update(content.kind).update("\0").update(content.body).digest()
      const claimed = yield* sql`
        insert into sync_pages (connection_id, round, page, digest) values (${target.connectionId}, ${target.round}, ${page}, ${digest})
        on conflict do nothing returning page`
      if (claimed.length === 0) return false
      const inboxId = yield* inbox.commit({ provider: target.provider, kind: content.kind, body: content.body, itemCount: content.itemCount })
      yield* sql`update sync_pages set inbox_id = ${inboxId}
                 where connection_id = ${target.connectionId} and round = ${target.round} and page = ${page} and digest = ${digest}`
      return true
    }).pipe(
      sql.withTransaction,
      Effect.mapError(() => new PageCommitError({ message: `page ${page} of the poll could not be stored` }))
    )
})
