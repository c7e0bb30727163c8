/** STUB — replaced by the notification work: Withings' callback (HEAD check, form POST). */
import { HttpApiGroup } from "@effect/platform"

export class WithingsApi extends HttpApiGroup.make("withings") {}
