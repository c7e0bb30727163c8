/**
 * Which plugins run is configuration: a list of module specifiers (`wearflow.config.ts`, or
 * `WEARFLOW_PLUGINS` over it). Each names a folder of this repository by its short name
 * (`acme` → providers/acme, `postgres` → sinks/postgres), a path, or an npm package; its
 * `mod.ts` (the package's main entry) exports `plugin`. A plugin left out is never imported:
 * its routes do not exist and its environment is never read.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type { SqlClient } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow"
import { Config, type ConfigError, type ConfigProvider, Context, Data, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import type { TokenCipher } from "./crypto.ts"
import * as Host from "./host.ts"
import type { ApiKeyAuth, RawRoute } from "./http.ts"
import type { Inbox } from "./pipeline/inbox.ts"
import type { Plugin } from "./plugin.ts"
import { type Provider, Providers } from "./provider.ts"
import { Sinks } from "./sink.ts"

/** The plugin list could not be loaded; the message names the specifier, never its contents. */
export class PluginLoadError extends Data.TaggedError("PluginLoadError")<{ readonly message: string }> {}

/** What runs: the operator's list of plugins, in order (providers and sinks alike). */
export interface WearflowConfig {
  readonly plugins: ReadonlyArray<string>
}

/**
 * The configuration an operator edits in `wearflow.config.ts`: `plugins` is the default list,
 * which `WEARFLOW_PLUGINS` (comma-separated) replaces when set.
 */
export const defineConfig = (defaults: WearflowConfig): Config.Config<WearflowConfig> =>
  Config.all({
    plugins: Config.array(Config.string(), "WEARFLOW_PLUGINS").pipe(
      Config.map((names) => names.map((name) => name.trim()).filter((name) => name.length > 0)),
      Config.withDefault(defaults.plugins)
    )
  })

/** Folders of this repository that hold plugins, searched in order for a short name. */
const PLUGIN_FOLDERS = ["providers", "sinks"]

const isShortName = (specifier: string) => /^[a-z0-9][a-z0-9_-]*$/.test(specifier)

/** Where `specifier` is imported from: a repository folder, a path under `root`, or a package. */
export const resolveSpecifier = (specifier: string, root: string): string => {
  if (isShortName(specifier)) {
    for (const folder of PLUGIN_FOLDERS) {
      const file = path.join(root, folder, specifier, "mod.ts")
      if (fs.existsSync(file)) return pathToFileURL(file).href
    }
    return specifier
  }
  if (specifier.startsWith(".") || path.isAbsolute(specifier)) {
    const target = path.resolve(root, specifier)
    const file = fs.existsSync(target) && fs.statSync(target).isDirectory() ? path.join(target, "mod.ts") : target
    return pathToFileURL(file).href
  }
  return specifier
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

/** What is wrong with a module's `plugin` export, or undefined when it has the contract's shape. */
export const checkPlugin = (value: unknown): string | undefined => {
  if (!isObject(value)) return "exports no `plugin` object"
  const manifest = value.manifest
  if (!isObject(manifest)) return "its plugin has no manifest"
  if (typeof manifest.id !== "string" || !/^[a-z0-9][a-z0-9_-]{0,62}$/.test(manifest.id)) return "its manifest id must be a lower-case slug"
  if (manifest.kind !== "provider" && manifest.kind !== "sink") return "its manifest kind must be provider or sink"
  if (typeof manifest.version !== "string") return "its manifest has no version"
  const permissions = manifest.permissions
  if (!isObject(permissions) || !Array.isArray(permissions.env) || !permissions.env.every((name) => typeof name === "string") || permissions.net === undefined) {
    return "its manifest must declare permissions: net and env"
  }
  if (manifest.config === undefined) return "its manifest has no config"
  if (!isObject(value.layer)) return "its plugin has no layer"
  if (manifest.kind === "provider" && value.provider === undefined) return "a provider plugin must name its Provider tag"
  if (manifest.kind === "sink" && !isObject(value.sink)) return "a sink plugin must name its Sink tag"
  if (value.routes !== undefined && !Array.isArray(value.routes)) return "its routes must be a list of HTTP groups"
  if (value.rawRoutes !== undefined && !Context.isTag(value.rawRoutes)) return "its rawRoutes must be a tag"
  if (value.commands !== undefined && !Array.isArray(value.commands)) return "its commands must be a list"
  return undefined
}

/** Imports every configured plugin, checking each export and that no id is configured twice. */
export const loadPlugins = (specifiers: ReadonlyArray<string>, root: string) =>
  Effect.gen(function* () {
    const plugins: Array<Plugin> = []
    for (const specifier of specifiers) {
      const module = yield* Effect.tryPromise({
        try: () => import(resolveSpecifier(specifier, root)) as Promise<Record<string, unknown>>,
        catch: (cause) =>
          new PluginLoadError({
            message: `plugin ${specifier} could not be imported${isShortName(specifier) ? ` (no providers/${specifier} or sinks/${specifier} folder, and no such package)` : ""}: ${cause instanceof Error ? cause.message : "unknown error"}`
          })
      })
      const problem = checkPlugin(module.plugin)
      if (problem !== undefined) return yield* new PluginLoadError({ message: `plugin ${specifier} ${problem}` })
      const plugin = module.plugin as Plugin
      if (plugins.some((other) => other.manifest.id === plugin.manifest.id)) {
        return yield* new PluginLoadError({ message: `plugin id ${plugin.manifest.id} is configured twice` })
      }
      plugins.push(plugin)
    }
    return plugins as ReadonlyArray<Plugin>
  })

/**
 * What the app offers every plugin's layer, besides the sandboxed HttpClient and
 * ConfigProvider the host gives each: the database, the inbox (to commit what a plugin
 * receives or fetches), the token cipher, the durable workflow engine, and the API-key check
 * for routes under `/v2` (`ApiKeyAuth`). A plugin needing anything else fails to build,
 * naming the missing service.
 */
export type PluginEnvironment = HttpClient.HttpClient | SqlClient.SqlClient | Inbox | TokenCipher | WorkflowEngine.WorkflowEngine | ApiKeyAuth

/** Every configured plugin's raw webhook routes (the server answers them before HttpApi). */
export class RawRoutes extends Context.Tag("wearflow/RawRoutes")<RawRoutes, ReadonlyArray<RawRoute>>() {}

/**
 * The configured plugins' layers, each built in its sandbox (host.ts), with the registries
 * the app reads: `Providers` (by id), `Sinks` (in configuration order) and `RawRoutes`. `base` is where
 * configuration really comes from (the process environment in the app, a map in tests).
 */
export const layer = (
  plugins: ReadonlyArray<Plugin>,
  base?: ConfigProvider.ConfigProvider
): Layer.Layer<Providers | Sinks | RawRoutes, ConfigError.ConfigError, PluginEnvironment> => {
  const built = plugins.map((plugin) => Host.load(plugin, base))
  // Plugins are loaded at run time: what they provide and need is checked when they build.
  const all = (built.length === 0 ? Layer.empty : Layer.mergeAll(...(built as [Layer.Layer<any, any, any>]))) as Layer.Layer<any, ConfigError.ConfigError, PluginEnvironment>
  const registries = Layer.mergeAll(
    Layer.effect(
      Providers,
      Effect.map(
        Effect.forEach(plugins.filter((plugin) => plugin.provider !== undefined), (plugin) =>
          Effect.filterOrDieMessage(
            plugin.provider!,
            (provider) => provider.id === plugin.manifest.id,
            `plugin ${plugin.manifest.id} builds a provider with another id: a provider's id is its plugin's`
          )),
        (providers): ReadonlyMap<string, Provider> => new Map(providers.map((provider) => [provider.id, provider]))
      )
    ),
    Layer.effect(
      Sinks,
      Effect.forEach(plugins.filter((plugin) => plugin.sink !== undefined), (plugin) =>
        Effect.map(plugin.sink!.tag, (sink) => ({ sink, pacing: plugin.sink!.pacing ?? {} })))
    ),
    Layer.effect(
      RawRoutes,
      Effect.map(Effect.forEach(plugins.filter((plugin) => plugin.rawRoutes !== undefined), (plugin) => plugin.rawRoutes!), (routes) => routes.flat())
    )
  )
  return registries.pipe(Layer.provideMerge(all))
}

/** What a provider's `providerLayer` may need: commands beside the server run no inbox and no engine. */
export type ProviderEnvironment = HttpClient.HttpClient | SqlClient.SqlClient

/**
 * The configured providers alone (each plugin's `providerLayer`): no routes, no workers, no
 * sinks. What else a providerLayer provides stays in the context, for the plugin's commands.
 */
export const providersLayer = (
  plugins: ReadonlyArray<Plugin>,
  base?: ConfigProvider.ConfigProvider
): Layer.Layer<Providers, ConfigError.ConfigError, ProviderEnvironment> =>
  layer(
    plugins
      .filter((plugin) => plugin.provider !== undefined)
      .map(({ manifest, provider, providerLayer, layer }): Plugin => ({ manifest, provider: provider!, layer: providerLayer ?? layer })),
    base
  ) as Layer.Layer<Providers | Sinks | RawRoutes, ConfigError.ConfigError, ProviderEnvironment>

/** The HTTP groups the configured plugins mount. */
export const routesOf = (plugins: ReadonlyArray<Plugin>) => plugins.flatMap((plugin) => plugin.routes ?? [])
