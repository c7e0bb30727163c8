/** The framework's promises, checked against the Postgres sink by the conformance kit. */
import { sinkConformance } from "@wearflow/core/testing"
import { Redacted } from "effect"
import pg from "pg"
import { plugin } from "./mod.ts"

sinkConformance({
  plugin,
  folder: new URL(".", import.meta.url),
  // The app's own database: nothing to configure.
  destination: async () => ({
    env: {},
    snapshot: async (databaseUrl) => {
      const client = new pg.Client({ connectionString: Redacted.value(databaseUrl) })
      await client.connect()
      try {
        const activity = await client.query(`select id, event_id, steps, calories_total from wearflow_data.activity order by id`)
        const heartrate = await client.query(`select record_id, timestamp, event_id, value from wearflow_data.heartrate order by record_id, timestamp`)
        return {
          eventIds: [...new Set([...activity.rows, ...heartrate.rows].map((row) => row.event_id as string))],
          contents: { activity: activity.rows, heartrate: heartrate.rows }
        }
      } finally {
        await client.end()
      }
    },
    close: async () => {}
  })
})
