/**
 * The plugin host: builds each plugin's layer with an HttpClient that refuses hosts outside
 * the manifest's `net`, and a ConfigProvider that refuses names outside its `env` (Deno's
 * `--allow-net=host` / `--allow-env=NAME`, enforced per plugin).
 */
import { HttpClient, HttpClientError, type HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { ConfigError, ConfigProvider, Data, Effect, HashSet, Layer } from "effect"
import { allowsEnv, allowsHost, type Manifest, type Plugin } from "./plugin.ts"

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
 * never leaks to sibling layers.
 */
export const load = <ROut, E, RIn>(
  plugin: Plugin<ROut, E, RIn>,
  base: ConfigProvider.ConfigProvider = ConfigProvider.fromEnv()
) => {
  const restricted = restrictConfigProvider(plugin.manifest, base)
  const sandboxed = Layer.locallyEffect(plugin.layer, (build) => Effect.withConfigProvider(build, restricted))
  const guardedClient = Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function* () {
      const hosts = yield* Effect.withConfigProvider(plugin.manifest.permissions.net, restricted)
      const client = yield* HttpClient.HttpClient
      return guardHttpClient(plugin.manifest.id, hosts, client)
    })
  )
  return Layer.provide(sandboxed, guardedClient)
}
