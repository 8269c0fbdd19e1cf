/**
 * The plain watch lines of the dashboard's recorded store
 * (tests/dashboard/fixture.ts), worked out by hand.
 */
import assert from "node:assert/strict";
import { openStore } from "../../lib/store/store.ts";
import type { EvalJob } from "../../lib/sweep/planner.ts";
import { watchPlain } from "../../lib/sweep/status.ts";
import { buildFixture, fixtureMmd } from "../dashboard/fixture.ts";

Deno.test("watchPlain: the fixture's jobs counted by state, one line each with its latest numbers", async () => {
  const f = await buildFixture();
  const lines = (await watchPlain({ storePath: f.storePath })).split("\n");
  // 2 training jobs and 24 evaluations: done are the linear training and 10 evaluations;
  // running the cosine training and one evaluation; one evaluation failed; the rest queued.
  assert.equal(lines[0], "sweep fixture (running): 11 done, 2 running, 12 queued, 1 failed");
  assert.equal(lines.length, 1 + 26);
  const line = (key: string) => lines.find((l) => l.includes(`  ${key}`))!;
  // The last logged step's loss: the mean of the bands (0.9, 0.5, 0.3, 0.2)·(1 + 40/step).
  assert.match(line(f.train.done.key), /^ {2}train done +100% {2}\S+ {2}step 400 loss 0\.5225$/);
  assert.match(
    line(f.train.running.key),
    /^ {2}train running +50% {2}\S+ {2}step 200 loss 0\.5700$/,
  );
  assert.match(line(f.evals.failed.key), /\(the evaluation printed no metric line\)$/);
  const store = await openStore(f.storePath, { readOnly: true });
  try {
    const evals = (await store.jobs(f.sweepId)).filter((j) => j.kind === "eval");
    for (const j of evals.filter((j) => j.state === "done")) {
      const { settings } = JSON.parse(j.spec) as EvalJob;
      assert.ok(line(j.key).endsWith(`  mmd=${fixtureMmd(settings).toPrecision(4)}`), line(j.key));
    }
  } finally {
    await store.close();
  }
  await assert.rejects(
    watchPlain({ storePath: f.storePath, sweep: "nope" }),
    /no sweep named "nope"/,
  );
});
