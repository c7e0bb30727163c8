/**
 * Plugins are Deno-style: one folder, one `mod.ts` exporting a manifest and a layer. The
 * manifest declares what the plugin may reach (hosts) and read (environment variables);
 * the host (host.ts) enforces both.
 */
import type { Config, Layer } from "effect"

export interface Permissions {
  /**
   * Hosts the plugin may call: `api.example.com`, `127.0.0.1:9000`, or `*.example.com`. A
   * Config, read through the plugin's own restricted environment, so the hosts can follow
   * the base URLs an operator configures (e.g. a staging or test server).
   */
  readonly net: Config.Config<ReadonlyArray<string>>
  /** Environment variable names it may read; a trailing `*` allows a prefix (`GARMIN_*`). */
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

/** What a plugin's `mod.ts` exports. */
export interface Plugin<ROut, E = never, RIn = never, Conf = unknown> {
  readonly manifest: Manifest<Conf>
  readonly layer: Layer.Layer<ROut, E, RIn>
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
