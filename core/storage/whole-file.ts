import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"

/**
 * Writes `bytes` to `target` (creating its folder), aside first and then renamed: a crash
 * never leaves half a file under the final name, and readers never see one.
 */
export const writeWholeFile = async (target: string, bytes: Uint8Array) => {
  await fs.mkdir(path.dirname(target), { recursive: true })
  const partial = `${target}.${randomBytes(4).toString("hex")}.partial`
  await fs.writeFile(partial, bytes)
  await fs.rename(partial, target)
}
