import assert from "node:assert/strict";
import {
  cancelTarget,
  coveredTime,
  evalSeries,
  restartTarget,
  sortRows,
  SweepReader,
} from "../../lib/dashboard/model.ts";
import { compareGrid, defaultAxes } from "../../lib/sweep/results.ts";
import { openStore, type Store } from "../../lib/store/store.ts";
import { buildFixture } from "./fixture.ts";

/** A store that records every metricsSince and evalsForSweep call. */
function spy(store: Store, calls: string[]): Store {
  return new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        if (prop === "metricsSince" || prop === "evalsForSweep") {
          calls.push(`${String(prop)}(${args.join(",")})`);
        }
        return v.apply(target, args);
      };
    },
  });
}

Deno.test("reader: snapshot of the recorded store", async () => {
  const f = await buildFixture();
  const store = await openStore(f.storePath, { readOnly: true });
  try {
    const snap = (await new SweepReader(store).refresh(Date.now()))!;
    assert.equal(snap.sweep.name, "fixture");
    assert.equal(snap.metric, "mmd");
    assert.ok(snap.minimize);
    assert.deepEqual(snap.varying, ["schedule", "sample_steps", "sampler", "ema_eval"]);
    assert.deepEqual(snap.counts, {
      done: 11,
      running: 2,
      queued: 12,
      failed: 1,
      cancelled: 0,
      total: 26,
    });
    assert.equal(snap.rows.length, 24);
    assert.equal(snap.backend, "auto → wasm");
    assert.ok(snap.live);
    // Configuration 11: linear, 100 steps, ddim, EMA 0.999: 0.01 + 0.2/100.
    assert.equal(snap.best?.idx, 11);
    assert.equal(snap.best?.metric, 0.012);
    const r1 = snap.rows[1];
    assert.deepEqual([r1.stage, r1.state, r1.status], ["eval", "failed", "failed"]);
    assert.equal(r1.progress, 0.9);
    const r2 = snap.rows[2];
    assert.deepEqual([r2.stage, r2.status], ["eval", "evaluating"]);
    assert.ok(Math.abs(r2.progress - (0.9 + 0.1 * 0.4)) < 1e-12, "a running evaluation's 40%");
    const r12 = snap.rows[12];
    assert.deepEqual([r12.stage, r12.status], ["train", "training"]);
    assert.equal(r12.progress, 0.45);
    assert.equal(r12.stepsPerSec, 10);
    // 200 of 400 steps left at 10 steps/s.
    assert.equal(r12.etaMs, 20_000);
    // Sweep: 20 s of training plus 13 evaluations of 2 s, over concurrency 2.
    assert.equal(snap.etaMs, 23_000);
    assert.equal(snap.etaPartial, false);
  } finally {
    await store.close();
  }
});

Deno.test("reader: reads only new metric points and re-reads evaluations only when one finished", async () => {
  const f = await buildFixture();
  const ro = await openStore(f.storePath, { readOnly: true });
  const rw = await openStore(f.storePath);
  try {
    const calls: string[] = [];
    const reader = new SweepReader(spy(ro, calls));
    const first = (await reader.refresh())!;
    const { done, running } = f.train;
    assert.deepEqual(calls.sort(), [
      `evalsForSweep(${f.sweepId})`,
      `metricsSince(${done.id},0)`,
      `metricsSince(${running.id},0)`,
    ]);
    assert.equal(reader.series(running.id).length, 20);
    calls.length = 0;
    const same = (await reader.refresh())!;
    assert.deepEqual(calls, [`metricsSince(${running.id},200)`]);
    assert.equal(same.version, first.version);
    await rw.putMetrics([210, 220].map((step) => ({
      job: running.id,
      step,
      loss: 0.5,
      bands: "[0.8,0.4,0.3,null]",
      lr: 0.001,
      stepsPerSec: 12,
    })));
    await rw.updateJob(running.id, { progress: 0.55 });
    await rw.updateJob(f.evals.running.id, { state: "done", finished: new Date().toISOString() });
    await rw.putEval({
      job: f.evals.running.id,
      metric: "mmd",
      value: 0.011,
      n: 1,
      spread: 0,
      extra: "{}",
    });
    calls.length = 0;
    const next = (await reader.refresh())!;
    assert.deepEqual(calls.sort(), [
      `evalsForSweep(${f.sweepId})`,
      `metricsSince(${running.id},200)`,
    ]);
    assert.ok(next.version > first.version);
    const pts = reader.series(running.id);
    assert.deepEqual(pts.slice(-1)[0], {
      step: 220,
      loss: 0.5,
      bands: [0.8, 0.4, 0.3, null],
      lr: 0.001,
      stepsPerSec: 12,
    });
    assert.equal(next.best?.idx, 2);
    assert.equal(next.rows[12].stepsPerSec, 12);
  } finally {
    await ro.close();
    await rw.close();
  }
});

Deno.test("reader: an unknown sweep name lists the sweeps; wait mode returns undefined", async () => {
  const f = await buildFixture();
  const store = await openStore(f.storePath, { readOnly: true });
  try {
    await assert.rejects(
      new SweepReader(store, { sweep: "nope" }).refresh(),
      /no sweep named "nope" in the store \S+\.sqlite \(sweeps: fixture\)/,
    );
    assert.equal(await new SweepReader(store, { sweep: "nope", wait: true }).refresh(), undefined);
  } finally {
    await store.close();
  }
});

Deno.test("sorting, compare grid, evaluation series", async () => {
  const f = await buildFixture();
  const store = await openStore(f.storePath, { readOnly: true });
  try {
    const snap = (await new SweepReader(store).refresh())!;
    const byMetric = sortRows(snap.rows, "metric", true);
    assert.deepEqual(byMetric.slice(0, 3).map((r) => r.idx), [11, 7, 10]);
    // Rows without a metric come last, in plan order.
    assert.deepEqual(byMetric.slice(-3).map((r) => r.idx), [21, 22, 23]);
    assert.deepEqual(sortRows(byMetric, "plan", true).map((r) => r.idx).slice(0, 3), [0, 1, 2]);
    assert.deepEqual(sortRows(snap.rows, "metric", false)[0].idx, 0);

    assert.deepEqual(defaultAxes(snap.varying), ["schedule", "sample_steps"]);
    const g = compareGrid(snap.rows, "schedule", "sample_steps", snap.metric, true);
    assert.deepEqual(g.rowValues, ["linear", "cosine"]);
    assert.deepEqual(g.colValues, ["10", "50", "100"]);
    // Best over sampler and EMA: 10 steps has only ddpm/raw (0.037) and ddim/0.999 (0.030) done.
    assert.deepEqual(g.cells, [[0.03, 0.014, 0.012], [undefined, undefined, undefined]]);
    assert.deepEqual(g.best, [0, 2]);
    assert.deepEqual([g.min, g.max], [0.012, 0.03]);

    const { x, series } = evalSeries(snap, f.train.done.key);
    const byLabel = Object.fromEntries(series.map((s) => [s.label, s.points]));
    assert.deepEqual(byLabel["ddim ema 0.999"], [[10, 0.03], [50, 0.014], [100, 0.012]]);
    assert.deepEqual(byLabel["ddpm ema 0.999"], [[50, 0.018], [100, 0.016]]);
    assert.equal(series.length, 4);
    assert.equal(x, "nfe", "every evaluation recorded its NFE (one per step here)");
    const unrecorded = { ...snap, rows: snap.rows.map((r) => ({ ...r, nfe: undefined })) };
    assert.equal(evalSeries(unrecorded, f.train.done.key).x, "steps");
    assert.deepEqual(evalSeries(snap, f.train.running.key).series, []);
  } finally {
    await store.close();
  }
});

Deno.test("cancel and restart targets, and why a key does nothing", async () => {
  for (const status of ["running", "done"]) {
    const f = await buildFixture(undefined, { status });
    const store = await openStore(f.storePath, { readOnly: true });
    try {
      const snap = (await new SweepReader(store).refresh())!;
      const training = cancelTarget(snap, snap.rows[12]);
      const failed = restartTarget(snap, snap.rows[1]);
      if (status === "running") {
        assert.equal(training.job?.id, f.train.running.id);
        assert.equal(training.shared, 12);
        assert.equal(cancelTarget(snap, snap.rows[2]).job?.id, f.evals.running.id);
        assert.equal(failed.job?.id, f.evals.failed.id);
      } else {
        assert.match(training.reason!, /sweep fixture is done, not running: nothing to cancel/);
        assert.match(failed.reason!, /nothing runs it: `deno task sweep .* --restart-failed`/);
      }
      assert.match(cancelTarget(snap, snap.rows[0]).reason!, /is done: nothing to cancel/);
      assert.match(restartTarget(snap, snap.rows[0]).reason!, /this one is done/);
    } finally {
      await store.close();
    }
  }
});

Deno.test("covered time", () => {
  assert.equal(coveredTime([[0, 10], [5, 15], [20, 30], [22, 25]]), 25);
  assert.equal(coveredTime([]), 0);
});
