/** A fresh database per test file, on the run's Postgres server. */
import { Redacted } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { inject } from "vitest"

export const freshDatabaseUrl = async (): Promise<Redacted.Redacted<string>> => {
  const admin = inject("adminDatabaseUrl")
  const name = `wf_test_${randomBytes(6).toString("hex")}`
  const client = new pg.Client({ connectionString: admin })
  await client.connect()
  try {
    await client.query(`create database ${name}`)
  } finally {
    await client.end()
  }
  const url = new URL(admin)
  url.pathname = `/${name}`
  return Redacted.make(url.toString())
}
