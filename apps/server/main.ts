/** The Wearflow server on Bun: the app (App.ts), JSON logs at LOG_LEVEL, until SIGTERM. */
import { BunRuntime } from "@effect/platform-bun"
import { Effect, Layer, Logger } from "effect"
import { App } from "./App.ts"
import { ServerConfig } from "./config.ts"

const Logging = Effect.map(ServerConfig, ({ logLevel }) => Layer.merge(Logger.json, Logger.minimumLogLevel(logLevel))).pipe(Layer.unwrapEffect)

Layer.launch(App).pipe(Effect.provide(Logging), BunRuntime.runMain({ disablePrettyLogger: true }))
