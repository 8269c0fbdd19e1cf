import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runSweep } from "../../lib/sweep/commands.ts";
import { compareSweep, listSweeps } from "../../lib/sweep/compare.ts";
import { type JobRow, openStore, type Store } from "../../lib/store/store.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";

const fake = fakeWorker();

function setup(yaml: string) {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-sweep-" });
  const file = join(dir, "exp.yaml");
  fs.writeFileSync(file, yaml);
  return { dir, file, storePath: join(dir, "store.sqlite"), runsDir: join(dir, "runs") };
}

function invocations(runsDir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name === "invocations.log") {
        out.push(...fs.readFileSync(join(d, e.name), "utf8").trim().split("\n"));
      }
    }
  };
  if (fs.existsSync(runsDir)) walk(runsDir);
  return out;
}

Deno.test("one job crashing and one going NaN fail alone; the others finish", async () => {
  const { file, storePath, runsDir } = setup(`
name: iso
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 100
parameters:
  lr: {values: [0.001, 0.002, 0.003]}
  sample_steps: {values: [10, 20]}
`);
  // lr picks the fate of each training job through the fake worker's --set keys.
  const lines: string[] = [];
  const worker = [
    ...fake.slice(0, -1),
    fileURLToPath(new URL("./fixtures/fake_worker.ts", import.meta.url)),
  ];
  const wrap = join(Deno.makeTempDirSync(), "wrap.ts");
  fs.writeFileSync(
    wrap,
    `const a = [...Deno.args];
const i = a.findIndex((x) => x.startsWith("lr="));
if (i >= 0 && a[i] === "lr=0.002") a.push("--set", "crash_at=50");
if (i >= 0 && a[i] === "lr=0.003") a.push("--set", "nan_at=30");
const p = new Deno.Command(Deno.execPath(), { args: ["run", "-A", ${
      JSON.stringify(worker.at(-1))
    }, ...a] }).spawn();
Deno.exit((await p.status).code);`,
  );
  const r = await runSweep({
    file,
    storePath,
    runsDir,
    concurrency: 2,
    workerCommand: [Deno.execPath(), "run", "-A", wrap],
    onEvent: (l) => lines.push(l),
  });
  const store = await openStore(storePath, { readOnly: true });
  const jobs = await store.jobs((await store.sweep("iso"))!.id);
  const train = jobs.filter((j) => j.kind === "train");
  const byLr = (lr: number) => train.find((j) => JSON.parse(j.spec).config.lr === lr)!;
  assert.equal(byLr(0.001).state, "done");
  assert.equal(byLr(0.002).state, "failed");
  assert.match(byLr(0.002).error!, /simulated crash/);
  assert.equal(byLr(0.003).state, "failed");
  assert.match(byLr(0.003).error!, /loss became NaN at step 30 \(step 30\)/);
  const evals = jobs.filter((j) => j.kind === "eval");
  assert.equal(
    evals.filter((j) => j.state === "done").length,
    2,
    "the healthy run's two evaluations finish",
  );
  assert.equal(evals.filter((j) => j.state === "failed").length, 4);
  assert.equal((await store.evalsForSweep((await store.sweep("iso"))!.id)).length, 2);
  assert.equal(r.failed, 6);
  assert.ok(lines.some((l) => /retry train .*simulated crash/.test(l)), "a crash is retried once");
  assert.ok(lines.some((l) => /failed train .*simulated crash/.test(l)));
  const trainCalls = (lr: number) =>
    fs.readFileSync(join(byLr(lr).runDir, "invocations.log"), "utf8").match(/^train/gm)!.length;
  assert.equal(trainCalls(0.002), 2, "max_failures: 1 → one retry of the crash");
  assert.equal(trainCalls(0.003), 1, "a NaN is not retried");
  assert.equal(trainCalls(0.001), 1);
  await store.close();

  // --restart-failed puts the failed jobs back; the healthy run is not touched.
  await runSweep({
    file,
    storePath,
    runsDir,
    restartFailed: true,
    workerCommand: [Deno.execPath(), "run", "-A", wrap],
    onEvent: () => {},
  });
  assert.equal(trainCalls(0.002), 4);
  assert.equal(trainCalls(0.003), 2);
  assert.equal(trainCalls(0.001), 1);
});

Deno.test("kill -9 of the sweep mid-training: rerun finishes it, no finished job re-run, series continuous", async () => {
  const { file, storePath, runsDir } = setup(`
name: resume
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 300
sleep_ms: 0
parameters:
  schedule: {values: [linear, cosine]}
  sample_steps: {values: [10, 20]}
`.replace("sleep_ms: 0\n", ""));
  // A slow fake trainer (100 ms per logged step) so the kill lands mid-run.
  const runner = fileURLToPath(new URL("./fixtures/run_sweep.ts", import.meta.url));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", runner, file, storePath, runsDir],
    env: { FAKE_SLEEP_MS: "100" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Wait until one training job has written a checkpoint, then kill the sweep outright.
  const deadline = Date.now() + 60_000;
  let checkpoints = 0;
  const checkpointed = new Set<string>();
  while (Date.now() < deadline && checkpoints === 0) {
    await new Promise((r) => setTimeout(r, 100));
    if (!fs.existsSync(storePath)) continue;
    try {
      const s = await openStore(storePath, { readOnly: true });
      const sw = await s.sweep("resume");
      for (const j of sw ? await s.jobs(sw.id) : []) {
        if ((await s.artifacts(j.id)).length) checkpointed.add(j.key);
      }
      checkpoints = checkpointed.size;
      await s.close();
    } catch { /* the writer is creating the schema */ }
  }
  assert.ok(checkpoints > 0, "a checkpoint was recorded before the kill");
  child.kill("SIGKILL");
  await child.status;

  // The killed sweep's workers live on as orphans; the rerun stops them before resuming.
  const lines: string[] = [];
  Deno.env.set("FAKE_SLEEP_MS", "10");
  try {
    await runSweep({
      file,
      storePath,
      runsDir,
      concurrency: 2,
      workerCommand: fake,
      onEvent: (l) => lines.push(l),
    });
  } finally {
    Deno.env.delete("FAKE_SLEEP_MS");
  }
  assert.ok(lines.some((l) => /resume train .*queued again/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => /stopped orphaned worker \d+/.test(l)), lines.join("\n"));
  const store = await openStore(storePath, { readOnly: true });
  const sweep = (await store.sweep("resume"))!;
  const jobs = await store.jobs(sweep.id);
  assert.ok(
    jobs.every((j) => j.state === "done"),
    jobs.map((j) => `${j.key}:${j.state}`).join(" "),
  );
  for (const j of jobs.filter((j) => j.kind === "train")) {
    const steps = (await store.metricsSince(j.id, 0)).map((m) => m.step);
    assert.deepEqual(
      steps,
      Array.from({ length: 30 }, (_, i) => 10 * (i + 1)),
      "every step once, none missing",
    );
  }
  const calls = invocations(runsDir);
  const evalCalls = calls.filter((c) => c.startsWith("eval"));
  assert.equal(new Set(evalCalls).size, evalCalls.length, "no evaluation ran twice");
  assert.equal(evalCalls.length, 4);
  for (const j of jobs.filter((j) => j.kind === "train")) {
    const starts = fs.readFileSync(join(j.runDir, "invocations.log"), "utf8").trim().split("\n")
      .filter((l) => l.startsWith("train"));
    assert.equal(starts[0], "train from 0");
    assert.ok(starts.length <= 2, "a training job is started again only if it was unfinished");
    if (checkpointed.has(j.key)) {
      assert.equal(starts.length, 2, "a run checkpointed before the kill was unfinished");
      assert.match(starts[1], /^train from [1-9]/, "the rerun resumed from its checkpoint");
    }
  }
  await store.close();
});

Deno.test("rerunning a finished sweep runs nothing; a changed file says what differs", async () => {
  const { file, storePath, runsDir } = setup(`
name: change
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 50
parameters:
  sample_steps: {values: [10, 20]}
`);
  const opts = { file, storePath, runsDir, workerCommand: fake, onEvent: (_: string) => {} };
  await runSweep(opts);
  const before = invocations(runsDir).length;
  await runSweep(opts);
  assert.equal(invocations(runsDir).length, before, "nothing re-run");
  fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("[10, 20]", "[10, 30]"));
  const lines: string[] = [];
  await runSweep({ ...opts, onEvent: (l) => lines.push(l) });
  assert.ok(
    lines.some((l) => /changed: 1 configurations added, 1 removed/.test(l)),
    lines.join("\n"),
  );
  assert.equal(invocations(runsDir).length, before + 1, "only the new evaluation ran");
  assert.ok(
    lines.some((l) => l.includes("~ parameters.sample_steps.values: [10,20] → [10,30]")),
    "the changed key is named",
  );
  const store = await openStore(storePath, { readOnly: true });
  assert.equal(
    (await store.configs((await store.sweep("change"))!.id)).filter((c) => c.removed).length,
    1,
  );
  await store.close();

  // More steps for the same training keys: the done run continues from its last checkpoint.
  fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("steps: 50", "steps: 100"));
  lines.length = 0;
  const r = await runSweep({ ...opts, onEvent: (l) => lines.push(l) });
  assert.equal(r.failed, 0);
  assert.ok(
    lines.some((l) => /training job .* changed \(steps: 50 → 100\): it continues/.test(l)),
    lines.join("\n"),
  );
  const trains = invocations(runsDir).filter((c) => c.startsWith("train"));
  assert.deepEqual(trains, ["train from 0", "train from 50"]);
  const s2 = await openStore(storePath, { readOnly: true });
  const job = (await s2.jobs((await s2.sweep("change"))!.id)).find((j) => j.kind === "train")!;
  assert.deepEqual((await s2.metricsSince(job.id, 0)).map((m) => m.step), [
    10,
    20,
    30,
    40,
    50,
    60,
    70,
    80,
    90,
    100,
  ]);
  await s2.close();
});

Deno.test("ASHA stops the worst training run at a rung, only when the experiment asks", async () => {
  const yaml = (et: string) => `
name: asha
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 200
${et}
parameters:
  lr: {values: [0.001, 0.002, 0.004]}
`;
  const run = async (et: string) => {
    const { file, storePath, runsDir } = setup(yaml(et));
    const lines: string[] = [];
    Deno.env.set("FAKE_SLEEP_MS", "15");
    try {
      await runSweep({
        file,
        storePath,
        runsDir,
        concurrency: 3,
        workerCommand: fake,
        onEvent: (l) => lines.push(l),
      });
    } finally {
      Deno.env.delete("FAKE_SLEEP_MS");
    }
    const store = await openStore(storePath, { readOnly: true });
    const jobs = await store.jobs((await store.sweep("asha"))!.id);
    await store.close();
    const state = (lr: number) =>
      jobs.find((j) => j.kind === "train" && JSON.parse(j.spec).config.lr === lr)!.state;
    return { jobs, lines, state };
  };
  const without = await run("");
  assert.ok(without.jobs.every((j) => j.state === "done"));
  const withAsha = await run("early_terminate: {type: asha, min_iter: 50, eta: 2}");
  assert.equal(withAsha.state(0.001), "done", "the best run is never stopped");
  assert.equal(withAsha.state(0.004), "stopped", withAsha.lines.join("\n"));
  assert.ok(withAsha.lines.some((l) => /asha: stop .* at step \d+/.test(l)));
  const evals = withAsha.jobs.filter((j) => j.kind === "eval");
  assert.ok(evals.some((j) => j.state === "cancelled"), "a stopped run's evaluation is cancelled");
});

Deno.test("an evaluation printing no metric fails; compare grids and CSV read the store", async () => {
  const { file, storePath, runsDir } = setup(`
name: cmp
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 100
ema_warmup: false
parameters:
  schedule: {values: [linear, cosine]}
  ema_eval: {values: [raw, 0.999]}
  sample_steps: {values: [10, 20, 40]}
`);
  const lines: string[] = [];
  await runSweep({ file, dryRun: true, onEvent: (l) => lines.push(l) });
  assert.match(
    lines[0],
    /^12 configurations → 2 training jobs \+ 12 evaluation jobs \(a naive grid would train 12\)/,
  );
  assert.ok(!fs.existsSync(storePath), "a dry run touches no store");
  const r = await runSweep({ file, storePath, runsDir, workerCommand: fake, onEvent: () => {} });
  assert.equal(r.failed, 0);
  const store = await openStore(storePath, { readOnly: true });
  const grid = await compareSweep({ store });
  assert.match(grid, /cmp: mmd \(minimize\), best over ema_eval per cell; \* = best/);
  assert.equal(grid.split("\n").filter((l) => l.includes("*")).length, 2, grid);
  assert.match(grid, /linear .*0\.02000\*/, "1/100 + 10/1000 is the best cell");
  const csv = (await compareSweep({ store, csv: true })).trim().split("\n");
  assert.equal(csv.length, 13);
  assert.match(csv[0], /^schedule,ema_eval,sample_steps,.*,nfe,state,mmd$/);
  const warmup = csv[0].split(",").indexOf("ema_warmup");
  assert.equal(csv[1].split(",")[warmup], "false", "booleans are written as words");
  // NFE, recorded by each evaluation, is an axis too (the fake worker records one per step).
  const byNfe = await compareSweep({ store, cols: "nfe" });
  assert.match(byNfe, /schedule \\ nfe +10 +20 +40/, byNfe);
  assert.match(byNfe, /linear .*0\.02000\*/, byNfe);
  assert.match(await listSweeps({ store }), /cmp\s+done\s+14\/14/);
  const listed = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fileURLToPath(new URL("../../main.ts", import.meta.url)), "compare"]
      .concat(["--list", "--store", storePath]),
    stdout: "piped",
  }).output();
  assert.match(
    new TextDecoder().decode(listed.stdout),
    /^sweep +status +done +failed[^\n]*\ncmp +done +14\/14 +0 /,
  );
  await assert.rejects(
    compareSweep({ store, rows: "sheduler" }),
    /--rows sheduler: not a parameter of sweep cmp \(did you mean "schedule"\?\) \(varying: schedule, ema_eval, sample_steps; all: /,
  );
  await assert.rejects(compareSweep({ store, cols: "nosuch" }), /--cols nosuch: not a parameter/);
  await assert.rejects(
    compareSweep({ store, rows: "schedule", cols: "schedule" }),
    /--rows and --cols are both schedule/,
  );
  await store.close();

  const broken = setup(`
name: broken
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 50
`);
  const wrap = join(broken.dir, "wrap.ts");
  fs.writeFileSync(
    wrap,
    `const p = new Deno.Command(Deno.execPath(), { args: ["run", "-A", ${
      JSON.stringify(fake.at(-1))
    }, ...Deno.args, ...(Deno.args[0] === "eval" ? ["--set", "fail=1"] : [])] }).spawn();
Deno.exit((await p.status).code);`,
  );
  const b = await runSweep({
    ...broken,
    workerCommand: [Deno.execPath(), "run", "-A", wrap],
    onEvent: () => {},
  });
  assert.equal(b.failed, 1);
  const s2 = await openStore(broken.storePath, { readOnly: true });
  const ev = (await s2.jobs((await s2.latestSweep())!.id)).find((j) => j.kind === "eval")!;
  assert.match(ev.error!, /printed no metric line/);
  await s2.close();
});

Deno.test("a cancel request from another connection stops a running job; a timeout fails one", async () => {
  const { file, storePath, runsDir } = setup(`
name: cancel
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 2000
timeout: 2
max_failures: 0
parameters:
  lr: {values: [0.001, 0.002]}
`);
  const dashboard = { store: undefined as Promise<Store> | undefined };
  const updates: string[] = [];
  Deno.env.set("FAKE_SLEEP_MS", "10");
  try {
    await runSweep({
      file,
      storePath,
      runsDir,
      concurrency: 2,
      workerCommand: fake,
      onEvent: () => {},
      onUpdate: async (u, sweepId) => {
        updates.push(u.type);
        if (u.type !== "train" || u.job.kind !== "train") return;
        if (JSON.parse(u.job.spec).config.lr !== 0.001 || u.job.cancelRequested) return;
        dashboard.store ??= openStore(storePath, { readOnly: false });
        const other = await dashboard.store;
        assert.ok((await other.jobs(sweepId)).some((j) => j.id === u.job.id));
        await other.requestCancel(u.job.id);
      },
    });
  } finally {
    Deno.env.delete("FAKE_SLEEP_MS");
    await (await dashboard.store)?.close();
  }
  const store = await openStore(storePath, { readOnly: true });
  const jobs = await store.jobs((await store.sweep("cancel"))!.id);
  const train = (lr: number) =>
    jobs.find((j) => j.kind === "train" && JSON.parse(j.spec).config.lr === lr)!;
  assert.equal(train(0.001).state, "cancelled");
  assert.equal(train(0.002).state, "failed");
  assert.match(train(0.002).error!, /timed out after 2 s/);
  assert.equal(train(0.002).attempts, 1, "max_failures: 0 → no retry");
  assert.deepEqual(
    jobs.filter((j) => j.kind === "eval").map((j) => j.state).sort(),
    ["cancelled", "failed"],
  );
  assert.ok(updates.includes("start") && updates.includes("cancelled"));
  await store.close();

  // The dashboard's restart: the cancelled run and the evaluation waiting on it run again.
  const restart = await openStore(storePath);
  await restart.requeue(train(0.001).id);
  await restart.close();
  Deno.env.set("FAKE_SLEEP_MS", "1");
  try {
    await runSweep({ file, storePath, runsDir, workerCommand: fake, onEvent: () => {} });
  } finally {
    Deno.env.delete("FAKE_SLEEP_MS");
  }
  const after = await openStore(storePath, { readOnly: true });
  const again = await after.jobs((await after.sweep("cancel"))!.id);
  const evalOf = (t: JobRow) =>
    again.find((j) => j.kind === "eval" && JSON.parse(j.spec).train === t.key)!;
  const t1 = again.find((j) => j.id === train(0.001).id)!;
  assert.equal(t1.state, "done");
  assert.equal(evalOf(t1).state, "done");
  assert.equal((await after.metricsSince(t1.id, 0)).at(-1)!.step, 2000);
  await after.close();
});

Deno.test("a second sweep of the same experiment stops before touching the first's jobs", async () => {
  const { file, storePath, runsDir } = setup(`
name: twice
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 100
parameters:
  sample_steps: {values: [10, 20]}
`);
  const lock = join(runsDir, "twice", "sweep.lock");
  const holder = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    fs.mkdirSync(join(runsDir, "twice"), { recursive: true });
    fs.writeFileSync(lock, JSON.stringify({ pid: holder.pid, started: "then" }));
    await assert.rejects(
      () => runSweep({ file, storePath, runsDir, workerCommand: fake, onEvent: () => {} }),
      new RegExp(`sweep twice is already running in process ${holder.pid} .*deno task watch twice`),
    );
    assert.equal(fs.existsSync(storePath), false, "the store was not touched");
    assert.equal(fs.existsSync(lock), true, "the holder's lock stays");
  } finally {
    holder.kill();
    await holder.status;
  }
  // The holder is gone: its lock is stale and the next sweep takes it over, then releases it.
  const r = await runSweep({ file, storePath, runsDir, workerCommand: fake, onEvent: () => {} });
  assert.equal(r.failed, 0);
  assert.equal(fs.existsSync(lock), false);
});
