/**
 * The plugin host: builds each plugin's layer with an HttpClient that refuses hosts outside
 * the manifest's `net`, and a ConfigProvider that refuses names outside its `env` (Deno's
 * `--allow-net=host` / `--allow-env=NAME`, enforced per plugin).
 */
import { HttpClient, HttpClientError } from "@effect/platform"
import { ConfigError, ConfigProvider, Data, Effect, Layer } from "effect"
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

/** Wraps `client` so that requests to undeclared hosts fail before any connection is made. */
export const guardHttpClient = (manifest: Manifest, client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.mapRequestEffect(client, (request) => {
    const url = URL.canParse(request.url) ? new URL(request.url) : undefined
    if (url && allowsHost(manifest.permissions, url)) return Effect.succeed(request)
    const cause = new NetPermissionDenied({ plugin: manifest.id, host: url?.host ?? "(invalid url)" })
    return Effect.fail(
      new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause, description: cause.message })
    )
  })

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
      enumerateChildren: (path) => flat.enumerateChildren(path),
      patch: flat.patch
    })
  )
}

/**
 * Builds a plugin's layer inside its sandbox. `base` is where configuration really comes
 * from (the process environment in the app, a map in tests).
 */
export const load = <ROut, E, RIn>(
  plugin: Plugin<ROut, E, RIn>,
  base: ConfigProvider.ConfigProvider = ConfigProvider.fromEnv()
) => {
  const sandbox = Layer.merge(
    Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, (client) => guardHttpClient(plugin.manifest, client))),
    Layer.setConfigProvider(restrictConfigProvider(plugin.manifest, base))
  )
  return Layer.provide(plugin.layer, sandbox)
}
