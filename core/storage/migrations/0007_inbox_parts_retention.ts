import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Large notification bodies stored as parts; raw bodies kept for a retention period and
 * without OAuth 1.0a tokens.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // A part of a large body: `part_of` is the body's row. No foreign key: the body's row may go
  // (retention) while its id still orders the part's records among other deliveries.
  yield* sql`alter table inbox add column part_of bigint, add column part_index integer`
  yield* sql`create unique index inbox_parts on inbox (part_of, part_index) where part_of is not null`
  // Retention deletes processed bodies; a pulled body may outlive the PING body it came from.
  yield* sql`create index inbox_by_processed_at on inbox (processed_at) where processed_at is not null`
  yield* sql`alter table inbox drop constraint inbox_source_inbox_id_fkey`
  yield* sql`alter table inbox add constraint inbox_source_inbox_id_fkey foreign key (source_inbox_id) references inbox(id) on delete set null`
  // Bodies stored before now may hold OAuth 1.0a tokens: each item's token becomes its hash, as
  // new bodies are stored (providers' items live in top-level lists). A body that is not valid
  // jsonb (it cannot hold a token Postgres could read either way) is left as it is.
  yield* sql.unsafe(`
    do $$
    declare r record;
    begin
      for r in select id, body from inbox where body like '%"userAccessToken"%' loop
        begin
          update inbox set body = (
            select jsonb_object_agg(k, case when jsonb_typeof(v) = 'array' then (
              select coalesce(jsonb_agg(case
                when jsonb_typeof(item) = 'object' and jsonb_typeof(item->'userAccessToken') = 'string'
                  then (item - 'userAccessToken') || jsonb_build_object('userAccessTokenHash', encode(sha256(convert_to(item->>'userAccessToken', 'UTF8')), 'hex'))
                else item end order by n), '[]'::jsonb)
              from jsonb_array_elements(v) with ordinality as e(item, n)) else v end)
            from jsonb_each(r.body::jsonb) as t(k, v))::text
          where id = r.id;
        exception when others then null;
        end;
      end loop;
    end $$`)
})
