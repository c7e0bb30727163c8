/** How connections are polled: jitter, back-off, and the provider's app-wide request budget shared by every runner. */
import { Context, Duration } from "effect"

export interface SyncSettingsShape {
  /** Up to this much is added at random to each interval, so connections linked together do not poll together. */
  readonly jitter: Duration.Duration
  /** Rounds of all connections of one provider per `budgetWindow`, shared by every runner (the provider's app-wide limit). */
  readonly budgetRounds: number
  readonly budgetWindow: Duration.Duration
  /** First wait after a failed round (doubling, at most `maxBackoff`). */
  readonly retryBackoff: Duration.Duration
  readonly maxBackoff: Duration.Duration
  /**
   * Rounds one process runs at once. Each holds a database connection for its lock while the
   * provider answers, so this must stay well below the pool's size.
   */
  readonly concurrency: number
  /** How often newly linked connections are looked for, to start their polls. */
  readonly startInterval: Duration.Duration
  /** Rounds one poll execution runs before handing over to a fresh one (its journal grows with each). */
  readonly roundsPerExecution: number
  /** Overrides every provider's own interval when set (operators; tests). */
  readonly interval: Duration.Duration | undefined
}

export class SyncSettings extends Context.Tag("wearflow/SyncSettings")<SyncSettings, SyncSettingsShape>() {
  static readonly defaults: SyncSettingsShape = {
    jitter: Duration.seconds(30),
    budgetRounds: 100,
    budgetWindow: Duration.minutes(1),
    retryBackoff: Duration.seconds(5),
    maxBackoff: Duration.minutes(10),
    concurrency: 8,
    startInterval: Duration.seconds(2),
    roundsPerExecution: 200,
    interval: undefined
  }
}
