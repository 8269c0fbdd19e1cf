/**
 * Running a sweep as `deno task sweep` does, without running its jobs: the
 * dry run and what a changed experiment file reports.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { openStore } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { loadExperiment } from "../../lib/sweep/experiment.ts";
import { describePlan, planSweep } from "../../lib/sweep/planner.ts";

/** An experiment over `values` of sample_steps, in a fresh folder. */
function experiment(values: number[]) {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-commands-" });
  const file = join(dir, "exp.yaml");
  const write = (values: number[]) =>
    fs.writeFileSync(
      file,
      `name: cmd\nmodel: ddpm\ndata: 8gaussians\nsteps: 50\n` +
        `parameters:\n  sample_steps: {values: ${JSON.stringify(values)}}\n`,
    );
  write(values);
  return { dir, file, write, storePath: join(dir, "store.sqlite"), runsDir: join(dir, "runs") };
}

Deno.test("runSweep --dry-run: says the plan and records nothing", async () => {
  const { file, storePath, runsDir } = experiment([10, 20]);
  const lines: string[] = [];
  const r = await runSweep({
    file,
    storePath,
    runsDir,
    dryRun: true,
    onEvent: (l) => lines.push(l),
  });
  assert.deepEqual(r, { name: "cmd", done: 0, failed: 0 });
  assert.deepEqual(lines, [describePlan(planSweep(loadExperiment(file).experiment))]);
  assert.ok(!fs.existsSync(storePath) && !fs.existsSync(runsDir));
});

Deno.test("runSweep: a changed experiment file names what differs and lists ten configurations at most", async () => {
  const { file, write, storePath, runsDir } = experiment([1, 2, 3]);
  // Stopped before any job starts: the sweep and its jobs are recorded, nothing runs.
  const stopped = AbortSignal.abort();
  const lines: string[] = [];
  const opts = { file, storePath, runsDir, signal: stopped, onEvent: (l: string) => lines.push(l) };
  await runSweep(opts);
  assert.ok(
    lines.includes("sweep cmd: 3 configurations → 1 training + 3 evaluation jobs (0 already done)"),
  );
  const added = Array.from({ length: 12 }, (_, i) => 10 + i);
  write([1, ...added]);
  lines.length = 0;
  await runSweep(opts);
  const params = (v: number) => JSON.stringify({ steps: 50, sample_steps: v });
  const sinceChange = lines.slice(lines.indexOf(
    "the experiment file changed: 12 configurations added, 2 removed",
  ));
  assert.deepEqual(sinceChange.slice(0, 15), [
    "the experiment file changed: 12 configurations added, 2 removed",
    `  ~ parameters.sample_steps.values: [1,2,3] → ${JSON.stringify([1, ...added])}`,
    ...added.slice(0, 10).map((v) => `  + ${params(v)}`),
    "  + … 2 more",
    `  - ${params(2)} (kept in the store, not run)`,
    `  - ${params(3)} (kept in the store, not run)`,
  ]);
  const store = await openStore(storePath, { readOnly: true });
  try {
    const sweep = (await store.sweep("cmd"))!;
    assert.equal(sweep.status, "stopped");
    const configs = await store.configs(sweep.id);
    assert.equal(configs.filter((c) => c.removed).length, 2);
    assert.equal((await store.jobs(sweep.id)).filter((j) => j.state === "done").length, 0);
  } finally {
    await store.close();
  }
});
