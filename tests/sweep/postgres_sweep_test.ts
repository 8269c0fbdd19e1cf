/**
 * A sweep on a PostgreSQL store (a throwaway cluster, lib/store/throwaway.ts):
 * the same plan, jobs, metrics and evaluations as on SQLite, read back by
 * `compare`, `compare --list` and plain `watch` through the URL; one
 * coordinator per sweep, whichever machine a second one starts on. Without
 * PostgreSQL this fails, naming the fix (`.ci/run` installs it).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { openStore } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { watchPlain } from "../../lib/sweep/status.ts";
import { compareSweep, listSweeps } from "../../lib/sweep/compare.ts";
import { evalSampleFiles } from "../../lib/sweep/results.ts";
import { withCluster } from "../../lib/store/throwaway.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";
import { until } from "../until.ts";

const fake = fakeWorker("FAKE_SAMPLES=1");

Deno.test("a sweep runs on a PostgreSQL store; compare, list and watch read it by URL", async () => {
  await withCluster("dmw-pgsweep-", async (url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(
      file,
      `name: pgs
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 100
parameters:
  schedule: {values: [linear, cosine]}
  sample_steps: {values: [10, 20]}
`,
    );
    const runsDir = join(dir, "runs");
    const r = await runSweep({
      file,
      storePath: url,
      runsDir,
      concurrency: 2,
      workerCommand: fake,
      onEvent: () => {},
    });
    assert.deepEqual(r, { name: "pgs", done: 6, failed: 0 });
    const store = await openStore(url);
    try {
      const sweep = (await store.sweep("pgs"))!;
      assert.equal(sweep.status, "done");
      const jobs = await store.jobs(sweep.id);
      const train = jobs.filter((j) => j.kind === "train");
      assert.equal(train.length, 2);
      for (const t of train) {
        assert.equal(t.backend, "fake", "the start event's backend is in the store");
        assert.equal(t.device, "fake device", "and its device");
        const steps = (await store.metricsSince(t.id, 0)).map((m) => m.step);
        assert.deepEqual(steps, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        // Its checkpoints are in the store, so any machine can evaluate or resume it.
        assert.deepEqual(await store.files(t.id, "ckpt/"), [
          "ckpt/step-00000050/state.json",
          "ckpt/step-00000100/state.json",
        ]);
      }
      assert.equal((await store.evalsForSweep(sweep.id)).length, 4);
      for (const e of jobs.filter((j) => j.kind === "eval")) {
        assert.deepEqual([e.backend, e.device], ["fake", "fake device"], "the eval's own report");
        // Its samples are in the store (the worker's scratch folder is gone), read by any machine.
        const files = await evalSampleFiles(store, e.id);
        assert.deepEqual(files.map((f) => f.name), [`samples/${e.key}.csv`]);
        const ev = JSON.parse(e.spec);
        const value = 1 / ev.checkpoint + ev.settings.sample_steps / 1000;
        assert.equal(new TextDecoder().decode(files[0].bytes), `x,y\n${ev.checkpoint},${value}\n`);
        // And the tail of its output, for the dashboard's run detail.
        assert.match(new TextDecoder().decode(await store.readFile(e.id, "log")), /"metric":"mmd"/);
      }
    } finally {
      await store.close();
    }
    // Run again: nothing is run twice.
    const again = await runSweep({
      file,
      storePath: url,
      runsDir,
      workerCommand: fake,
      onEvent: () => {},
    });
    assert.deepEqual(again, { name: "pgs", done: 6, failed: 0 });
    // The sweep's own worker runs each attempt in its own folder under runs/.worker/.
    const calls = [...fs.readdirSync(runsDir, { recursive: true })].map(String)
      .filter((p) => p.endsWith("invocations.log"))
      .flatMap((p) => fs.readFileSync(join(runsDir, p), "utf8").trim().split("\n"));
    assert.equal(calls.filter((c) => c.startsWith("train")).length, 2);
    // An evaluation's folder is scratch, removed after it: the store counts its runs.
    const again2 = await openStore(url);
    try {
      const evals = (await again2.jobs((await again2.sweep("pgs"))!.id))
        .filter((j) => j.kind === "eval");
      assert.deepEqual(evals.map((j) => [j.state, j.attempts]), Array(4).fill(["done", 1]));
    } finally {
      await again2.close();
    }

    const grid = await compareSweep({ storePath: url });
    assert.match(grid, /^pgs: mmd \(minimize\)/);
    assert.match(grid, /linear\s+0\.02000\*/);
    assert.match(await listSweeps({ storePath: url }), /pgs\s+done\s+6\/6/);
    assert.match(await watchPlain({ storePath: url, sweep: "pgs" }), /sweep pgs \(done\): 6 done/);
  });
});

Deno.test("ASHA on a PostgreSQL store: the coordinator stops the worst run through the store", async () => {
  Deno.env.set("FAKE_SLEEP_MS", "60");
  try {
    await withCluster("dmw-pgasha-", async (url, dir) => {
      const file = join(dir, "exp.yaml");
      fs.writeFileSync(
        file,
        `name: asha
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 200
early_terminate: {type: asha, min_iter: 50, eta: 2}
parameters:
  lr: {values: [0.001, 0.002, 0.004]}
`,
      );
      const lines: string[] = [];
      const r = await runSweep({
        file,
        storePath: url,
        runsDir: join(dir, "runs"),
        concurrency: 3,
        workerCommand: fake,
        onEvent: (l) => lines.push(l),
      });
      assert.equal(r.failed, 0, lines.join("\n"));
      const store = await openStore(url);
      try {
        const jobs = await store.jobs((await store.sweep("asha"))!.id);
        const train = (lr: number) =>
          jobs.find((j) => j.kind === "train" && JSON.parse(j.spec).config.lr === lr)!;
        assert.equal(train(0.001).state, "done", "the best run is never stopped");
        assert.equal(train(0.004).state, "stopped", lines.join("\n"));
        assert.ok(lines.some((l) => /asha: stop .* at step \d+/.test(l)));
        const stoppedAt = (await store.metricsSince(train(0.004).id, 0)).at(-1)!.step;
        assert.ok(stoppedAt < 200, `stopped before its last step (at ${stoppedAt})`);
        const evalOf = jobs.find((j) =>
          j.kind === "eval" && JSON.parse(j.spec).train === train(0.004).key
        )!;
        assert.equal(evalOf.state, "cancelled", "a stopped run's evaluation is cancelled");
      } finally {
        await store.close();
      }
    });
  } finally {
    Deno.env.delete("FAKE_SLEEP_MS");
  }
});

Deno.test("one coordinator per sweep on PostgreSQL: a second is refused before it changes anything; the hold survives a restart", async () => {
  await withCluster("dmw-pghold-", async (url, dir, cluster) => {
    const a = await openStore(url);
    const b = await openStore(url);
    try {
      const release = await a.holdSweep("held");
      const refused = new RegExp(
        `^Error: sweep held is coordinated by another sweep process \\(dmw sweep on ` +
          `${Deno.hostname()} pid ${Deno.pid}, since \\d{4}-\\d\\d-\\d\\dT[\\d:]+Z\\) in ` +
          `postgres://dmw@127\\.0\\.0\\.1:${cluster.port}/t1; `,
      );
      await assert.rejects(b.holdSweep("held"), refused);
      await (await b.holdSweep("other"))();

      // `deno task sweep` of that experiment from another machine (here: another runs folder).
      const file = join(dir, "held.yaml");
      fs.writeFileSync(file, "name: held\nmodel: ddpm\ndata: 8gaussians\nsteps: 100\n");
      await assert.rejects(
        runSweep({ file, storePath: url, runsDir: join(dir, "m2"), onEvent: () => {} }),
        refused,
      );
      assert.equal(await b.sweep("held"), undefined, "nothing written");

      // A restart drops every session's locks: the holder takes its own back.
      await cluster.halt();
      await cluster.start();
      await until(
        "the holder to take its hold back",
        async () => {
          const got = await b.holdSweep("held").then((r) => r, (e: Error) => e);
          if (!(got instanceof Error)) await got();
          return got instanceof Error && refused.test(String(got));
        },
        30_000,
        200,
      );
      await release();
      await (await b.holdSweep("held"))();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("Ctrl-C on a PostgreSQL sweep: stopped, its running jobs queued again; the rerun resumes them", async () => {
  await withCluster("dmw-pgstop-", async (url, dir) => {
    const file = join(dir, "stop.yaml");
    fs.writeFileSync(
      file,
      "name: pgstop\nmodel: ddpm\ndata: 8gaussians\nsteps: 100\nmetric: {name: mmd, goal: minimize}\n" +
        "parameters:\n  schedule: {values: [linear, cosine]}\n",
    );
    const runsDir = join(dir, "runs");
    const store = await openStore(url);
    try {
      // Both training runs hold after their step-50 checkpoint until the sweep is stopped.
      const stop = new AbortController();
      const first = runSweep({
        file,
        storePath: url,
        runsDir,
        concurrency: 2,
        workerCommand: fakeWorker(`FAKE_HOLD=50:${join(dir, "never")}`),
        onEvent: () => {},
        signal: stop.signal,
      });
      await until("both runs' step-50 checkpoints", async () => {
        const sweep = await store.sweep("pgstop");
        const train = sweep ? (await store.jobs(sweep.id)).filter((j) => j.kind === "train") : [];
        const stored = await Promise.all(train.map((j) => store.artifacts(j.id)));
        return train.length === 2 && stored.every((a) => a.length > 0);
      });
      stop.abort();
      assert.deepEqual(await first, { name: "pgstop", done: 0, failed: 0 });
      const sweep = (await store.sweep("pgstop"))!;
      assert.equal(sweep.status, "stopped", "watch shows it stopped");
      const jobs = await store.jobs(sweep.id);
      assert.deepEqual(
        jobs.map((j) => [j.kind, j.state, j.pid]).sort(),
        [["eval", "queued", null], ["eval", "queued", null], ["train", "queued", null], [
          "train",
          "queued",
          null,
        ]],
        "nothing left running",
      );

      const again = await runSweep({
        file,
        storePath: url,
        runsDir,
        concurrency: 2,
        workerCommand: fake,
        onEvent: () => {},
      });
      const why = (await store.jobs(sweep.id)).map((j) =>
        `${j.key} ${j.state} ${j.attempts} ${j.error}`
      );
      assert.deepEqual(again, { name: "pgstop", done: 4, failed: 0 }, why.join("\n"));
      for (const t of (await store.jobs(sweep.id)).filter((j) => j.kind === "train")) {
        assert.equal(t.attempts, 2);
        assert.deepEqual(
          (await store.metricsSince(t.id, 0)).map((p) => p.step),
          [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
          "resumed at step 50, every step once",
        );
      }
    } finally {
      await store.close();
    }
  });
});
