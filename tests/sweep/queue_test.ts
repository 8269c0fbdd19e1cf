/**
 * The queue on a throwaway PostgreSQL cluster (lib/store/throwaway.ts): processes that start
 * pg-boss on a fresh database at the same moment (a sweep and its workers) all start.
 */
import assert from "node:assert/strict";
import { openStore } from "../../lib/store/store.ts";
import { openQueue } from "../../lib/sweep/queue.ts";
import { startPostgres } from "../../lib/store/throwaway.ts";

Deno.test("four queues started at once on a fresh database all start (one installs the schema)", async () => {
  const pg = await startPostgres();
  try {
    for (let round = 0; round < 3; round++) {
      const url = await pg.newDatabase();
      const stores = await Promise.all([0, 1, 2, 3].map(() => openStore(url)));
      try {
        const started = await Promise.allSettled(stores.map((s) => openQueue(s, () => {})));
        const failed = started.flatMap((r) => r.status === "rejected" ? [String(r.reason)] : []);
        assert.deepEqual(failed, [], `round ${round}`);
        for (const r of started) {
          if (r.status === "fulfilled") await r.value.stop({ timeout: 2000 });
        }
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    }
  } finally {
    await pg.stop();
  }
});
