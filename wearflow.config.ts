/**
 * What this Wearflow runs. Each entry is a plugin: a short name (a folder under providers/ or
 * sinks/), a path, or an npm package whose entry exports `plugin`. Set WEARFLOW_PLUGINS
 * (comma-separated) to replace the list without editing this file.
 */
import { defineConfig } from "@wearflow/core/registry"

export default defineConfig({
  plugins: ["garmin", "oura", "withings", "postgres", "webhooks", "s3"]
})
