/**
 * Requests and background work in separate processes: a server with WEARFLOW_WORKER_PROCESSES=1
 * receives, and its worker process ingests and delivers; the server restarts a worker that
 * dies and takes it down when it dies itself. A receiver alone stores what it is sent; a
 * worker started beside it on the same database processes it.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { childrenOf, eventually, type RunningServer } from "./support/server.ts"
import { type GarminStack, startGarminStack } from "./support/stack.ts"
import { garminWebhook, inboxOutcomes, wearflowApi } from "./support/wearflow-client.ts"

const CONSUMER = { consumerKey: "worker-processes-key", consumerSecret: "worker-processes-secret" }
const API_KEY = "worker-processes-api-key"
const daily = { userId: "", summaryId: "", calendarDate: "2026-11-01", startTimeInSeconds: 1_793_491_200, durationInSeconds: 86_400, steps: 4321 }

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
const workerOf = (server: RunningServer) => eventually(async () => childrenOf(server.process.pid!)[0])

describe("a server and its worker process", () => {
  let stack: GarminStack
  const push = garminWebhook(() => stack.server.baseUrl, CONSUMER.consumerKey, "push")
  const outcomeOf = inboxOutcomes(() => stack.db, 60_000)
  const linked = async (name: string) => {
    const api = wearflowApi(() => stack.server.baseUrl, API_KEY)
    const user = await api("POST", "/v2/user", { client_user_id: name })
    await api("POST", `/v2/user/${user.body.user_id}/connections/garmin`, { provider_user_id: `garmin-${name}` })
    return user.body.user_id as string
  }
  const records = async (userId: string) => Number((await stack.db.query("select count(*) as n from records where user_id = $1", [userId])).rows[0].n)

  beforeAll(async () => {
    // One worker process, as WEARFLOW_WORKER_PROCESSES=1 asks.
    stack = await startGarminStack({ name: "worker-processes", consumer: CONSUMER, apiKey: API_KEY, env: { WEARFLOW_WORKER_PROCESSES: "1" } })
  })
  afterAll(async () => {
    await stack?.close()
  })

  it("the worker ingests what the server receives, and its metrics are the server's", async () => {
    await workerOf(stack.server)
    // The worker is up and says who it is in every line it logs.
    await eventually(async () => (stack.server.logs().includes('"process":"worker-1"') ? true : undefined))
    const userId = await linked("one")
    await outcomeOf(await push({ dailies: [{ ...daily, userId: "garmin-one", summaryId: "one-1" }] }))
    expect(await records(userId)).toBe(1)
    const health = await fetch(`${stack.server.baseUrl}/health`)
    expect([health.status, await health.json()]).toMatchObject([200, { status: "ok", workers: { status: "ok", running: 1, wanted: 1 } }])
    const metrics = await (await fetch(`${stack.server.baseUrl}/metrics`)).text()
    // Ingest ran in the worker: its counters carry its name.
    expect(metrics).toMatch(/^wearflow_items_processed_total\{provider="garmin",process="worker-1"\} [1-9]/m)
  })

  it("starts a worker that died again, and ingestion goes on", async () => {
    const first = await workerOf(stack.server)
    process.kill(first, "SIGKILL")
    const second = await eventually(async () => childrenOf(stack.server.process.pid!).find((pid) => pid !== first))
    expect(second).not.toBe(first)
    await eventually(async () => (stack.server.logs().includes("a worker process exited; starting it again") ? true : undefined))
    const userId = await linked("two")
    await outcomeOf(await push({ dailies: [{ ...daily, userId: "garmin-two", summaryId: "two-1" }] }))
    expect(await records(userId)).toBe(1)
  })

  it("stops its worker when it is killed", async () => {
    const worker = await workerOf(stack.server)
    expect(await stack.server.stop("SIGKILL", { alone: true })).toBeNull()
    await eventually(async () => (alive(worker) ? undefined : true), 60_000)
  })
})

describe("a receiver alone, then a worker beside it", () => {
  let stack: GarminStack
  let worker: ReturnType<typeof spawn> | undefined
  const push = garminWebhook(() => stack.server.baseUrl, CONSUMER.consumerKey, "push")
  const outcomeOf = inboxOutcomes(() => stack.db, 60_000)

  beforeAll(async () => {
    stack = await startGarminStack({ name: "receiver-only", consumer: CONSUMER, apiKey: API_KEY, env: { WEARFLOW_ROLE: "receiver" } })
  })
  afterAll(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((resolve) => worker!.once("exit", resolve))
      worker.kill("SIGTERM")
      await exited
    }
    await stack?.close()
  })

  it("stores notifications without processing them, and a worker on the same database processes them", async () => {
    expect(childrenOf(stack.server.process.pid!)).toEqual([])
    const ids = [await push({ dailies: [{ ...daily, userId: "garmin-nobody", summaryId: "r-1" }] }), await push({ dailies: [{ ...daily, userId: "garmin-nobody", summaryId: "r-2" }] })]
    // The receiver runs no ingest: nothing has claimed the jobs.
    const claimed = await stack.db.query("select count(*) as n from ingest_queue where id = any($1) and (completed or acquired_at is not null)", [ids.map((id) => `inbox-${id}`)])
    expect(Number(claimed.rows[0].n)).toBe(0)

    const bun = fileURLToPath(new URL("../node_modules/.bin/bun", import.meta.url))
    worker = spawn(bun, ["--smol", "apps/server/main.ts"], {
      cwd: fileURLToPath(new URL("../", import.meta.url)),
      env: { ...process.env, ...stack.env, WEARFLOW_ROLE: "worker", WEARFLOW_RUNNER_ADDRESS: "receiver-only-worker:1", LOG_LEVEL: "Warn" },
      stdio: ["ignore", "inherit", "inherit"]
    })
    // Unlinked users' notifications are parked: processed all the same.
    for (const id of ids) await outcomeOf(id)
    const parked = await stack.db.query("select count(*) as n from unlinked_notifications where inbox_id = any($1)", [ids])
    expect(Number(parked.rows[0].n)).toBe(2)
  })
})
