/**
 * A real S3-protocol server (s3rver) on loopback, behind a small proxy the tests control: it
 * can answer 503 to everything (an outage), run a hook after the store has taken an object
 * but before the client hears so (a crash at that moment), and counts the PUTs per key.
 */
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
// @ts-expect-error s3rver ships no type declarations
import S3rver from "s3rver"

export interface S3Server {
  /** The proxy's URL: what the server under test is given. */
  readonly url: string
  readonly bucket: string
  /** Straight to s3rver, for reading back. */
  readonly client: S3Client
  /** While true the proxy answers every request with 503. */
  down: boolean
  /** Runs after s3rver stored a whole-object PUT, before the client is answered. */
  afterPut: ((key: string) => Promise<void>) | undefined
  /** Whole-object PUTs (not parts) per key, counted when s3rver answered them. */
  readonly puts: Map<string, number>
  /** Every request that reached s3rver: method and path with query. */
  readonly requests: Array<string>
  readonly keys: (prefix?: string) => Promise<Array<string>>
  readonly get: (key: string) => Promise<Buffer>
  /** Copies every object under `prefix` into `directory`, keys as paths. */
  readonly download: (prefix: string, directory: string) => Promise<Array<string>>
  readonly close: () => Promise<void>
}

export const startS3 = async (bucket: string): Promise<S3Server> => {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), "wearflow-s3rver-"))
  const s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory, configureBuckets: [{ name: bucket }] })
  const upstream = (await s3.run()) as AddressInfo
  const client = new S3Client({
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${upstream.port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }
  })

  const state: S3Server = {
    url: "",
    bucket,
    client,
    down: false,
    afterPut: undefined,
    puts: new Map(),
    requests: [],
    keys: async (prefix = "") => {
      const keys: Array<string> = []
      let token: string | undefined
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
        keys.push(...(page.Contents ?? []).map((o) => o.Key!))
        token = page.NextContinuationToken
      } while (token)
      return keys.sort()
    },
    get: async (key) => {
      const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
      return Buffer.from(await object.Body!.transformToByteArray())
    },
    download: async (prefix, target) => {
      const keys = await state.keys(prefix)
      for (const key of keys) {
        const file = path.join(target, key)
        await fs.mkdir(path.dirname(file), { recursive: true })
        await fs.writeFile(file, await state.get(key))
      }
      return keys
    },
    close: async () => {
      proxy.closeAllConnections()
      await new Promise((resolve) => proxy.close(resolve))
      client.destroy()
      await s3.close()
      await fs.rm(directory, { recursive: true, force: true })
    }
  }

  const proxy = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      if (state.down) {
        response.writeHead(503, { "content-type": "application/xml" })
        response.end("<?xml version=\"1.0\"?><Error><Code>ServiceUnavailable</Code><Message>down for the test</Message></Error>")
        return
      }
      state.requests.push(`${request.method} ${request.url}`)
      const forwarded = http.request(
        { host: "127.0.0.1", port: upstream.port, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          const body: Array<Buffer> = []
          answer.on("data", (chunk: Buffer) => body.push(chunk))
          answer.on("end", async () => {
            const url = new URL(request.url!, "http://proxy")
            const wholeObject = request.method === "PUT" && !url.searchParams.has("uploadId")
            const key = decodeURIComponent(url.pathname.slice(`/${bucket}/`.length))
            if (wholeObject && answer.statusCode === 200) {
              state.puts.set(key, (state.puts.get(key) ?? 0) + 1)
              await state.afterPut?.(key)
            }
            if (response.destroyed) return
            response.writeHead(answer.statusCode ?? 502, answer.headers)
            response.end(Buffer.concat(body))
          })
        }
      )
      forwarded.on("error", () => response.destroy())
      forwarded.end(Buffer.concat(chunks))
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve))
  return Object.assign(state, { url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` })
}
