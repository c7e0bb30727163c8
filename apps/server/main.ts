/**
 * The Wearflow server on Bun: the app (App.ts), JSON logs at LOG_LEVEL (logging.ts), traces
 * over OTLP when configured (tracing.ts), full collections paced by its heap's growth (heap-growth.ts),
 * until SIGTERM. A worker process's log lines carry its name.
 */
import { BunRuntime } from "@effect/platform-bun"
import { Effect, Layer } from "effect"
import { App } from "./App.ts"
import { ServerConfig } from "./config.ts"
import * as Logging from "./logging.ts"
import * as HeapGrowth from "./heap-growth.ts"
import * as Tracing from "./tracing.ts"

const Logs = Effect.map(ServerConfig, ({ logLevel, processName }) => Logging.layer(logLevel, processName)).pipe(Layer.unwrapEffect)

Layer.launch(Layer.merge(App, HeapGrowth.layer)).pipe(Effect.provide(Layer.merge(Logs, Tracing.layer)), BunRuntime.runMain({ disablePrettyLogger: true }))
