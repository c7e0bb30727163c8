/**
 * Plugins are Deno-style: one folder (or npm package), one `mod.ts` exporting `plugin`: its
 * manifest, its layer, and what the app may take from that layer — the Provider or Sink it
 * builds, the HTTP groups it handles, the CLI commands it adds. The manifest declares what the
 * plugin may reach (hosts, or the public internet) and read (environment variables); the host
 * (host.ts) enforces both. Which plugins run is configuration (registry.ts), never an import.
 */
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import { type Config, Context, Data, type Duration, Effect, type Either, type Layer } from "effect"
import type { Connections } from "./connections/connections.ts"
import type { RawRoute } from "./http.ts"
import type { Provider, Providers } from "./provider.ts"
import type { Sink } from "./sink.ts"

/**
 * Whether this process does the background work (ingest, the sinks' deliveries, daemons) or
 * only receives requests. A plugin starts its background loops with `forkWhenWorking`, so a
 * receiver runs none of them: they run in the worker processes, once per deployment's share.
 */
export class BackgroundWork extends Context.Reference<BackgroundWork>()("wearflow/BackgroundWork", { defaultValue: () => true }) {}

/** Forks `loop` for the scope's lifetime where this process does background work; elsewhere nothing. */
export const forkWhenWorking = <A, E, R>(loop: Effect.Effect<A, E, R>) =>
  Effect.flatMap(BackgroundWork, (works) => (works ? Effect.asVoid(Effect.forkScoped(loop)) : Effect.void))

export interface Permissions {
  /**
   * Hosts the plugin may call: `api.example.com`, `127.0.0.1:9000`, or `*.example.com`. A
   * Config, read through the plugin's own restricted environment, so the hosts can follow
   * the base URLs an operator configures (e.g. a staging or test server).
   */
  readonly net: Config.Config<ReadonlyArray<string>>
  /**
   * Whether the plugin reaches hosts its operator's users choose (customers' webhook URLs):
   * any public address, never a private, loopback or link-local one unless the operator
   * allows it. The host grants it as an address-guarded client (see `PublicInternet`).
   */
  readonly internet?: boolean
  /** Environment variable names it may read; a trailing `*` allows a prefix (`ACME_*`). */
  readonly env: ReadonlyArray<string>
}

export interface Manifest<Conf = unknown> {
  readonly id: string
  readonly kind: "provider" | "sink"
  readonly version: string
  readonly permissions: Permissions
  /** The plugin's typed configuration, read through its restricted ConfigProvider. */
  readonly config: Config.Config<Conf>
}

/** Hosts of the given base URLs, as `net` permissions. */
export const hostsOf = (urls: ReadonlyArray<URL>): ReadonlyArray<string> => [...new Set(urls.map((url) => url.host))]

/** How the sink runner paces a sink: events per batch, and the pause when the outbox is empty. */
export interface SinkPacing {
  readonly batchSize?: number
  readonly idle?: Duration.DurationInput
}

/** Counts a long command shows as it goes. */
export interface CommandProgress {
  readonly total: number
  readonly done: number
  readonly succeeded: number
  readonly failed: number
}

/** Where a plugin's command writes: results to stdout, progress and notes to stderr. */
export interface CommandOutput {
  readonly stdout: (text: string) => Effect.Effect<void>
  /**
   * A progress line on stderr (redrawn in place on a terminal, plain lines otherwise), e.g.
   * `label  [####----]  3/8  <succeeded> 2  failed 1`; warnings logged meanwhile print above it.
   */
  readonly progress: (label: string, succeeded: string) => {
    readonly update: (progress: CommandProgress) => Effect.Effect<void>
    readonly finish: Effect.Effect<void>
  }
}

/** The command cannot run: its one-line message is printed, and the exit code is 3. */
export class CommandUnusable extends Data.TaggedError("CommandUnusable")<{ readonly message: string }> {}

/**
 * `wearflow <plugin id> <name> [args]`: a command a plugin adds to the CLI. Arguments are
 * parsed before anything is opened (a usage error exits 2); `run` then gets the services the
 * CLI builds from the server's configuration (the database, connections, providers) and the
 * plugin's own sandboxed configuration, and answers the process exit code.
 */
export interface PluginCommand<A = any, R = never> {
  readonly name: string
  /** The arguments, as the usage line shows them: `[--concurrency N] [--json]`. */
  readonly usage: string
  /** What it does, for `wearflow --help` (may span lines). */
  readonly summary: string
  /** Its options and exit codes, appended to the help. */
  readonly help: string
  /** What an interruption (Ctrl-C) leaves behind. */
  readonly interrupted: string
  /** The arguments after the command's name, or a usage error's message. */
  readonly parse: (args: ReadonlyArray<string>) => Either.Either<A, string>
  /** `R`: services the plugin's own `providerLayer` provides besides the Provider. */
  readonly run: (args: A, output: CommandOutput) => Effect.Effect<number, CommandUnusable, CommandEnvironment | R>
}

/** What the CLI gives a plugin's command. */
export type CommandEnvironment = Connections | Providers

/** What a plugin's `mod.ts` exports as `plugin`. */
export interface Plugin<ROut = any, E = any, RIn = any, Conf = any> {
  readonly manifest: Manifest<Conf>
  /** Built once per process inside the plugin's sandbox (host.ts). */
  readonly layer: Layer.Layer<ROut, E, RIn>
  /** Provider plugins: the tag under which `layer` provides the Provider. */
  readonly provider?: Context.Tag<any, Provider>
  /** Sink plugins: the tag under which `layer` provides the Sink, and how to pace it. */
  readonly sink?: { readonly tag: Context.Tag<any, Sink>; readonly pacing?: SinkPacing }
  /** HTTP groups (built against `ApiId`) whose handlers `layer` provides; mounted by the app. */
  readonly routes?: ReadonlyArray<HttpApiGroup.HttpApiGroup.Any>
  /**
   * Webhook endpoints of `routes` answered before the HttpApi router (see `RawRoute`): the tag
   * under which `layer` provides them.
   */
  readonly rawRoutes?: Context.Tag<any, ReadonlyArray<RawRoute>>
  /**
   * The part of `layer` that builds the Provider alone (no routes, no workers): what the CLI
   * loads to run commands beside the server. Defaults to `layer`.
   */
  readonly providerLayer?: Layer.Layer<any, any, any>
  /** CLI commands, run as `wearflow <id> <name>`. */
  readonly commands?: ReadonlyArray<PluginCommand<any, any>>
}

const matches = (pattern: string, value: string) =>
  pattern.endsWith("*") ? value.startsWith(pattern.slice(0, -1)) : pattern === value

export const allowsEnv = (permissions: Pick<Permissions, "env">, name: string) => permissions.env.some((p) => matches(p, name))

export const allowsHost = (hosts: ReadonlyArray<string>, url: URL) =>
  hosts.some((entry) => {
    const host = entry.toLowerCase()
    if (host.startsWith("*.")) return url.hostname.endsWith(host.slice(1))
    return host.includes(":") ? url.host === host : url.hostname === host
  })
