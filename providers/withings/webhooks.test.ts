/**
 * The callback's handlers on a web handler with an inbox double: what the real server's
 * tests cannot arrange (a failing inbox, an unset secret, a body streamed without length).
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServer from "@effect/platform/HttpServer"
import { ApiId } from "@wearflow/core/http"
import { Inbox, InboxUnavailable, type Notification } from "@wearflow/core/pipeline/inbox"
import { ConfigProvider, Effect, Layer } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { WithingsApi } from "./Api.ts"
import { CALLBACK_PATH } from "./config.ts"
import { MAX_NOTIFICATION_BYTES } from "./notifications.ts"
import * as Webhooks from "./webhooks.ts"

const SECRET = "webhooks-unit-test-secret-42"

let disposers: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(disposers.map((dispose) => dispose()))
  disposers = []
})

/** The group served alone, on `env`, with an inbox that stores in `committed` or fails. */
const serve = (options: { readonly env?: Record<string, string>; readonly inboxFails?: boolean } = {}) => {
  const committed: Array<Notification> = []
  const inbox = Layer.succeed(
    Inbox,
    Inbox.make({
      commit: (notification: Notification) =>
        options.inboxFails ? Effect.fail(new InboxUnavailable({ cause: new Error("database down") })) : Effect.sync(() => committed.push(notification))
    } as never)
  )
  const config = Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(options.env ?? { WITHINGS_NOTIFY_SECRET: SECRET }))))
  const api = HttpApi.make(ApiId).add(WithingsApi)
  const { dispose, handler } = HttpApiBuilder.toWebHandler(
    Layer.mergeAll(HttpApiBuilder.api(api).pipe(Layer.provide(Webhooks.layer), Layer.provide(inbox), Layer.provide(config)), HttpServer.layerContext)
  )
  disposers.push(dispose)
  const send = (method: string, init: { readonly secret?: string; readonly body?: BodyInit; readonly headers?: Record<string, string> } = {}) =>
    handler(
      new Request(`http://withings.test${CALLBACK_PATH}/${init.secret ?? SECRET}`, {
        method,
        headers: { "content-type": "application/x-www-form-urlencoded", ...init.headers },
        body: init.body ?? null,
        ...(init.body instanceof ReadableStream ? { duplex: "half" } : {})
      } as RequestInit)
    )
  return { committed, send }
}

/** A body streamed in 1 KB chunks, without a length. */
const streamed = (bytes: number) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (let sent = 0; sent < bytes; sent += 1024) controller.enqueue(new TextEncoder().encode(sent === 0 ? `userid=1&appli=1&x=${"a".repeat(1004)}` : "a".repeat(1024)))
      controller.close()
    }
  })

describe("Withings' callback handlers", () => {
  it("commit the decoded form as JSON of kind notify, one item", async () => {
    const { committed, send } = serve()
    const reply = await send("POST", { body: "userid=12345&appli=4&startdate=10&enddate=20&other=x" })
    expect(reply.status).toBe(200)
    expect(committed).toEqual([{ provider: "withings", kind: "notify", body: JSON.stringify({ userid: "12345", appli: 4, startdate: 10, enddate: 20 }), itemCount: 1 }])
  })

  it("answer 503 when the notification could not be committed, so Withings retries; the body names no value", async () => {
    const { send } = serve({ inboxFails: true })
    const reply = await send("POST", { body: "userid=12345&appli=4&startdate=10&enddate=20" })
    expect(reply.status).toBe(503)
    const text = await reply.text()
    expect(text).not.toContain("12345")
    expect(text).not.toContain("database down")
  })

  it("refuse everything with 404 while WITHINGS_NOTIFY_SECRET is unset", async () => {
    const { committed, send } = serve({ env: {} })
    expect((await send("HEAD")).status).toBe(404)
    expect((await send("HEAD", { secret: "" })).status).toBe(404)
    expect((await send("POST", { body: "userid=1&appli=1" })).status).toBe(404)
    expect(committed).toEqual([])
  })

  it("stop reading a body streamed without length once it outgrows a notification", async () => {
    const { committed, send } = serve()
    const small = await send("POST", { body: streamed(1024) })
    expect(small.status).toBe(200)
    const large = await send("POST", { body: streamed(MAX_NOTIFICATION_BYTES * 4) })
    expect(large.status).toBe(400)
    expect(await large.text()).not.toContain("aaaa")
    // A declared length over the bound is refused before reading.
    expect((await send("POST", { body: "userid=1&appli=1", headers: { "content-length": String(MAX_NOTIFICATION_BYTES + 1) } })).status).toBe(400)
    expect(committed).toHaveLength(1)
  })
})
