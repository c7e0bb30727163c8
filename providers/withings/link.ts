/** STUB — replaced by the auth work: `POST /v2/user/{id}/connections/withings`. */
import type { LinkInput } from "@wearflow/core/provider"
import { Schema } from "effect"

export const linkPayload: Schema.Schema<LinkInput, any> = Schema.Never as never
