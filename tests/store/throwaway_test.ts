/**
 * The throwaway PostgreSQL cluster (lib/store/throwaway.ts) that the store,
 * sweep and distributed tests and the `sweep-workers` benchmark start.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import pg from "pg";
import { startPostgres, withCluster } from "../../lib/store/throwaway.ts";

/** The rows of `sql` in the database at `url`. */
async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

Deno.test("startPostgres: a server on its port, fresh databases, halt and start again keep the data, stop removes it", async () => {
  const cluster = await startPostgres();
  try {
    assert.equal(cluster.url, `postgres://dmw@127.0.0.1:${cluster.port}/dmw`);
    const a = await cluster.newDatabase();
    const b = await cluster.newDatabase();
    assert.notEqual(a, b);
    await query(a, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)");
    assert.deepEqual(
      await query(b, "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'kept'"),
      [{ n: 0 }],
      "each database starts empty",
    );
    await cluster.halt();
    await assert.rejects(query(a, "SELECT 1"), /ECONNREFUSED/);
    await cluster.start();
    assert.deepEqual(await query(a, "SELECT x FROM kept"), [{ x: 7 }]);
  } finally {
    await cluster.stop();
  }
  await assert.rejects(query(cluster.url, "SELECT 1"), /ECONNREFUSED/);
});

Deno.test("withCluster: a database and a folder for the function, both gone after it, even when it throws", async () => {
  let seen: { url: string; dir: string } | undefined;
  await assert.rejects(
    withCluster("dmw-throwaway-test-", async (url, dir) => {
      seen = { url, dir };
      assert.deepEqual(await query(url, "SELECT 1 AS one"), [{ one: 1 }]);
      assert.ok(fs.existsSync(dir));
      throw new Error("the test failed");
    }),
    /the test failed/,
  );
  assert.ok(seen);
  assert.ok(!fs.existsSync(seen.dir), "the folder is removed");
  await assert.rejects(query(seen.url, "SELECT 1"), /ECONNREFUSED/);
});
