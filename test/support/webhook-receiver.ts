/**
 * A customer's webhook receiver on loopback: records every request (headers, raw body, time)
 * and answers as told — 2xx, an error, a redirect, a hang past the deadline, or a dropped
 * connection — so tests can play every kind of endpoint.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface Received {
  readonly headers: Record<string, string>
  readonly body: string
  readonly at: number
  readonly path: string
}

/** How the receiver answers the next request: a status, a hang (ms), a dropped connection, or held until `release()`. */
export type Answer = number | { readonly status: number; readonly body?: string; readonly location?: string } | { readonly hangMs: number } | "drop" | "hold"

export interface Receiver {
  readonly url: string
  readonly received: Array<Received>
  /** Answers for the coming requests, in order; after them, `fallback`. */
  answers: Array<Answer>
  fallback: Answer
  /** Requests held open ("hold"), not answered yet. */
  readonly held: () => number
  /** Answers every held request with 200. */
  readonly release: () => void
  /** Received requests carrying this message id header. */
  readonly withId: (id: string) => Array<Received>
  readonly close: () => Promise<void>
}

export const startReceiver = async (path = "/hooks"): Promise<Receiver> => {
  const sockets = new Set<import("node:net").Socket>()
  const holding: Array<http.ServerResponse> = []
  const receiver: Omit<Receiver, "url" | "close"> = {
    received: [],
    answers: [],
    fallback: 204,
    held: () => holding.length,
    release: () => {
      for (const response of holding.splice(0)) response.writeHead(200).end()
    },
    withId: (id) => receiver.received.filter((r) => (r.headers["svix-id"] ?? r.headers["webhook-id"]) === id)
  }
  const server = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      receiver.received.push({
        headers: Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)])),
        body: Buffer.concat(chunks).toString("utf8"),
        at: Date.now(),
        path: request.url ?? ""
      })
      const answer = receiver.answers.shift() ?? receiver.fallback
      if (answer === "drop") return request.socket.destroy()
      if (answer === "hold") return void holding.push(response)
      if (typeof answer === "number") return response.writeHead(answer).end()
      if ("hangMs" in answer) return void setTimeout(() => response.writeHead(200).end(), answer.hangMs)
      response.writeHead(answer.status, answer.location ? { location: answer.location } : {}).end(answer.body ?? "")
    })
  })
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }) as Receiver
}
