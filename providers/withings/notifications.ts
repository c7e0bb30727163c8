/** STUB — replaced by the notification work: Withings' notification as stored, its item and what it means. */
import type { LifecycleChange, NotificationItem } from "@wearflow/core/provider"

/** The inbox kind of a stored notification. */
export const NOTIFY_KIND = "notify"

export const notificationItemsOf = (_body: unknown): ReadonlyArray<NotificationItem> => []

export const lifecycleOf = (_item: NotificationItem): LifecycleChange | undefined => undefined
