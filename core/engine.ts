/**
 * Effect's durable engines on Postgres: @effect/workflow on @effect/cluster, for long-lived
 * processes (backfill chains), plus a rate limiter whose budget lives in the database.
 *
 * Every process that works is a runner (one that only receives is a client). Runners share shards through Postgres (advisory locks) and
 * reach each other only through the database: messages are stored, the runner owning the
 * shard picks them up. A runner that dies keeps its shards until its lock expires; one
 * restarted under the same address takes them back at once.
 */
import { ClusterWorkflowEngine, RunnerAddress, RunnerHealth, Runners, Sharding, ShardingConfig, SqlMessageStorage, SqlRunnerStorage } from "@effect/cluster"
import { WorkflowEngine } from "@effect/workflow"
import { Duration, Effect, Layer, Option } from "effect"
import { withMigrationLock } from "./storage/database.ts"
import * as RateLimiterStore from "./storage/rate-limiter-store.ts"
import { wholeMillis } from "./time.ts"

export interface EngineOptions {
  /**
   * This runner's address: unique among the processes sharing the database, stable across
   * restarts. Undefined: a client only, which starts workflows and reads their state but runs
   * none (a process that only receives leaves them to the workers).
   */
  readonly runnerAddress: { readonly host: string; readonly port: number } | undefined
  /** How long a dead runner's shards stay locked before others take them (default 35 s). */
  readonly lockExpiration?: Duration.DurationInput
}

const shardingConfig = (options: EngineOptions) => {
  const expiration = Duration.decode(options.lockExpiration ?? Duration.seconds(35))
  return ShardingConfig.layer({
    runnerAddress: options.runnerAddress === undefined ? Option.none() : Option.some(RunnerAddress.make(options.runnerAddress.host, options.runnerAddress.port)),
    shardLockExpiration: expiration,
    shardLockRefreshInterval: Duration.divide(expiration, 3).pipe(Option.getOrElse(() => expiration)),
    // Work sent to another runner is found in storage: this bounds how long it waits there.
    entityMessagePollInterval: Duration.seconds(1),
    // On shutdown, workflows waiting in a durable sleep or deferred are simply stopped: they
    // resume from their journal. Waiting the default 15 s for them would only delay exits.
    entityTerminationTimeout: Duration.seconds(2),
    refreshAssignmentsInterval: Duration.seconds(1)
  })
}

const storage = Layer.merge(SqlMessageStorage.layer, Layer.orDie(SqlRunnerStorage.layer))

/**
 * The cluster's own tables, created under Wearflow's migration lock: replicas starting
 * together would otherwise race on the DDL.
 */
const prepareStorage = (options: EngineOptions) =>
  Layer.effectDiscard(withMigrationLock(Layer.build(storage.pipe(Layer.provide(shardingConfig(options)))).pipe(Effect.orDie)))

/**
 * The engine with every durable sleep rounded up to whole milliseconds. A clock's wake-up
 * time is stored as bigint epoch milliseconds; a computed duration with a fraction (a rate
 * limit's wait, a configured "1.5 millis") would fail the insert and with it the workflow.
 */
const clocksInWholeMillis = Layer.effect(
  WorkflowEngine.WorkflowEngine,
  Effect.map(WorkflowEngine.WorkflowEngine, (engine) =>
    WorkflowEngine.WorkflowEngine.of({
      ...engine,
      scheduleClock: (workflow, options) =>
        engine.scheduleClock(workflow, { ...options, clock: { ...options.clock, duration: wholeMillis(options.clock.duration) } })
    })
  )
)

export const layer = (options: EngineOptions) => {
  const Cluster = Sharding.layer.pipe(
    Layer.provideMerge(Runners.layerNoop),
    Layer.provideMerge(storage),
    Layer.provide(RunnerHealth.layerNoop),
    Layer.provideMerge(shardingConfig(options)),
    Layer.provide(prepareStorage(options))
  )
  return Layer.mergeAll(
    clocksInWholeMillis.pipe(Layer.provide(ClusterWorkflowEngine.layer), Layer.provideMerge(Cluster)),
    RateLimiterStore.layerRateLimiter
  )
}
