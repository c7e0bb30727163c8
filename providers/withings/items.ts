/** STUB — replaced by the sync work: the pages a poll or a backfill stores, split into items. */
import type { NotificationItem } from "@wearflow/core/provider"

/** The kinds of page the plugin commits to the inbox. */
export const PAGE_KINDS: ReadonlyArray<string> = []

export const pageItemsOf = (_kind: string, _body: unknown): ReadonlyArray<NotificationItem> => []
