/**
 * Named (prepared) statements for the statements this process runs again and again.
 *
 * @effect/sql-pg sends every statement unnamed, so Postgres parses and plans it at each run:
 * measured at 200 notifications/s, planning took as long as executing (3.3 s of each in 10 s),
 * and the short statements of the ingest path (data arrivals, recipients) spent 10–20× their
 * execution planning. A text seen `after` times gets a name: each connection then parses it
 * once, and Postgres may keep a generic plan for it (plan_cache_mode decides, per statement).
 *
 * Bounded: at most `most` names per process (so per connection); texts that vary (values
 * written into the text) stay unnamed, and their counts are forgotten when too many pile up.
 * Only statements with parameters are named: a text without any may hold several statements,
 * which only the simple protocol runs.
 */
import pg from "pg"

export interface PreparedStatementsOptions {
  /** Runs of a text before it gets a name. */
  readonly after: number
  /** Names at most, per process. */
  readonly most: number
}

export const defaults: PreparedStatementsOptions = { after: 3, most: 500 }

/** Texts counted at most before the counts are forgotten (names are kept). */
const countedAtMost = 5_000

/** Gives a text its name once it ran often enough; the same text gets the same name on every connection. */
export const namer = (options: PreparedStatementsOptions = defaults) => {
  const names = new Map<string, string>()
  const counts = new Map<string, number>()
  return (text: string): string | undefined => {
    const name = names.get(text)
    if (name !== undefined || names.size >= options.most) return name
    const count = (counts.get(text) ?? 0) + 1
    if (count < options.after) {
      if (counts.size >= countedAtMost) counts.clear()
      counts.set(text, count)
      return undefined
    }
    counts.delete(text)
    const named = `wearflow_${names.size + 1}`
    names.set(text, named)
    return named
  }
}

/**
 * A prepared statement whose result columns changed under it (a table altered by another
 * process's migration): Postgres refuses it on this connection until it is prepared again.
 */
const planChanged = (error: unknown) =>
  (error as { code?: unknown } | null)?.code === "0A000" && /cached plan must not change result type/.test(String((error as Error).message))

type Callback = (error: Error | null, result: unknown) => void

/** A `pg.Client` that names the statements `nameOf` names; for `pg.Pool`'s `Client` option. */
export const clientClass = (nameOf: (text: string) => string | undefined): typeof pg.Client =>
  class PreparingClient extends pg.Client {
    // @effect/sql-pg calls query(text, values, callback); every other form passes through.
    override query(config: any, values?: any, callback?: any): any {
      const name = typeof config === "string" && Array.isArray(values) && values.length > 0 && typeof callback === "function"
        ? nameOf(config)
        : undefined
      if (name === undefined) return super.query(config, values, callback)
      return super.query({ name, text: config, values }, (error: Error | null, result: unknown) => {
        // The connection is closed, so the pool replaces it and the caller's next try prepares anew.
        if (error !== null && planChanged(error)) this.end().catch(() => undefined)
        ;(callback as Callback)(error, result)
      })
    }
  }
