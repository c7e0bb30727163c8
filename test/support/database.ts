/** A fresh database per test file, on the run's Postgres server (the conformance kit's own helper). */
export { freshDatabase as freshDatabaseUrl } from "../../core/testing/database.ts"
