/** How backfills run: what history is asked for, how its completion is judged, the shared budget. */
import { Context, Duration } from "effect"

export interface BackfillSettingsShape {
  /** Start a backfill when a connection is made. */
  readonly onConnect: boolean
  /** How many days of history to ask for. */
  readonly days: number
  /** The provider types to ask for; undefined: every type the provider offers. */
  readonly types: ReadonlyArray<string> | undefined
  /** A window with no new data for this long after the request (or its last data) is complete. */
  readonly quietPeriod: Duration.Duration
  /** Once data reaching both ends of a window arrived, how long to wait for stragglers. */
  readonly settle: Duration.Duration
  /** The provider's rate limit: days of data per `budgetWindow`, shared by every runner. */
  readonly budgetDays: number
  readonly budgetWindow: Duration.Duration
  /** First wait after a 5xx or network failure (doubling, at most 10 minutes). */
  readonly retryBackoff: Duration.Duration
}

export class BackfillSettings extends Context.Tag("wearflow/BackfillSettings")<BackfillSettings, BackfillSettingsShape>() {
  /** A conservative provider rate limit (100 days of data per minute) and 90 days of history. */
  static readonly defaults: BackfillSettingsShape = {
    onConnect: true,
    days: 90,
    types: undefined,
    quietPeriod: Duration.minutes(10),
    settle: Duration.seconds(20),
    budgetDays: 100,
    budgetWindow: Duration.minutes(1),
    retryBackoff: Duration.seconds(5)
  }
}
