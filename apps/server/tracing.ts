/**
 * Traces over OTLP, configured by OpenTelemetry's standard variables: with
 * OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, Effect's spans go
 * to it (@effect/opentelemetry's OTLP exporter, no OpenTelemetry SDK in the process) and the
 * trace context travels with each notification (core/tracing.ts). Unset, nothing is traced.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Tracing } from "@wearflow/core/tracing"
import { Config, ConfigError, type Context, Duration, Effect, Either, type Exit, Layer, Option, Redacted, Tracer } from "effect"
import { randomBytes } from "node:crypto"

const optional = (name: string) => Config.option(Config.nonEmptyString(name))

/** `k1=v1,k2=v2`, values URL-encoded (the OTel specification's format for headers and attributes). */
const pairs = (name: string, text: string) =>
  Effect.forEach(text.split(",").filter((pair) => pair.trim() !== ""), (pair) => {
    const at = pair.indexOf("=")
    const key = pair.slice(0, at).trim()
    if (at <= 0 || key === "") return Effect.fail(ConfigError.InvalidData([name], `${name} must be comma-separated key=value pairs`))
    return Either.try(() => [key, decodeURIComponent(pair.slice(at + 1).trim())] as const).pipe(
      Either.mapLeft(() => ConfigError.InvalidData([name], `${name} has a value that is not URL-encoded`))
    )
  })

export const TracingConfig = Effect.gen(function* () {
  const disabled = (yield* optional("OTEL_SDK_DISABLED")).pipe(Option.exists((v) => v.toLowerCase() === "true")) ||
    (yield* optional("OTEL_TRACES_EXPORTER")).pipe(Option.exists((v) => v === "none"))
  const traces = yield* optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  const base = yield* optional("OTEL_EXPORTER_OTLP_ENDPOINT")
  // The signal-specific endpoint is used as it is; the general one gets the signal's path.
  const url = Option.orElse(traces, () => Option.map(base, (b) => `${b.replace(/\/+$/, "")}/v1/traces`))
  if (disabled || Option.isNone(url)) return Option.none()
  if (!URL.canParse(url.value) || !/^https?:$/.test(new URL(url.value).protocol)) {
    return yield* Effect.fail(ConfigError.InvalidData(["OTEL_EXPORTER_OTLP_ENDPOINT"], "the OTLP endpoint must be an http(s) URL"))
  }
  const tracesProtocol = yield* optional("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
  const baseProtocol = yield* optional("OTEL_EXPORTER_OTLP_PROTOCOL")
  const protocol = Option.getOrElse(Option.orElse(tracesProtocol, () => baseProtocol), () => "http/protobuf")
  if (protocol !== "http/protobuf" && protocol !== "http/json") {
    return yield* Effect.fail(ConfigError.InvalidData(["OTEL_EXPORTER_OTLP_PROTOCOL"], "OTLP over http/protobuf or http/json only (no grpc)"))
  }
  // Headers usually carry the collector's credentials.
  const tracesHeaders = yield* Config.option(Config.redacted("OTEL_EXPORTER_OTLP_TRACES_HEADERS"))
  const baseHeaders = yield* Config.option(Config.redacted("OTEL_EXPORTER_OTLP_HEADERS"))
  const headers = Option.match(Option.orElse(tracesHeaders, () => baseHeaders), {
    onNone: () => Effect.succeed([]),
    onSome: (text) => pairs("OTEL_EXPORTER_OTLP_HEADERS", Redacted.value(text))
  })
  const attributes = Option.match(yield* optional("OTEL_RESOURCE_ATTRIBUTES"), {
    onNone: () => Effect.succeed([]),
    onSome: (text) => pairs("OTEL_RESOURCE_ATTRIBUTES", text)
  })
  return Option.some({
    url: url.value,
    protocol,
    headers: Object.fromEntries(yield* headers),
    serviceName: Option.getOrElse(yield* optional("OTEL_SERVICE_NAME"), () => "wearflow"),
    attributes: Object.fromEntries(yield* attributes),
    // The batch span processor's delay (OpenTelemetry's default: 5 s).
    exportInterval: Duration.millis(yield* Config.integer("OTEL_BSP_SCHEDULE_DELAY").pipe(Config.withDefault(5000)))
  })
})

/** A span that is not exported, nor are its children: background work outside any request. */
class UnsampledSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId = randomBytes(8).toString("hex")
  readonly traceId: string
  readonly sampled = false
  readonly attributes = new Map<string, unknown>()
  status: Tracer.SpanStatus
  links: ReadonlyArray<Tracer.SpanLink>
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind
  ) {
    this.traceId = Option.match(parent, { onNone: () => randomBytes(16).toString("hex"), onSome: (p) => p.traceId })
    this.status = { _tag: "Started", startTime }
    this.links = links
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(key: string, value: unknown) {
    this.attributes.set(key, value)
  }
  event() {}
  addLinks(links: ReadonlyArray<Tracer.SpanLink>) {
    this.links = [...this.links, ...links]
  }
}

/**
 * Parent-based sampling that starts traces at requests only: a root span is exported if it is
 * a server's (an HTTP request), a child as its parent is. Polls, sweeps and workflows running
 * on their own would otherwise each be a trace, many a second, of no interest.
 */
const requestsOnly = (tracer: Tracer.Tracer): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) =>
      (Option.isNone(parent) ? kind === "server" : parent.value.sampled)
        ? tracer.span(name, parent, context, links, startTime, kind, options)
        : new UnsampledSpan(name, parent, context, links, startTime, kind),
    context: (f, fiber) => tracer.context(f, fiber)
  })

/** The OTLP exporter's modules, loaded only when traces are exported. */
const otlp = Effect.promise(() =>
  Promise.all([import("@effect/opentelemetry/OtlpTracer"), import("@effect/opentelemetry/OtlpSerialization")])
)

/**
 * The OTLP tracer and `Tracing` on, when configured. Otherwise no spans at all: Effect's own
 * tracer would still make one, with its attributes, at every `Effect.fn` and `withSpan` call.
 */
export const layer = Layer.unwrapEffect(Effect.map(TracingConfig, Option.match({
  onNone: () => Layer.setTracerEnabled(false),
  onSome: (config) =>
    Layer.merge(
      Layer.unwrapEffect(Effect.map(otlp, ([OtlpTracer, OtlpSerialization]) =>
        Layer.unwrapScoped(Effect.map(
          OtlpTracer.make({
            url: config.url,
            headers: config.headers,
            exportInterval: config.exportInterval,
            resource: { serviceName: config.serviceName, attributes: config.attributes }
          }),
          (tracer) => Layer.setTracer(requestsOnly(tracer))
        )).pipe(
          Layer.provide(config.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
          Layer.provide(FetchHttpClient.layer)
        ))),
      Layer.succeed(Tracing, { enabled: true })
    )
})))
