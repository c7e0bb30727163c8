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
 *
 * A connection prepares a statement again as its tables grow (`replanning`): a prepared
 * statement keeps its plan until an ANALYZE, and a plan made while a table was nearly empty
 * scans it whole. Measured at 50 notifications/s: within a minute the inbox look-ups of the
 * queue's claim and of the outcomes' update were sequential scans of 2,000 rows, 2–4 ms each,
 * where an index scan takes 0.1 ms. A table grows about as a statement on it runs, so a plan
 * made at a connection's nth run is made anew at its 2nth (and at least once a `maxAgeMs`):
 * a plan is never made on a table less than half its size, at a cost of log2(runs) plannings.
 */
import pg from "pg"

export interface PreparedStatementsOptions {
  /** Runs of a text before it gets a name. */
  readonly after: number
  /** Names at most, per process. */
  readonly most: number
}

export const defaults: PreparedStatementsOptions = { after: 3, most: 500 }

/** When a connection prepares a statement again; see the module's comment. */
export interface Replanning {
  /** Runs on a connection before its first re-preparation; then at each doubling of its runs. */
  readonly firstAfter: number
  /** A plan is made anew after this long, however few its runs. */
  readonly maxAgeMs: number
}

export const replanningDefaults: Replanning = { firstAfter: 16, maxAgeMs: 60_000 }

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

/** A statement as one connection has it prepared: under which name, since which run and when. */
interface Plan {
  generation: number
  runs: number
  preparedAtRuns: number
  preparedAt: number
  /** Whether the server holds it (its first run succeeded), so that it may be deallocated. */
  held: boolean
}

/** The name of a text's `generation`th preparation (the first keeps the namer's name). */
const nameAt = (name: string, generation: number) => (generation === 0 ? name : `${name}_${generation}`)

/** A `pg.Client` that names the statements `nameOf` names; for `pg.Pool`'s `Client` option. */
export const clientClass = (nameOf: (text: string) => string | undefined, replanning: Replanning = replanningDefaults): typeof pg.Client =>
  class PreparingClient extends pg.Client {
    /** This connection's prepared statements, by the namer's name. */
    private readonly plans = new Map<string, Plan>()

    /** The name to run `named` under now: the same, or a new one when its plan is due to be made anew. */
    private nameNow(named: string): { readonly name: string; readonly plan: Plan } {
      const now = Date.now()
      let plan = this.plans.get(named)
      if (plan === undefined) {
        plan = { generation: 0, runs: 0, preparedAtRuns: 0, preparedAt: now, held: false }
        this.plans.set(named, plan)
      }
      plan.runs++
      const due = plan.runs >= Math.max(replanning.firstAfter, 2 * plan.preparedAtRuns) || now - plan.preparedAt >= replanning.maxAgeMs
      if (due && plan.held) {
        // Queued ahead of the run that prepares it anew; its failure (an aborted transaction) leaves one stale statement behind, no more.
        super.query(`DEALLOCATE ${nameAt(named, plan.generation)}`, () => undefined)
        plan.generation++
        plan.preparedAtRuns = plan.runs
        plan.preparedAt = now
        plan.held = false
      }
      return { name: nameAt(named, plan.generation), plan }
    }

    // @effect/sql-pg calls query(text, values, callback); every other form passes through.
    override query(config: any, values?: any, callback?: any): any {
      const named = typeof config === "string" && Array.isArray(values) && values.length > 0 && typeof callback === "function"
        ? nameOf(config)
        : undefined
      if (named === undefined) return super.query(config, values, callback)
      const { name, plan } = this.nameNow(named)
      return super.query({ name, text: config, values }, (error: Error | null, result: unknown) => {
        if (error === null) plan.held = true
        // The connection is closed, so the pool replaces it and the caller's next try prepares anew.
        else if (planChanged(error)) this.end().catch(() => undefined)
        ;(callback as Callback)(error, result)
      })
    }
  }
