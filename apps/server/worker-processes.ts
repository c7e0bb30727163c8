/**
 * The worker processes an `all` server starts beside itself (WEARFLOW_WORKER_PROCESSES): this
 * same program as `WEARFLOW_ROLE=worker`, on the same database and data dir, so requests and
 * background work each have an event loop (and a core) of their own.
 *
 * A server and its workers talk over an IPC channel. Wakes go both ways: a notification
 * committed by the server wakes the workers' ingest takers, and events appended by either
 * wake the sink runners of the other, at once rather than at their next poll (Postgres NOTIFY
 * was measured first: its commits took the PUSH → webhook p50 at 200/s from 175 to 517 ms).
 * The server asks its workers for their metrics when /metrics is scraped. A worker stops when
 * the channel closes, so none outlives a killed server.
 *
 * A worker that exits is started again after a pause that doubles up to a minute. At shutdown
 * each is sent SIGTERM and awaited before the database stops.
 */
import * as OutboxWake from "@wearflow/core/outbox-wake"
import * as Queue from "@wearflow/core/pipeline/queue"
import { Context, Duration, Effect, Layer, Metric, Option, Redacted, Runtime } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { familiesOf, type MetricFamilies } from "./metrics.ts"

export interface WorkerProcessesOptions {
  readonly count: number
  readonly databaseUrl: Redacted.Redacted<string>
  /** This process's runner address; each worker's is derived from it. */
  readonly runnerAddress: { readonly host: string; readonly port: number }
}

/** The worker processes a server started, as /metrics and /health see them. None when it started none. */
export class StartedWorkers extends Context.Reference<StartedWorkers>()("wearflow/StartedWorkers", {
  defaultValue: (): {
    /** Their metrics, labelled with each one's name; a worker that does not answer in time is left out. */
    readonly metrics: Effect.Effect<ReadonlyArray<MetricFamilies>>
    /** How many run now, of how many it starts. */
    readonly running: Effect.Effect<{ readonly running: number; readonly wanted: number } | undefined>
  } => ({ metrics: Effect.succeed([]), running: Effect.succeed(undefined) })
}) {}

type Wake = "queue" | "outbox"

/** What a server and its workers say over the channel. */
type Message =
  | { readonly type: "wake"; readonly wake: Wake }
  | { readonly type: "metrics?"; readonly id: number }
  | { readonly type: "metrics"; readonly id: number; readonly families: MetricFamilies }

const wakeHere = { queue: Queue.wakeTakersFromPeer, outbox: OutboxWake.ringFromPeer } as const

/**
 * Passes this process's own wakes to `send`: at most one message per kind per turn of the
 * event loop, however many wakes the turn had.
 */
const forwardWakes = (send: (wake: Wake) => void) =>
  Effect.gen(function* () {
    const pending = new Set<Wake>()
    const flush = () => {
      for (const wake of pending) send(wake)
      pending.clear()
    }
    const forward = (wake: Wake) => () => {
      if (pending.size === 0) setImmediate(flush)
      pending.add(wake)
    }
    yield* Queue.forwardWakes(forward("queue"))
    yield* OutboxWake.forwardRings(forward("outbox"))
  })

const main = fileURLToPath(new URL("./main.ts", import.meta.url))
const maxPause = Duration.minutes(1)

/** The server's side: starts, watches and stops the workers. */
export const layer = (options: WorkerProcessesOptions) =>
  Layer.scoped(
    StartedWorkers,
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const runFork = Runtime.runFork(runtime)
      const runSync = Runtime.runSync(runtime)
      let stopping = false
      const running = new Map<string, ChildProcess>()
      const answers = new Map<number, (families: MetricFamilies) => void>()
      let asked = 0

      const sendTo = (child: ChildProcess, message: Message) => {
        // A worker between exit and restart has no channel: what it misses it finds when it starts.
        if (child.connected) child.send(message)
      }
      yield* forwardWakes((wake) => {
        for (const child of running.values()) sendTo(child, { type: "wake", wake })
      })

      const start = (name: string, index: number, pause: Duration.Duration) => {
        if (stopping) return
        const startedAt = Date.now()
        const child = spawn(process.execPath, [...process.execArgv, main], {
          stdio: ["ignore", "inherit", "inherit", "ipc"],
          env: {
            ...process.env,
            WEARFLOW_ROLE: "worker",
            WEARFLOW_WORKER_PROCESSES: "0",
            WEARFLOW_PROCESS_NAME: name,
            DATABASE_URL: Redacted.value(options.databaseUrl),
            WEARFLOW_RUNNER_ADDRESS: `${options.runnerAddress.host}-worker-${index}:${options.runnerAddress.port}`
          }
        })
        running.set(name, child)
        child.on("message", (message: Message) => {
          if (message.type === "metrics") answers.get(message.id)?.(message.families)
          else if (message.type === "wake") {
            runSync(wakeHere[message.wake])
            for (const other of running.values()) if (other !== child) sendTo(other, message)
          }
        })
        child.on("error", (error) => runFork(Effect.logError("a worker process failed to start", error.message).pipe(Effect.annotateLogs("worker", name))))
        child.once("exit", (code, signal) => {
          running.delete(name)
          if (stopping) return
          // A worker that ran a while failed afresh: its pause starts over.
          const next = Date.now() - startedAt > Duration.toMillis(maxPause) ? Duration.seconds(1) : Duration.min(Duration.times(pause, 2), maxPause)
          runFork(
            Effect.logError("a worker process exited; starting it again").pipe(
              Effect.annotateLogs({ worker: name, code: code ?? "", signal: signal ?? "", after: Duration.format(pause) }),
              Effect.zipRight(Effect.sleep(pause)),
              Effect.zipRight(Effect.sync(() => start(name, index, next)))
            )
          )
        })
      }

      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          stopping = true
          return Effect.forEach([...running], ([name, child]) =>
            Effect.async<void>((resume) => {
              if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
              child.once("exit", () => resume(Effect.void))
              child.kill("SIGTERM")
            }).pipe(
              Effect.timeout("30 seconds"),
              Effect.catchAll(() =>
                Effect.logWarning("a worker process did not stop within 30 s; killing it").pipe(
                  Effect.annotateLogs("worker", name),
                  Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")))
                ))
            ), { concurrency: "unbounded", discard: true })
        })
      )

      for (let i = 1; i <= options.count; i++) start(`worker-${i}`, i, Duration.seconds(1))

      const metricsOf = (child: ChildProcess) =>
        Effect.async<Option.Option<MetricFamilies>>((resume) => {
          const id = ++asked
          answers.set(id, (families) => {
            answers.delete(id)
            resume(Effect.succeed(Option.some(families)))
          })
          sendTo(child, { type: "metrics?", id })
          return Effect.sync(() => answers.delete(id))
        }).pipe(Effect.timeoutTo({ duration: "2 seconds", onSuccess: (o) => o, onTimeout: () => Option.none() }))

      return {
        metrics: Effect.suspend(() => Effect.forEach([...running.values()], metricsOf, { concurrency: "unbounded" })).pipe(
          Effect.map((all) => all.flatMap((o) => (Option.isSome(o) ? [o.value] : [])))
        ),
        running: Effect.sync(() => ({ running: [...running.values()].filter((child) => child.connected).length, wanted: options.count }))
      }
    })
  )

/**
 * A worker's side, when its server started it: wakes both ways, metrics on request, and a
 * stop (as at SIGTERM) when the channel closes, however the server ended.
 */
export const layerInWorker = (name: string) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const send = process.send?.bind(process)
      if (send === undefined) return
      const runSync = Runtime.runSync(yield* Effect.runtime<never>())
      yield* forwardWakes((wake) => {
        if (process.connected) send({ type: "wake", wake } satisfies Message)
      })
      const onMessage = (message: Message) => {
        if (message.type === "wake") runSync(wakeHere[message.wake])
        else if (message.type === "metrics?" && process.connected) {
          send({ type: "metrics", id: message.id, families: familiesOf(Metric.unsafeSnapshot(), [["process", name]]) } satisfies Message)
        }
      }
      const onDisconnect = () => process.kill(process.pid, "SIGTERM")
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.on("message", onMessage)
          process.once("disconnect", onDisconnect)
          if (!process.connected) onDisconnect()
        }),
        () =>
          Effect.sync(() => {
            process.off("message", onMessage)
            process.off("disconnect", onDisconnect)
          })
      )
    })
  )
