/**
 * The dashboard's script: signs in with an API key (kept in sessionStorage, sent as
 * `x-api-key`), reads the team's JSON API and renders each view. Every value from the API is
 * inserted as text (`append` of strings, `setAttribute`), never parsed as HTML. The webhooks
 * and ETL views read routes of sink plugins: a server that does not run that sink (see
 * WEARFLOW_PLUGINS) has no such route, and the view says "not available" instead of failing.
 */
export {}

const KEY = "wearflow.dashboard.apiKey"

// ---- elements -------------------------------------------------------------------------------

type Child = Node | string | number | null | undefined | false
type Attributes = Record<string, string | boolean | ((event: Event) => void)>

/** An element; strings become text nodes, attributes are set as values, `on*` as listeners. */
const h = (tag: string, attributes: Attributes = {}, ...children: ReadonlyArray<Child>): HTMLElement => {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === "function") element.addEventListener(name.slice(2), value)
    else if (value === true) element.setAttribute(name, "")
    else if (value !== false) element.setAttribute(name, value)
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    element.append(typeof child === "number" ? String(child) : child)
  }
  return element
}

const byId = <E extends HTMLElement>(id: string) => document.getElementById(id) as E

const table = (headings: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<Child>>, attributes: Attributes = {}) =>
  h("table", attributes, h("thead", {}, h("tr", {}, ...headings.map((text) => h("th", {}, text)))), h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((cell) => cell instanceof HTMLElement && cell.tagName === "TD" ? cell : h("td", {}, cell))))))

const num = (value: Child) => h("td", { class: "num" }, value)
const muted = (text: string) => h("p", { class: "muted" }, text)
const unavailable = (what: string, route: string) => h("p", { class: "unavailable", "data-unavailable": route }, `${what}: not available on this server (${route}).`)
const badge = (text: string, tone: "ok" | "warn" | "bad" | "muted") => h("span", { class: `badge ${tone}` }, text)
const id = (value: string | null | undefined) => (value === null || value === undefined ? "—" : h("span", { class: "id", title: value }, value))

/** Times as UTC, the same in every locale: 2026-12-07 09:21:04 UTC. */
const time = (value: string | null | undefined) => {
  if (value === null || value === undefined) return "—"
  const date = new Date(value)
  return Number.isNaN(date.getTime()) ? value : date.toISOString().slice(0, 19).replace("T", " ") + " UTC"
}

const seconds = (value: number) =>
  value < 120 ? `${Math.round(value)} s` : value < 7200 ? `${Math.round(value / 60)} min` : value < 172800 ? `${Math.round(value / 3600)} h` : `${Math.round(value / 86400)} d`

const tone = (status: string): "ok" | "warn" | "bad" | "muted" =>
  /^(active|success|done|delivered|written|ok|polling|scheduled|enabled|resolved)$/.test(status) ? "ok"
  : /^(failure|failed|error|disabled|failing|stalled|open|revoked)$/.test(status) ? "bad"
  : /^(retrying|in_progress|pending|sealed|waiting|starting)$/.test(status) ? "warn"
  : "muted"

// ---- the API ----------------------------------------------------------------------------------

type Reply<T> = { readonly ok: true; readonly body: T } | { readonly ok: false; readonly status: number; readonly message: string }

class SignedOut extends Error {}

let apiKey: string | null = sessionStorage.getItem(KEY)

const call = async <T>(method: string, path: string, body?: unknown): Promise<Reply<T>> => {
  if (apiKey === null) throw new SignedOut()
  const response = await fetch(path, {
    method,
    headers: { "x-api-key": apiKey, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    credentials: "omit",
    cache: "no-store",
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  if (response.status === 401) {
    signOut("The API key was refused.")
    throw new SignedOut()
  }
  const text = await response.text()
  let parsed: unknown = null
  try {
    parsed = text.length > 0 ? JSON.parse(text) : null
  } catch {
    parsed = null
  }
  if (response.ok) return { ok: true, body: parsed as T }
  const message = typeof parsed === "object" && parsed !== null && typeof (parsed as { message?: unknown }).message === "string"
    ? (parsed as { message: string }).message
    : `HTTP ${response.status}`
  return { ok: false, status: response.status, message }
}

/** A route this server does not serve (a sink plugin it does not run): the router's 404/405, not an endpoint's own NotFound. */
const isMissing = (reply: Reply<unknown>) => !reply.ok && (reply.status === 405 || (reply.status === 404 && reply.message === "HTTP 404"))

const failure = (what: string, reply: Reply<unknown>) => h("p", { class: "error" }, `${what}: ${reply.ok ? "" : reply.message}`)

/** Runs `work` over `items`, at most `limit` at a time. */
const mapLimit = async <A, B>(items: ReadonlyArray<A>, limit: number, work: (item: A) => Promise<B>): Promise<Array<B>> => {
  const results: Array<B> = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

// ---- the API's shapes -------------------------------------------------------------------------

interface ConnectedSource { readonly provider: string; readonly provider_user_id: string; readonly status: string; readonly created_on: string }
interface User { readonly user_id: string; readonly client_user_id: string; readonly created_on: string; readonly connected_sources: ReadonlyArray<ConnectedSource> }
interface UserPage { readonly users: ReadonlyArray<User>; readonly next_cursor: string | null }
interface Page<T> { readonly data: ReadonlyArray<T>; readonly next_cursor: string | null }
interface ResourceStats {
  readonly last_attempt: { readonly timestamp: string; readonly status: "success" | "failure" } | null
  readonly oldest_data: string | null; readonly newest_data: string | null; readonly sent_count: number
}
/** GET /v2/introspect/resources: provider slug → resource → its statistics, per user. */
interface UserResources { readonly user_id: string; readonly client_user_id: string; readonly provider: Record<string, Record<string, ResourceStats>> }
interface Webhook { readonly id: string; readonly url: string; readonly description: string; readonly disabled: boolean; readonly disabled_reason: string | null; readonly filter_types: ReadonlyArray<string> }
interface Attempt { readonly attempt: number; readonly trigger: string; readonly attempted_at: string; readonly status: string; readonly response_status_code: number | null; readonly latency_ms: number; readonly error: string | null }
interface Message { readonly id: string; readonly event_type: string; readonly user_id: string | null; readonly status: string; readonly created_at: string; readonly delivered_at: string | null; readonly attempts: ReadonlyArray<Attempt> }
interface HistoricalPull { readonly status: string; readonly days_with_data: number; readonly windows: { readonly total: number; readonly done: number }; readonly error_details: string | null }
interface Backfill {
  readonly backfill_id: string; readonly user_id: string; readonly client_user_id: string; readonly provider: { readonly slug: string }
  readonly status: string; readonly origin: string; readonly created_at: string; readonly ended_at: string | null
  readonly historical_pulls: Record<string, HistoricalPull>
}
interface Sync { readonly provider: string; readonly state: string; readonly rounds: number; readonly last_poll_at: string | null; readonly next_poll_at: string | null; readonly last_error: string | null }
interface Alert {
  readonly id: string; readonly kind: string; readonly status: "open" | "cleared"
  readonly user_id: string | null; readonly provider: string | null; readonly resource: string | null
  readonly endpoint_id: string | null; readonly message_id: string | null; readonly detail: string | null
  readonly since: string; readonly last_data_at: string | null; readonly opened_at: string; readonly cleared_at: string | null
}
interface IngestStatus { readonly pending_jobs: number; readonly oldest_job_age_seconds: number; readonly seconds_since_completion: number | null }
interface EtlBatch {
  readonly id: string; readonly resource: string; readonly format: string; readonly status: string; readonly sealed_at: string
  readonly attempts: number; readonly failing: boolean; readonly events: number; readonly records: number
}
interface EtlStaged { readonly resource: string; readonly events: number; readonly records: number; readonly oldest_staged_at: string }

/**
 * A list read a page at a time (`limit` each), following `next_cursor` until `bound` items are
 * read or the list ends: the items, and whether the list goes on.
 */
const collect = async <T, B extends { readonly next_cursor: string | null }>(
  path: string, items: (body: B) => ReadonlyArray<T>, limit: number, bound: number
): Promise<Reply<{ readonly items: ReadonlyArray<T>; readonly more: boolean }>> => {
  const read: Array<T> = []
  let cursor: string | null = null
  do {
    const query: string = `limit=${Math.min(limit, bound - read.length)}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`
    const page: Reply<B> = await call<B>("GET", `${path}${path.includes("?") ? "&" : "?"}${query}`)
    if (!page.ok) return page
    read.push(...items(page.body))
    cursor = page.body.next_cursor
  } while (cursor !== null && read.length < bound)
  return { ok: true, body: { items: read, more: cursor !== null } }
}

// ---- views ------------------------------------------------------------------------------------

/** How many users the connections view reads; "Show more" raises it. */
const USERS_STEP = 200
let usersBound = USERS_STEP
/** How many open alerts the alerts view reads; "Show more" raises it. */
const ALERTS_STEP = 100
let alertsBound = ALERTS_STEP

const more = (text: string, raise: () => void) =>
  h("p", { class: "actions" }, h("span", { class: "muted" }, text), h("button", { type: "button", class: "more", onclick: () => { raise(); void show() } }, "Show more"))

const stats = (resources: Record<string, ResourceStats> | undefined) => {
  const entries = Object.entries(resources ?? {})
  if (entries.length === 0) return h("span", { class: "muted" }, "no data yet")
  return h("ul", {}, ...entries.map(([resource, s]) => h("li", {},
    `${resource}: last data ${time(s.newest_data)} (${s.sent_count} sent)`,
    s.last_attempt?.status === "failure" ? h("span", { class: "error" }, ` · last attempt failed ${time(s.last_attempt.timestamp)}`) : null)))
}

const connectionsView = async (): Promise<Array<Child>> => {
  const [users, resources, alerts] = await Promise.all([
    collect<User, UserPage>("/v2/user", (b) => b.users, 100, usersBound),
    collect<UserResources, Page<UserResources>>("/v2/introspect/resources", (b) => b.data, 100, usersBound),
    collect<Alert, Page<Alert>>("/v2/alerts?status=open", (b) => b.data, 100, 500)
  ])
  if (!users.ok) return [h("h2", {}, "Connections"), failure("Users", users)]
  const byUser = new Map(resources.ok ? resources.body.items.map((r) => [r.user_id, r.provider]) : [])
  if (resources.ok && resources.body.more) {
    // The introspection pages users by id, the user list by creation: the connected users shown
    // that its pages did not reach are read one by one.
    const unread = users.body.items.filter((u) => u.connected_sources.length > 0 && !byUser.has(u.user_id))
    await mapLimit(unread, 6, async (user) => {
      const one = await call<Page<UserResources>>("GET", `/v2/introspect/resources?user_id=${encodeURIComponent(user.user_id)}`)
      if (one.ok) for (const r of one.body.data) byUser.set(r.user_id, r.provider)
    })
  }
  const gaps = alerts.ok ? alerts.body.items : []
  const rows = users.body.items.flatMap((user): Array<Array<Child>> =>
    user.connected_sources.length === 0
      ? [[user.client_user_id, id(user.user_id), "—", badge("not connected", "muted"), "—", "—", "—"]]
      : user.connected_sources.map((source) => {
        const open = gaps.filter((a) => a.user_id === user.user_id && (a.provider === null || a.provider === source.provider))
        return [
          user.client_user_id,
          id(user.user_id),
          source.provider,
          badge(source.status, tone(source.status)),
          time(source.created_on),
          resources.ok ? stats(byUser.get(user.user_id)?.[source.provider]) : "—",
          open.length === 0 ? h("span", { class: "ok" }, "none") : h("ul", {}, ...open.map((a) => h("li", { class: "bad" }, `${a.kind}${a.resource === null ? "" : ` (${a.resource})`} since ${time(a.since)}`)))
        ]
      })
  )
  return [
    h("h2", {}, "Connections"),
    rows.length === 0
      ? muted("No users yet.")
      : table(["Client user id", "User id", "Provider", "Status", "Connected", "Per-resource last data", "Gaps"], rows, { id: "connections" }),
    users.body.more ? more(`Showing the first ${users.body.items.length} users.`, () => (usersBound += USERS_STEP)) : null,
    resources.ok ? null : failure("Per-resource data", resources),
    alerts.ok ? null : failure("Gaps", alerts)
  ]
}

const progress = (done: number, total: number) =>
  h("span", {}, h("progress", { value: String(done), max: String(Math.max(total, 1)) }), ` ${done}/${total} windows`)

const syncsView = async (): Promise<Array<Child>> => {
  const pulls = await call<Page<Backfill>>("GET", "/v2/introspect/historical_pull")
  const backfills = pulls.ok ? pulls.body.data : []
  // Each user's polls are a request of their own: those of the first 50 connected users.
  const users = await collect<User, UserPage>("/v2/user", (b) => b.users, 100, 500)
  const connected = users.ok ? users.body.items.filter((u) => u.connected_sources.length > 0) : []
  const polled = await mapLimit(connected.slice(0, 50), 6, async (user) => {
    const reply = await call<{ readonly data: ReadonlyArray<Sync> }>("GET", `/v2/user/${encodeURIComponent(user.user_id)}/sync`)
    return reply.ok ? reply.body.data.map((sync) => ({ user, sync })) : []
  })
  const syncs = polled.flat()
  return [
    h("h2", {}, "Backfills"),
    !pulls.ok ? failure("Backfills", pulls)
    : backfills.length === 0 ? muted("No backfills.")
    : table(["User", "Provider", "Status", "Origin", "Started", "Ended", "Progress per resource"], backfills.map((b) => [
      b.client_user_id,
      b.provider.slug,
      badge(b.status, tone(b.status)),
      b.origin,
      time(b.created_at),
      time(b.ended_at),
      h("ul", {}, ...Object.entries(b.historical_pulls).map(([resource, pull]) =>
        h("li", {}, `${resource} `, badge(pull.status, tone(pull.status)), " ", progress(pull.windows.done, pull.windows.total), ` · ${pull.days_with_data} days with data`, pull.error_details === null ? null : h("span", { class: "error" }, ` · ${pull.error_details}`))))
    ]), { id: "backfills" }),
    h("h2", {}, "Syncs (polled connections)"),
    syncs.length === 0
      ? muted("No polled connections.")
      : table(["User", "Provider", "State", "Rounds", "Last poll", "Next poll", "Last error"], syncs.map(({ user, sync }) => [
        user.client_user_id, sync.provider, badge(sync.state, tone(sync.state)), num(sync.rounds), time(sync.last_poll_at), time(sync.next_poll_at),
        sync.last_error === null ? "—" : h("span", { class: "error" }, sync.last_error)
      ]), { id: "syncs" })
  ]
}

/** Answers a button's action in place: disabled while it runs, then the outcome as its label. */
const action = (label: string, run: () => Promise<Reply<unknown>>, done: (reply: Reply<unknown>) => string, attributes: Attributes = {}) => {
  const button = h("button", { type: "button", ...attributes }, label) as HTMLButtonElement
  button.addEventListener("click", async () => {
    button.disabled = true
    try {
      const reply = await run()
      button.textContent = reply.ok ? done(reply) : `Failed: ${reply.message}`
      button.dataset["outcome"] = reply.ok ? "ok" : "failed"
    } catch (error) {
      if (!(error instanceof SignedOut)) button.textContent = "Failed"
    }
  })
  return button
}

const webhookCard = async (hook: Webhook): Promise<HTMLElement> => {
  const messages = await call<Page<Message>>("GET", `/v2/webhooks/${encodeURIComponent(hook.id)}/messages?limit=250`)
  const list = messages.ok ? messages.body.data : []
  const counts = { delivered: 0, failed: 0, retrying: 0, pending: 0 } as Record<string, number>
  for (const m of list) counts[m.status] = (counts[m.status] ?? 0) + 1
  const finished = (counts["delivered"] ?? 0) + (counts["failed"] ?? 0)
  const rate = finished === 0 ? "—" : `${Math.round((100 * (counts["delivered"] ?? 0)) / finished)}%`
  const failing = list.filter((m) => m.status === "failed" || m.status === "retrying")
  const since = h("input", { type: "datetime-local", name: "since", value: new Date(Date.now() - 86_400_000).toISOString().slice(0, 16) }) as HTMLInputElement
  return h("div", { class: "card webhook", "data-endpoint": hook.id },
    h("h3", {}, hook.url, " ", hook.disabled ? badge("disabled", "bad") : badge("enabled", "ok")),
    hook.description.length > 0 ? h("p", { class: "muted" }, hook.description) : null,
    hook.disabled && hook.disabled_reason !== null ? h("p", { class: "error" }, hook.disabled_reason) : null,
    h("div", { class: "figures" },
      h("div", { class: "figure" }, h("b", { class: "rate" }, rate), "delivered (of the last finished messages)"),
      ...(["delivered", "failed", "retrying", "pending"] as const).map((status) => h("div", { class: "figure" }, h("b", {}, counts[status] ?? 0), status))),
    !messages.ok ? failure("Messages", messages) : null,
    h("div", { class: "actions" },
      h("label", {}, "Send again every failed message since (UTC) ", since),
      action("Recover", () => call("POST", `/v2/webhooks/${encodeURIComponent(hook.id)}/recover`, { since: new Date(since.value + ":00Z").toISOString() }),
        (reply) => `${(reply as { body: { recovered: number } }).body.recovered} queued again`, { class: "recover" })),
    failing.length === 0
      ? muted("No failing messages.")
      : table(["Message", "Event", "Status", "Created", "Attempts", "Last answer", ""], failing.map((m) => {
        const last = m.attempts[m.attempts.length - 1]
        return [
          id(m.id), m.event_type, badge(m.status, tone(m.status)), time(m.created_at), num(m.attempts.length),
          last === undefined ? "—" : last.response_status_code !== null ? `HTTP ${last.response_status_code}` : (last.error ?? last.status),
          action("Resend", () => call("POST", `/v2/webhooks/messages/${encodeURIComponent(m.id)}/resend`), () => "Queued again", { class: "resend", "data-message": m.id })
        ]
      }), { class: "failing" })
  )
}

const webhooksView = async (): Promise<Array<Child>> => {
  const hooks = await collect<Webhook, Page<Webhook>>("/v2/webhooks", (b) => b.data, 100, 100)
  if (!hooks.ok) return [h("h2", {}, "Webhook endpoints"), isMissing(hooks) ? unavailable("Webhooks", "/v2/webhooks") : failure("Webhook endpoints", hooks)]
  const endpoints = hooks.body.items
  return [
    h("h2", {}, "Webhook endpoints"),
    ...(endpoints.length === 0 ? [muted("No webhook endpoints.")] : await mapLimit(endpoints, 4, webhookCard)),
    hooks.body.more ? muted(`Showing the first ${endpoints.length} endpoints.`) : null
  ]
}

const etlView = async (): Promise<Array<Child>> => {
  const reply = await call<{ readonly enabled?: boolean; readonly batches: ReadonlyArray<EtlBatch>; readonly staged: ReadonlyArray<EtlStaged> }>("GET", "/v2/etl/batches")
  if (!reply.ok) return [h("h2", {}, "ETL batches"), isMissing(reply) ? unavailable("ETL batches", "/v2/etl/batches") : failure("ETL batches", reply)]
  const { batches, staged } = reply.body
  return [
    reply.body.enabled === false ? h("p", { class: "note" }, "The ETL sink is off on this server (WEARFLOW_ETL_ENABLED=false).") : null,
    h("h2", {}, "ETL: your events not yet in a batch"),
    staged.length === 0 ? muted("None: every staged event of this team is in a batch.")
    : table(["Resource", "Events", "Records", "Oldest staged"], staged.map((s) => [s.resource, num(s.events), num(s.records), time(s.oldest_staged_at)]), { id: "etl-staged" }),
    h("h2", {}, "ETL batches holding your events"),
    batches.length === 0 ? muted("None: every batch holding this team's events is written.")
    : table(["Batch", "Resource", "Format", "Status", "Sealed", "Attempts", "Your events", "Your records"], batches.map((b) => [
      id(b.id), b.resource, b.format, badge(b.failing ? `${b.status}, failing` : b.status, b.failing ? "bad" : tone(b.status)), time(b.sealed_at), num(b.attempts), num(b.events), num(b.records)
    ]), { id: "etl-batches" })
  ]
}

const ingestView = async (): Promise<Array<Child>> => {
  const [reply, health] = await Promise.all([
    call<IngestStatus>("GET", "/v2/introspect/ingest"),
    fetch("/health", { cache: "no-store", credentials: "omit" }).then((r) => r.json() as Promise<{ status: string; database: string; sinks: Record<string, string> }>, () => null)
  ])
  const figures = !reply.ok
    ? failure("Ingest backlog", reply)
    : h("div", { class: "figures", id: "ingest" },
      h("div", { class: "figure" }, h("b", {}, reply.body.pending_jobs), "notifications waiting"),
      h("div", { class: "figure" }, h("b", {}, seconds(reply.body.oldest_job_age_seconds)), "oldest waiting"),
      h("div", { class: "figure" }, h("b", {}, reply.body.seconds_since_completion === null ? "—" : `${seconds(reply.body.seconds_since_completion)} ago`), "last processed"))
  return [
    h("h2", {}, "Ingest backlog"),
    figures,
    h("h2", {}, "Health"),
    health === null ? muted("No answer from /health.")
    : table(["Check", "Status"], [
      ["overall", badge(health.status, tone(health.status))],
      ["database", badge(health.database, tone(health.database))],
      ...Object.entries(health.sinks ?? {}).map(([sink, status]) => [`sink ${sink}`, badge(status, tone(status))])
    ], { id: "health" })
  ]
}

/** What an alert is about: a user's connection or resource, a provider, an endpoint or one of its messages. */
const subject = (a: Alert) =>
  h("ul", { class: "subject" },
    a.provider === null ? null : h("li", {}, a.provider, a.resource === null ? "" : ` · ${a.resource}`),
    a.user_id === null ? null : h("li", {}, "user ", id(a.user_id)),
    a.endpoint_id === null ? null : h("li", {}, "endpoint ", id(a.endpoint_id)),
    a.message_id === null ? null : h("li", {}, "message ", id(a.message_id)))

const alertsView = async (): Promise<Array<Child>> => {
  const [open, cleared] = await Promise.all([
    collect<Alert, Page<Alert>>("/v2/alerts?status=open", (b) => b.data, 100, alertsBound),
    call<Page<Alert>>("GET", "/v2/alerts?status=cleared&limit=20")
  ])
  if (!open.ok) return [h("h2", {}, "Open alerts"), failure("Alerts", open)]
  return [
    h("h2", {}, "Open alerts"),
    open.body.items.length === 0 ? muted("No open alerts.")
    : table(["Kind", "About", "Detail", "Since", "Opened"], open.body.items.map((a) => [
      badge(a.kind, "bad"), subject(a), a.detail ?? "—", time(a.since), time(a.opened_at)
    ]), { id: "alerts" }),
    open.body.more ? more(`Showing the newest ${open.body.items.length} open alerts.`, () => (alertsBound += ALERTS_STEP)) : null,
    h("h2", {}, "Recently cleared"),
    !cleared.ok ? failure("Cleared alerts", cleared)
    : cleared.body.data.length === 0 ? muted("None.")
    : table(["Kind", "About", "Detail", "Since", "Cleared"], cleared.body.data.map((a) => [
      badge(a.kind, "muted"), subject(a), a.detail ?? "—", time(a.since), time(a.cleared_at)
    ]), { id: "alerts-cleared" })
  ]
}

const views: Record<string, () => Promise<Array<Child>>> = {
  connections: connectionsView,
  syncs: syncsView,
  webhooks: webhooksView,
  etl: etlView,
  ingest: ingestView,
  alerts: alertsView
}

// ---- the page ---------------------------------------------------------------------------------

const viewName = () => {
  const name = location.hash.slice(1)
  return name in views ? name : "connections"
}

let shown = 0

/** Renders the current view; a slower earlier render never overwrites a later one. */
const show = async () => {
  const target = byId("view")
  if (apiKey === null) return
  const name = viewName()
  const run = ++shown
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page")
    else link.removeAttribute("aria-current")
  }
  target.dataset["loaded"] = ""
  target.replaceChildren(muted("Loading…"))
  let nodes: Array<Child>
  try {
    nodes = await views[name]!()
  } catch (error) {
    if (error instanceof SignedOut) return
    nodes = [h("p", { class: "error" }, `Could not load this view: ${error instanceof Error ? error.message : "unknown error"}`)]
  }
  if (run !== shown) return
  target.replaceChildren(...nodes.flatMap((node) => (node === null || node === undefined || node === false ? [] : [typeof node === "number" ? String(node) : node])))
  target.dataset["loaded"] = name
}

const signedIn = (signed: boolean) => {
  byId("sign-in").hidden = signed
  byId("views").hidden = !signed
  byId("refresh").hidden = !signed
  byId("sign-out").hidden = !signed
  if (!signed) byId("view").replaceChildren()
}

const signOut = (reason?: string) => {
  apiKey = null
  sessionStorage.removeItem(KEY)
  signedIn(false)
  byId<HTMLInputElement>("api-key").value = ""
  byId("sign-in-error").textContent = reason ?? ""
}

const start = () => {
  const form = byId<HTMLFormElement>("sign-in")
  form.addEventListener("submit", async (event) => {
    event.preventDefault()
    const input = byId<HTMLInputElement>("api-key")
    apiKey = input.value.trim()
    try {
      const probe = await call("GET", "/v2/user?limit=1")
      if (!probe.ok) throw new Error(probe.message)
    } catch (error) {
      if (!(error instanceof SignedOut)) signOut(`Could not sign in: ${error instanceof Error ? error.message : "no answer"}`)
      return
    }
    sessionStorage.setItem(KEY, apiKey)
    input.value = ""
    byId("sign-in-error").textContent = ""
    signedIn(true)
    void show()
  })
  byId("sign-out").addEventListener("click", () => signOut())
  byId("refresh").addEventListener("click", () => void show())
  addEventListener("hashchange", () => void show())
  signedIn(apiKey !== null)
  void show()
}

start()
