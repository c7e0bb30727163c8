/**
 * The plugin host: builds each plugin's layer with an HttpClient that refuses hosts outside
 * the manifest's `net`, and a ConfigProvider that refuses names outside its `env` (Deno's
 * `--allow-net=host` / `--allow-env=NAME`, enforced per plugin). Only a plugin that declares
 * `internet` is given the public-internet guard (`PublicInternet`).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Cause, ConfigError, ConfigProvider, Context, Data, Effect, HashSet, Layer } from "effect"
import { allowsEnv, allowsHost, type Manifest, type Plugin } from "./plugin.ts"
import * as PublicInternet from "./public-internet.ts"

/** A plugin tried to reach a host its manifest does not declare. */
export class NetPermissionDenied extends Data.TaggedError("NetPermissionDenied")<{
  readonly plugin: string
  readonly host: string
}> {
  override get message() {
    return `plugin ${this.plugin} may not connect to ${this.host}: not in its declared net permissions`
  }
}

/**
 * Wraps `client` so that requests to undeclared hosts fail before any connection is made.
 * The check sits where requests are executed, after every `mapRequest` a plugin adds, so it
 * sees the final URL (a relative URL made absolute, or one rewritten later, is checked too).
 */
export const guardHttpClient = (plugin: string, hosts: ReadonlyArray<string>, client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.makeWith(
    (prepared: Effect.Effect<HttpClientRequest.HttpClientRequest>) =>
      Effect.flatMap(prepared, (request): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> => {
        const url = URL.canParse(request.url) ? new URL(request.url) : undefined
        if (url && allowsHost(hosts, url)) return client.execute(request)
        const cause = new NetPermissionDenied({ plugin, host: url?.host ?? "(invalid url)" })
        return Effect.fail(
          new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause, description: cause.message })
        )
      }),
    Effect.succeed
  )

/** A plugin needs the public internet but its manifest does not declare `internet`. */
export class InternetPermissionDenied extends Data.TaggedError("InternetPermissionDenied")<{ readonly plugin: string }> {
  override get message() {
    return `plugin ${this.plugin} may not reach the public internet: its manifest does not declare the internet permission`
  }
}

// What Effect dies with when a layer asks for a service its context lacks.
const lacksPublicInternet = (defect: unknown) =>
  defect instanceof Error && defect.message.startsWith(`Service not found: ${PublicInternet.PublicInternet.key}`)

/**
 * Builds a plugin without the `internet` permission with `PublicInternet` taken out of its
 * context, whoever provides it: asking for it fails the build, naming the plugin. A defect,
 * like any missing service: the plugin's code and its manifest disagree.
 */
const withoutInternet = (plugin: string) => <A, E, R>(build: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(build, (context: Context.Context<R>) => Context.omit(PublicInternet.PublicInternet)(context) as Context.Context<R>).pipe(
    Effect.catchAllCause((cause): Effect.Effect<never, E> =>
      [...Cause.defects(cause)].some(lacksPublicInternet) ? Effect.die(new InternetPermissionDenied({ plugin })) : Effect.failCause(cause)
    )
  )

const envName = (path: ReadonlyArray<string>) => path.join("_")

/** A ConfigProvider that answers only the plugin's declared names, failing others with `Unsupported`. */
export const restrictConfigProvider = (manifest: Manifest, base: ConfigProvider.ConfigProvider): ConfigProvider.ConfigProvider => {
  const flat = base.flattened
  return ConfigProvider.fromFlat(
    ConfigProvider.makeFlat({
      load: (path, primitive, split) =>
        allowsEnv(manifest.permissions, envName(path))
          ? flat.load(path, primitive, split)
          : Effect.fail(
              ConfigError.Unsupported(
                [...path],
                `plugin ${manifest.id} may not read ${envName(path)}: not in its declared env permissions`
              )
            ),
      enumerateChildren: (path) =>
        flat.enumerateChildren(path).pipe(
          Effect.map((names) => HashSet.filter(names, (name) => allowsEnv(manifest.permissions, envName([...path, name]))))
        ),
      patch: flat.patch
    })
  )
}

/**
 * Builds a plugin's layer inside its sandbox. `base` is where configuration really comes
 * from (the process environment in the app, a map in tests). The restricted ConfigProvider
 * applies to the layer's construction only — where plugins read their configuration — and
 * never leaks to sibling layers. `PublicInternet` is granted with `internet: true` only.
 */
export const load = <ROut, E, RIn>(
  plugin: Plugin<ROut, E, RIn>,
  base: ConfigProvider.ConfigProvider = ConfigProvider.fromEnv()
) => {
  const restricted = restrictConfigProvider(plugin.manifest, base)
  const internet = plugin.manifest.permissions.internet === true
  const sandboxed = Layer.locallyEffect(
    plugin.layer,
    // (locallyEffect's types list the build's requirements first.)
    (build): Effect.Effect<RIn, E, Context.Context<ROut>> => {
      const configured = Effect.withConfigProvider(build, restricted)
      return internet ? configured : withoutInternet(plugin.manifest.id)(configured)
    }
  )
  const guardedClient = Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function* () {
      const hosts = yield* Effect.withConfigProvider(plugin.manifest.permissions.net, restricted)
      const client = yield* HttpClient.HttpClient
      return guardHttpClient(plugin.manifest.id, hosts, client)
    })
  )
  return Layer.provide(sandboxed, Layer.merge(guardedClient, PublicInternet.layer))
}
