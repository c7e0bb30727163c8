/** Reading /metrics in tests: a server's series and its worker processes' (labelled `process`) together. */

const series = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/
const label = /(\w+)="((?:[^"\\]|\\.)*)"/g

/**
 * The sum of metric `name`'s series whose labels include `labels`, whichever process each
 * comes from; undefined when there is none.
 */
export const metricSum = (text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined => {
  let sum: number | undefined
  for (const line of text.split("\n")) {
    const match = series.exec(line)
    if (match === null || match[1] !== name) continue
    const has = new Map([...(match[2] ?? "").matchAll(label)].map(([, key, value]) => [key!, value!]))
    if (Object.entries(labels).every(([key, value]) => has.get(key) === value)) sum = (sum ?? 0) + Number(match[3])
  }
  return sum
}

/** `metricSum` of a server's /metrics now. */
export const scrape = async (baseUrl: string, name: string, labels: Readonly<Record<string, string>> = {}) =>
  metricSum(await (await fetch(`${baseUrl}/metrics`)).text(), name, labels)
