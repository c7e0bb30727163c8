/**
 * The anchor for every provider-facing figure: a bare Bun handler doing only what a durable
 * webhook receiver cannot skip — check the header, parse the JSON, one INSERT, answer — on the
 * same Postgres as the server it is compared with.
 */
import pg from "pg"

export const startBareReceiver = async (databaseUrl: string, clientId: string) => {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 })
  // Postgres stops at the end of the run; idle connections it terminates are expected then.
  pool.on("error", () => {})
  await pool.query("create table if not exists baseline_inbox (id bigint generated always as identity primary key, body text not null, received_at timestamptz not null default now())")
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      if (request.headers.get("garmin-client-id") !== clientId) return new Response(null, { status: 401 })
      const text = await request.text()
      JSON.parse(text)
      const result = await pool.query("insert into baseline_inbox (body) values ($1) returning id", [text])
      return Response.json({ inbox_id: Number(result.rows[0].id) })
    }
  })
  return {
    url: `http://127.0.0.1:${server.port}/`,
    stop: async () => {
      server.stop(true)
      await pool.end()
    }
  }
}
