import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Samples lose their foreign key to users: its check ran once per sample row (a thousand
 * look-ups for a day of heart rate) and cost about 40% of a sample write. Nothing is lost:
 * samples are only written beside their record, in the same transaction, and the record's own
 * key to users checks (and locks) the user. A user's deletion still takes their samples, now
 * once per statement through the rows it deleted.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`alter table samples drop constraint samples_user_id_fkey`
  yield* sql.unsafe(`
    create function delete_samples_of_deleted_users() returns trigger language plpgsql as $$
    begin
      delete from samples where user_id in (select id from deleted_users);
      return null;
    end $$`)
  yield* sql`
    create trigger samples_of_deleted_users after delete on users
    referencing old table as deleted_users for each statement execute function delete_samples_of_deleted_users()`
})
