import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import type { Experiment } from "../../lib/sweep/experiment.ts";
import {
  chooseMetric,
  chooseSharedMetric,
  compareGrid,
  type ConfigResult,
  defaultAxes,
  distinctValues,
  evalSampleFiles,
  matchesFilter,
  noSweepError,
  parseFilter,
  recordedNfe,
  type SweepResults,
  sweepResults,
  varyingParams,
} from "../../lib/sweep/results.ts";
import { SweepReader } from "../../lib/dashboard/model.ts";
import { openStore } from "../../lib/store/store.ts";
import { buildFixture, fixtureMmd } from "../dashboard/fixture.ts";

Deno.test("recordedNfe reads a positive nfe from an evaluation's extra JSON, else nothing", () => {
  assert.equal(recordedNfe(JSON.stringify({ step: 400, nfe: 49 })), 49);
  for (const extra of [null, undefined, "", "{}", '{"nfe": null}', '{"nfe": 0}', "not json"]) {
    assert.equal(recordedNfe(extra), undefined, String(extra));
  }
});

/** A configuration result of sweep `sweep` with the given parameters and metrics. */
function result(
  sweep: string,
  params: ConfigResult["params"],
  metrics: Record<string, number>,
): ConfigResult {
  return { sweep, params, metrics, spreads: {}, state: "done" };
}

/** A stored experiment with only the fields the results module reads. */
function experiment(metric: Experiment["metric"] | undefined, parameters: string[]): Experiment {
  return {
    name: "x",
    parameters: Object.fromEntries(parameters.map((p) => [p, { values: [] }])),
    ...(metric ? { metric } : {}),
  } as unknown as Experiment;
}

/** Sweep "a": schedule × steps × sampler; two configurations have no metric yet, one is NaN. */
const A: ConfigResult[] = [
  result("a", { schedule: "linear", sample_steps: 10, sampler: "ddpm" }, { mmd: 0.5, swd: 2 }),
  result("a", { schedule: "linear", sample_steps: 10, sampler: "ddim" }, { mmd: 0.3, swd: 3 }),
  result("a", { schedule: "linear", sample_steps: 100, sampler: "ddpm" }, { mmd: 0.2, swd: 1 }),
  result("a", { schedule: "linear", sample_steps: 100, sampler: "ddim" }, {}),
  result("a", { schedule: "cosine", sample_steps: 10, sampler: "ddpm" }, { mmd: NaN }),
  result("a", { schedule: "cosine", sample_steps: 10, sampler: "ddim" }, {}),
  result("a", { schedule: "cosine", sample_steps: 100, sampler: "ddpm" }, { mmd: 0.4, swd: 5 }),
  result("a", { schedule: "cosine", sample_steps: 100, sampler: "ddim" }, { mmd: 0.1, swd: 4 }),
];

Deno.test("compare grid: the best over the other parameters per cell, missing metrics left empty", () => {
  const g = compareGrid(A, "schedule", "sample_steps", "mmd", true);
  assert.deepEqual(g.rowValues, ["linear", "cosine"]);
  assert.deepEqual(g.colValues, ["10", "100"]);
  // linear/10: min(0.5, 0.3); linear/100: 0.2 (ddim has none); cosine/10: NaN and none → empty.
  assert.deepEqual(g.cells, [[0.3, 0.2], [undefined, 0.1]]);
  assert.deepEqual(g.members, [[1, 2], [undefined, 7]]);
  assert.deepEqual(g.best, [1, 1]);
  assert.deepEqual([g.min, g.max], [0.1, 0.3]);

  const max = compareGrid(A, "sampler", "schedule", "swd", false);
  assert.deepEqual(max.rowValues, ["ddpm", "ddim"]);
  assert.deepEqual(max.colValues, ["linear", "cosine"], "strings keep their order of appearance");
  assert.deepEqual(max.cells, [[2, 5], [3, 4]]);
  assert.deepEqual(max.best, [0, 1]);

  const none = compareGrid(A, "schedule", "sample_steps", "fid", true);
  assert.deepEqual(none.cells, [[undefined, undefined], [undefined, undefined]]);
  assert.equal(none.best, undefined);
});

Deno.test("compare grid: values given lay out several sweeps' grids on the same rows and columns", () => {
  const B = [
    result("b", { schedule: "cosine", sample_steps: 1000, sampler: "ddim" }, { mmd: 0.05 }),
    result("b", { schedule: "sigmoid", sample_steps: 10, sampler: "ddim" }, { mmd: 0.6 }),
  ];
  const values = {
    rows: distinctValues([...A, ...B].map((r) => r.params.schedule)),
    cols: distinctValues([...A, ...B].map((r) => r.params.sample_steps)),
  };
  assert.deepEqual(values, { rows: ["linear", "cosine", "sigmoid"], cols: ["10", "100", "1000"] });
  const ga = compareGrid(A, "schedule", "sample_steps", "mmd", true, values);
  const gb = compareGrid(B, "schedule", "sample_steps", "mmd", true, values);
  assert.deepEqual(ga.cells, [[0.3, 0.2, undefined], [undefined, 0.1, undefined], [
    undefined,
    undefined,
    undefined,
  ]]);
  assert.deepEqual(gb.cells, [[undefined, undefined, undefined], [undefined, undefined, 0.05], [
    0.6,
    undefined,
    undefined,
  ]]);
  assert.deepEqual([ga.best, gb.best], [[1, 1], [1, 2]]);
  assert.deepEqual(gb.members[2][0], 1);
});

Deno.test("the metric: requested, else the experiment's, else the first recorded; errors name the sweep", () => {
  const sweep = (name: string, metric: Experiment["metric"] | undefined, results = A) => ({
    name,
    experiment: experiment(metric, ["schedule", "sample_steps", "sampler"]),
    results,
    varying: ["schedule", "sample_steps", "sampler"],
  });
  assert.deepEqual(chooseMetric(sweep("a", { name: "swd", goal: "maximize" })), {
    name: "swd",
    minimize: false,
  });
  // No metric: block (stored as name "", or absent in an older store): the first metric recorded.
  assert.deepEqual(chooseMetric(sweep("a", { name: "", goal: "minimize" })), {
    name: "mmd",
    minimize: true,
  });
  assert.deepEqual(chooseMetric(sweep("a", undefined)), { name: "mmd", minimize: true });
  assert.deepEqual(chooseMetric(sweep("a", undefined, [])), { name: "", minimize: true });
  assert.equal(chooseMetric(sweep("a", undefined), "swd").name, "swd");
  assert.throws(
    () => chooseMetric(sweep("a", undefined), "mdm"),
    /--metric mdm: sweep a recorded no such metric \(did you mean "mmd"\?\) \(recorded: mmd, swd\)/,
  );
  const b = sweep("b", { name: "fid", goal: "minimize" }, [
    result("b", { schedule: "linear" }, { fid: 3 }),
  ]);
  assert.throws(
    () => chooseSharedMetric([sweep("a", undefined) as SweepResults, b as SweepResults]),
    /sweep b recorded no mmd \(it has fid\), which sweep a is compared by/,
  );
  const c = sweep("c", { name: "mmd", goal: "maximize" });
  assert.throws(
    () => chooseSharedMetric([sweep("a", undefined) as SweepResults, c as SweepResults]),
    /sweeps a and c disagree on whether mmd is better larger or smaller/,
  );
  const d = sweep("d", { name: "mmd", goal: "minimize" }, []);
  assert.deepEqual(chooseSharedMetric([sweep("a", undefined) as SweepResults, d as SweepResults]), {
    name: "mmd",
    minimize: true,
  }, "a sweep with nothing recorded yet does not stop the comparison");
});

Deno.test("varying parameters and default axes", () => {
  assert.deepEqual(
    varyingParams(["a", "b", "c"], [{ a: 1, b: [1], c: "x" }, { a: 1, b: [2], c: "x" }]),
    ["b"],
  );
  assert.deepEqual(defaultAxes(["sampler", "sample_steps", "schedule"]), [
    "schedule",
    "sample_steps",
  ]);
  assert.deepEqual(defaultAxes(["sample_steps", "lr"]), ["sample_steps", "lr"]);
  assert.deepEqual(defaultAxes(["lr", "ema_eval", "sampler"]), ["lr", "ema_eval"]);
  assert.deepEqual(defaultAxes(["lr"]), ["lr", undefined]);
  assert.deepEqual(defaultAxes([]), [undefined, undefined]);
});

Deno.test("sweepResults reads the store; its grid is the dashboard's and the fixture's by hand", async () => {
  const f = await buildFixture();
  const store = await openStore(f.storePath, { readOnly: true });
  try {
    const s = await sweepResults(store);
    assert.equal(s.name, "fixture");
    assert.equal(s.results.length, 24);
    assert.deepEqual(s.varying, ["schedule", "sample_steps", "sampler", "ema_eval"]);
    const done = s.results.filter((r) => r.metrics.mmd !== undefined);
    assert.equal(done.length, 10, "12 linear evaluations, one failed and one running");
    for (const r of done) {
      assert.equal(r.metrics.mmd, fixtureMmd(r.params as never));
      assert.equal(r.spreads.mmd, 0.002);
      assert.equal(r.params.nfe, r.params.sample_steps, "the recorded nfe joins the parameters");
      assert.equal(r.state, "done");
    }
    // By hand: linear, best over sampler and EMA; configuration 1 (10 steps, ddim raw) failed
    // and 2 (10 steps, ddpm 0.999) is running, so 10 steps has ddpm raw and ddim 0.999.
    const hand = (steps: number, candidates: [string, string][]) =>
      Math.min(
        ...candidates.map(([sampler, ema]) =>
          fixtureMmd({ sample_steps: steps, sampler, ema_eval: ema } as never)
        ),
      );
    const every: [string, string][] = [["ddpm", "raw"], ["ddpm", "0.999"], ["ddim", "raw"], [
      "ddim",
      "0.999",
    ]];
    const g = compareGrid(s.results, "schedule", "sample_steps", "mmd", true);
    assert.deepEqual(g.cells, [
      [hand(10, [["ddpm", "raw"], ["ddim", "0.999"]]), hand(50, every), hand(100, every)],
      [undefined, undefined, undefined],
    ]);
    const snap = (await new SweepReader(store).refresh())!;
    const dash = compareGrid(snap.rows, "schedule", "sample_steps", snap.metric, snap.minimize);
    assert.deepEqual(dash.cells, g.cells, "the dashboard and compare read the same grid");
    assert.match(
      (await noSweepError(store, "fixtur")).message,
      /no sweep named "fixtur" in the store \S+store\.sqlite \(did you mean "fixture"\?\) \(sweeps: fixture\)/,
    );
    await assert.rejects(sweepResults(store, "nope"), /no sweep named "nope"/);
  } finally {
    await store.close();
  }
});

Deno.test("run filters: key=value terms, every key and any of its values; errors name the term", () => {
  const params = ["schedule", "sample_steps", "sampler"];
  const terms = parseFilter("  schedule=cosine sampler=ddim  sampler=heun ", params);
  assert.deepEqual(terms, [
    { key: "schedule", value: "cosine" },
    { key: "sampler", value: "ddim" },
    { key: "sampler", value: "heun" },
  ]);
  const kept = A.filter((r) => matchesFilter(r.params, terms)).map((r) => A.indexOf(r));
  assert.deepEqual(kept, [5, 7], "cosine with ddim (heun is not in sweep a)");
  assert.deepEqual(
    A.filter((r) => matchesFilter(r.params, parseFilter("sample_steps=100", params)))
      .map((r) => A.indexOf(r)),
    [2, 3, 6, 7],
    "numbers match as shown",
  );
  assert.deepEqual(parseFilter("", params), []);
  assert.ok(A.every((r) => matchesFilter(r.params, [])));
  assert.throws(() => parseFilter("cosine", params), /^Error: "cosine" is not key=value/);
  assert.throws(
    () => parseFilter("shedule=cosine", params),
    /shedule is not a parameter \(did you mean "schedule"\?\) in "shedule=cosine" \(schedule, sample_steps, sampler\)/,
  );
});

Deno.test("evalSampleFiles: the evaluation's files in the store (CSV first), else its artifacts on this machine", async () => {
  const dir = Deno.makeTempDirSync();
  const store = await openStore(join(dir, "s.sqlite"));
  try {
    const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
    const stored = await store.ensureJob(sweep.id, "a", "eval", "{}", join(dir, "runs", "t"));
    const old = await store.ensureJob(sweep.id, "b", "eval", "{}", join(dir, "runs", "t"));
    fs.writeFileSync(join(dir, "a.png"), "png bytes");
    fs.writeFileSync(join(dir, "a.csv"), "x,y\n1,2\n");
    await store.putFile(stored.id, "samples/a.png", join(dir, "a.png"));
    await store.putFile(stored.id, "samples/a.csv", join(dir, "a.csv"));
    // A path recorded on another machine: not here, so not read; the store's copies are.
    await store.putArtifact(stored.id, "samples", "/elsewhere/runs/t/samples/a.csv");
    const got = await evalSampleFiles(store, stored.id);
    assert.deepEqual(got.map((f) => [f.name, new TextDecoder().decode(f.bytes)]), [
      ["samples/a.csv", "x,y\n1,2\n"],
      ["samples/a.png", "png bytes"],
    ]);
    // A store from before sample files were stored: the recorded paths that exist here.
    await store.putArtifact(old.id, "samples", join(dir, "a.csv"));
    await store.putArtifact(old.id, "samples", join(dir, "gone.png"));
    assert.deepEqual((await evalSampleFiles(store, old.id)).map((f) => f.name), [
      join(dir, "a.csv"),
    ]);
    // Nothing is looked for in the run's folder.
    fs.mkdirSync(join(dir, "runs", "t", "samples"), { recursive: true });
    fs.writeFileSync(join(dir, "runs", "t", "samples", "c.csv"), "x,y\n");
    const none = await store.ensureJob(sweep.id, "c", "eval", "{}", join(dir, "runs", "t"));
    assert.deepEqual(await evalSampleFiles(store, none.id), []);
  } finally {
    await store.close();
  }
});
