import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { SqliteStore } from "../../lib/store/store.ts";

Deno.test("metric points are unique per (job, step): a repeated step replaces, never duplicates", () => {
  const path = join(Deno.makeTempDirSync(), "s.sqlite");
  const store = new SqliteStore(path);
  const sweep = store.upsertSweep("s", "f.yaml", "h", "{}");
  const job = store.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
  assert.equal(
    store.ensureJob(sweep.id, "k", "train", "{}", "runs/k").id,
    job.id,
    "jobs are unique per key",
  );
  const row = (step: number, loss: number) => ({
    job: job.id,
    step,
    loss,
    bands: "[]",
    lr: 0.1,
    stepsPerSec: 1,
  });
  store.putMetrics([row(10, 1), row(20, 2)]);
  store.putMetrics([row(20, 2.5), row(30, 3)]);
  assert.deepEqual(store.metricsSince(job.id, 0).map((m) => [m.step, m.loss]), [
    [10, 1],
    [20, 2.5],
    [30, 3],
  ]);
  assert.deepEqual(store.metricsSince(job.id, 10).map((m) => m.step), [20, 30]);
  store.close();
});

Deno.test("a reader sees the writer's progress while the writer keeps the store open (WAL)", () => {
  const path = join(Deno.makeTempDirSync(), "s.sqlite");
  const writer = new SqliteStore(path);
  const sweep = writer.upsertSweep("s", "f.yaml", "h", "{}");
  const job = writer.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
  const reader = new SqliteStore(path, { readOnly: true });
  for (let s = 1; s <= 5; s++) {
    writer.putMetrics([{ job: job.id, step: s, loss: s, bands: "[]", lr: 0, stepsPerSec: 0 }]);
    assert.equal(reader.metricsSince(job.id, 0).length, s);
  }
  writer.updateJob(job.id, { state: "running", progress: 0.5 });
  assert.equal(reader.job(job.id)!.state, "running");
  reader.close();
  writer.close();
});

Deno.test("configurations no longer in the file are kept, flagged removed; cancel and requeue", () => {
  const store = new SqliteStore(join(Deno.makeTempDirSync(), "s.sqlite"));
  const sweep = store.upsertSweep("s", "f.yaml", "h", "{}");
  store.setConfigs(sweep.id, [{ idx: 0, params: "a", trainKey: "t", evalKey: "e" }, {
    idx: 1,
    params: "b",
    trainKey: "t",
    evalKey: "e2",
  }]);
  store.setConfigs(sweep.id, [{ idx: 0, params: "a", trainKey: "t", evalKey: "e" }, {
    idx: 1,
    params: "c",
    trainKey: "t",
    evalKey: "e3",
  }]);
  assert.deepEqual(store.configs(sweep.id).map((c) => [c.params, c.removed]), [["a", 0], ["c", 0], [
    "b",
    1,
  ]]);
  const job = store.ensureJob(sweep.id, "k", "eval", "{}", "r");
  store.requestCancel(job.id);
  assert.equal(store.job(job.id)!.cancelRequested, 1);
  store.updateJob(job.id, { state: "failed", error: "x" });
  store.requeue(job.id);
  assert.equal(store.job(job.id)!.state, "queued");
  assert.equal(store.job(job.id)!.error, null);
  assert.throws(
    () => new SqliteStore(join(Deno.makeTempDirSync(), "none.sqlite"), { readOnly: true }),
    /no store yet/,
  );
  store.close();
});

Deno.test("a reader in this process follows a writer in another process, incrementally, without duplicates", async () => {
  const path = join(Deno.makeTempDirSync(), "s.sqlite");
  const store = new SqliteStore(path);
  const sweep = store.upsertSweep("w", "f.yaml", "h", "{}");
  const job = store.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
  const storeUrl = new URL("../../lib/store/store.ts", import.meta.url).href;
  const script = join(Deno.makeTempDirSync(), "writer.ts");
  Deno.writeTextFileSync(
    script,
    `import { SqliteStore } from ${JSON.stringify(storeUrl)};
const s = new SqliteStore(${JSON.stringify(path)});
for (let i = 1; i <= 400; i++) {
  // Every step twice, as a resumed trainer would log it again.
  const row = { job: ${job.id}, step: i, loss: 1 / i, bands: "[]", lr: 0, stepsPerSec: 0 };
  s.putMetrics([row]);
  if (i > 1) s.putMetrics([{ ...row, step: i - 1 }]);
  if (i % 50 === 0) s.putEval({ job: ${job.id}, metric: "mmd", value: i, n: 1, spread: 0, extra: "{}" });
}
s.setSweepStatus(${sweep.id}, "done");
s.close();`,
  );
  const child = new Deno.Command(Deno.execPath(), { args: ["run", "-A", script] }).spawn();
  const reader = new SqliteStore(path, { readOnly: true });
  const seen: number[] = [];
  let last = 0;
  let status = "";
  while (status !== "done") {
    status = reader.latestSweep()!.status;
    for (const m of reader.metricsSince(job.id, last)) {
      seen.push(m.step);
      last = m.step;
    }
    reader.evalsForSweep(sweep.id);
    await new Promise((r) => setTimeout(r, 5));
  }
  for (const m of reader.metricsSince(job.id, last)) seen.push(m.step);
  assert.equal((await child.status).code, 0);
  assert.deepEqual(seen, Array.from({ length: 400 }, (_, i) => i + 1));
  assert.equal(reader.evalsForSweep(sweep.id).length, 1, "one row per (job, metric)");
  assert.equal(reader.evalsForSweep(sweep.id)[0].value, 400);
  reader.close();
  store.close();
});

Deno.test("a store from before the cancel_requested column is migrated on open", () => {
  const path = join(Deno.makeTempDirSync(), "old.sqlite");
  const db = new DatabaseSync(path);
  db.exec(`CREATE TABLE jobs (id INTEGER PRIMARY KEY, sweep INTEGER NOT NULL, key TEXT NOT NULL,
    kind TEXT NOT NULL, spec TEXT NOT NULL, run_dir TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, started TEXT, finished TEXT, pid INTEGER,
    cancel INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0, UNIQUE (sweep, key))`);
  db.close();
  const store = new SqliteStore(path);
  const sweep = store.upsertSweep("s", "f.yaml", "h", "{}");
  const job = store.ensureJob(sweep.id, "k", "train", "{}", "r");
  store.requestCancel(job.id);
  assert.equal(store.job(job.id)!.cancelRequested, 1);
  assert.equal(store.latestSweep()!.name, "s");
  store.close();
});
