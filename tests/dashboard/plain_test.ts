import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { watchLines } from "../../lib/dashboard/plain.ts";
import { openStore } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { watchPlain } from "../../lib/sweep/status.ts";
import { buildFixture } from "./fixture.ts";

const ESC = String.fromCharCode(27);
const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("plain watch of a finished sweep: its jobs once, no escape codes", async () => {
  const f = await buildFixture(undefined, { status: "done" });
  const lines: string[] = [];
  await watchLines({ storePath: f.storePath, say: (l) => lines.push(l) });
  assert.deepEqual(lines, (await watchPlain({ storePath: f.storePath })).split("\n"));
  assert.equal(lines.length, 27);
  assert.match(lines[0], /^sweep fixture \(done\): 11 done, 2 running, 12 queued, 1 failed$/);
  assert.ok(!lines.join("").includes(ESC));
});

Deno.test("plain watch --with: the sweep's jobs, then both sweeps' compare grid; an unknown one stops it first", async () => {
  const f = await buildFixture(undefined, { status: "done" });
  await buildFixture(f.dir, { status: "done", name: "fixture2", offset: 0.005 });
  const lines: string[] = [];
  await watchLines({
    storePath: f.storePath,
    sweep: "fixture",
    others: ["fixture2"],
    say: (l) => lines.push(l),
  });
  const jobs = (await watchPlain({ storePath: f.storePath, sweep: "fixture" })).split("\n");
  assert.deepEqual(lines.slice(0, jobs.length), jobs);
  const grid = lines.slice(jobs.length + 1).join("\n");
  assert.equal(lines[jobs.length], "", "a blank line before the grid");
  assert.match(grid, /^fixture, fixture2: mmd \(minimize\)/);
  // The best of each: 0.012 in fixture, 0.005 more in fixture2, on the same row.
  assert.match(grid, /^linear .* 0\.01200\* .*\| .* 0\.01700\*$/m);
  const none: string[] = [];
  await assert.rejects(
    watchLines({ storePath: f.storePath, others: ["fixtur3"], say: (l) => none.push(l) }),
    /no sweep named "fixtur3"/,
  );
  assert.deepEqual(none, [], "nothing printed before the error");
});

Deno.test("plain watch of a sweep not in the store: the store, the nearest name and the sweeps it has", async () => {
  const f = await buildFixture(undefined, { status: "done" });
  await assert.rejects(
    watchPlain({ storePath: f.storePath, sweep: "fixtur" }),
    new RegExp(
      `^Error: no sweep named "fixtur" in the store ${f.storePath} \\(did you mean "fixture"\\?\\) ` +
        "\\(sweeps: fixture\\)$",
    ),
  );
  const empty = join(f.dir, "empty.sqlite");
  await (await openStore(empty)).close();
  await assert.rejects(
    watchPlain({ storePath: empty }),
    /^Error: no sweep in the store .*empty\.sqlite yet \(run `deno task sweep` first\)$/,
  );
});

Deno.test("plain watch of a running sweep: one line per event until it stops", async () => {
  const f = await buildFixture();
  const lines: string[] = [];
  const watching = watchLines({ storePath: f.storePath, say: (l) => lines.push(l), pollMs: 20 });
  const store = await openStore(f.storePath);
  try {
    const { running } = f.train;
    await sleep(150);
    await store.putMetrics([210, 220].map((step) => ({
      job: running.id,
      step,
      loss: 0.25,
      bands: "[]",
      lr: 0.001,
      stepsPerSec: 12,
    })));
    await sleep(150);
    await store.putEval({
      job: f.evals.running.id,
      metric: "mmd",
      value: 0.0111,
      n: 1,
      spread: 0,
      extra: "{}",
    });
    await store.updateJob(f.evals.running.id, {
      state: "done",
      finished: new Date().toISOString(),
    });
    await store.updateJob(f.evals.failed.id, { state: "queued" });
    await sleep(150);
    await store.updateJob(running.id, { state: "cancelled" });
    await store.setSweepStatus(f.sweepId, "done");
    await watching;
  } finally {
    await store.close();
  }
  const body = lines.map((l) => l.replace(/^\d\d:\d\d:\d\d /, ""));
  const t = f.train.running.key;
  assert.deepEqual(body, [
    "sweep fixture (running): 11 done, 2 running, 12 queued, 1 failed",
    `running train ${t}`,
    `running eval ${f.evals.running.key}`,
    `train ${t} step 210/400 loss 0.25 12 steps/s`,
    `train ${t} step 220/400 loss 0.25 12 steps/s`,
    // Events seen in one poll come in job order.
    `queued eval ${f.evals.failed.key}`,
    `done eval ${f.evals.running.key} mmd=0.0111`,
    `cancelled train ${t}`,
    "sweep fixture done: 12 done, 0 running, 13 queued, 0 failed, 1 cancelled",
  ]);
  assert.ok(lines.every((l) => /^\d\d:\d\d:\d\d /.test(l) && !l.includes(ESC)));
});

Deno.test("main.ts watch without a terminal, and with --no-tui, prints plain lines", async () => {
  const f = await buildFixture(undefined, { status: "done" });
  for (const extra of [[], ["--no-tui"]]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", main, "watch", "fixture", "--store", f.storePath, ...extra],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.ok(!text.includes(ESC));
    assert.deepEqual(
      text.trimEnd().split("\n"),
      (await watchPlain({ storePath: f.storePath })).split("\n"),
    );
  }
});

Deno.test("sweep without a terminal: plain lines, one per executor event", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-dash-" });
  const file = join(dir, "exp.yaml");
  fs.writeFileSync(
    file,
    "name: plain\nmodel: ddpm\ndata: 8gaussians\nmetric: {name: mmd, goal: minimize}\nsteps: 30\n" +
      "parameters:\n  sample_steps: {values: [10, 20]}\n",
  );
  const lines: string[] = [];
  const fake = fileURLToPath(new URL("../sweep/fixtures/fake_worker.ts", import.meta.url));
  await runSweep({
    file,
    storePath: join(dir, "store.sqlite"),
    runsDir: join(dir, "runs"),
    workerCommand: [Deno.execPath(), "run", "-A", fake],
    concurrency: 2,
    onEvent: (l) => lines.push(l),
  });
  assert.ok(!lines.join("\n").includes(ESC));
  assert.ok(lines.every((l) => !l.includes("\n")));
  const events = lines.filter((l) => /^\d\d:\d\d:\d\d /.test(l)).map((l) => l.slice(9));
  // 1 training job (3 logged steps, 1 checkpoint) and 2 evaluations.
  assert.equal(events.filter((l) => l.startsWith("start ")).length, 3);
  assert.equal(events.filter((l) => l.startsWith("train ")).length, 3);
  assert.equal(events.filter((l) => l.startsWith("eval ")).length, 2);
  assert.equal(events.filter((l) => l.startsWith("done ")).length, 3);
  assert.match(lines.at(-1)!, /^sweep plain finished in \d+ s: 3 jobs done, 0 failed$/);
});
