/**
 * Trace context across Wearflow's durable hand-offs. A notification's work happens in three
 * places at three times: the request that commits its body to the inbox, the ingest worker
 * that processes the row, and each sink that delivers the events it made. The request's W3C
 * `traceparent` is stored with the inbox row; the worker continues that trace, and sinks
 * record their delivery as spans in it, so one notification is one trace.
 *
 * Off unless the server exports traces (`Tracing` says so): then nothing is stored or looked up.
 */
import { Clock, Context, Effect, type Exit, Option, Tracer } from "effect"

export class Tracing extends Context.Reference<Tracing>()("wearflow/Tracing", {
  defaultValue: () => ({ enabled: false })
}) {}

/**
 * `Effect.fn(name)` when traces are exported, `Effect.fnUntraced` when not. The traced form
 * captures a stack trace at every call (10–30 µs in Bun, against about 1 µs untraced), which
 * the hot paths (a commit per request, a look-up per job) would pay for spans nobody exports.
 */
export const fn = (name: string): Effect.Effect<typeof Effect.fnUntraced> =>
  Effect.map(Tracing, (tracing) => (tracing.enabled ? Effect.fn(name) : Effect.fnUntraced) as typeof Effect.fnUntraced)

/** The W3C traceparent of `span`. */
export const traceparentOf = (span: Tracer.AnySpan) => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The span a stored traceparent names, if it is one. */
export const parseTraceparent = (traceparent: string | null | undefined): Option.Option<Tracer.ExternalSpan> => {
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null
  if (!match) return Option.none()
  return Option.some(Tracer.externalSpan({ traceId: match[1]!, spanId: match[2]!, sampled: (parseInt(match[3]!, 16) & 1) === 1 }))
}

/** The traceparent to store with work handed on, when tracing is on and a span is current. */
export const currentTraceparent: Effect.Effect<string | null> = Effect.gen(function* () {
  if (!(yield* Tracing).enabled) return null
  const span = yield* Effect.option(Effect.currentParentSpan)
  return Option.match(span, { onNone: () => null, onSome: traceparentOf })
})

/** Runs `effect` in the trace `traceparent` names (a stored one); as it is without one. */
export const continueTrace = (traceparent: string | null | undefined) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Option.match(parseTraceparent(traceparent), { onNone: () => effect, onSome: (parent) => Effect.withParentSpan(effect, parent) })

/**
 * Runs `effect` with a span of `name` in each of the traces `traceparents` name: work done once
 * for events of many notifications (a sink's batch) shows in each notification's trace.
 */
export const spanInEach = (name: string, traceparents: Iterable<string>, attributes: Record<string, unknown>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.gen(function* () {
      const spans: Array<Tracer.Span> = []
      for (const traceparent of traceparents) {
        const parent = parseTraceparent(traceparent)
        if (Option.isSome(parent)) spans.push(yield* Effect.makeSpan(name, { parent: parent.value, kind: "consumer", attributes }))
      }
      if (spans.length === 0) return yield* effect
      const exit = yield* Effect.exit(effect)
      const end = yield* Clock.currentTimeNanos
      for (const span of spans) span.end(end, exit as Exit.Exit<unknown, unknown>)
      return yield* exit
    })
