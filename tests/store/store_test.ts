import assert from "node:assert/strict";
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
  assert.equal(store.job(job.id)!.cancel, 1);
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
