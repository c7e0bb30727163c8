import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["core/**/*.test.ts", "providers/**/*.test.ts", "sinks/**/*.test.ts", "apps/**/*.test.ts", "test/**/*.test.ts"],
    environment: "node",
    globalSetup: ["test/support/global-postgres.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000
  }
})
