/**
 * The server's fiber scheduler. Effect's default runs ready fibers as microtasks for up to
 * 2,048 drains in a row before it lets the event loop turn; while the ingest workers have CPU
 * work, a request that arrived meanwhile, or a Postgres reply, waits all that time. This one
 * gives the event loop a turn (setImmediate: after pending I/O) every `burst` drains, so the
 * acks are read and answered between the workers' bursts.
 */
import { Scheduler } from "effect"

export const ioFirst = (burst: number): Scheduler.Scheduler => {
  const runner = new Scheduler.SchedulerRunner((depth, drain) => {
    if (depth >= burst) setImmediate(() => drain(0))
    else queueMicrotask(() => drain(depth + 1))
  })
  return {
    shouldYield: Scheduler.defaultShouldYield,
    scheduleTask: (task, priority) => runner.scheduleTask(task, priority)
  }
}
