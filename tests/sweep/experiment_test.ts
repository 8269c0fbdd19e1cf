import assert from "node:assert/strict";
import { loadExperiment, parseExperiment } from "../../lib/sweep/experiment.ts";
import { planSweep } from "../../lib/sweep/planner.ts";

const base = `
name: t
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
`;

Deno.test("an unknown key names the file and key path and suggests the nearest valid key", () => {
  assert.throws(
    () => parseExperiment(base + "schedul: cosine\n", "exp.yaml"),
    /exp\.yaml: schedul: unknown key "schedul" \(did you mean "schedule"\?\)/,
  );
  assert.throws(
    () => parseExperiment(base + "parameters:\n  sample_step:\n    values: [10, 20]\n", "exp.yaml"),
    /exp\.yaml: parameters\.sample_step: unknown key "sample_step" \(did you mean "sample_steps"\?\)/,
  );
  assert.throws(
    () => parseExperiment(base + "parameters:\n  schedule:\n    vlues: [linear]\n", "exp.yaml"),
    /parameters\.schedule\.vlues: unknown key \(did you mean "values"\?\)/,
  );
});

Deno.test("a wrong type or choice names the key path down to the list item", () => {
  assert.throws(
    () =>
      parseExperiment(
        base + "parameters:\n  sample_steps:\n    values: [10, 25, fifty]\n",
        "e.yaml",
      ),
    /e\.yaml: parameters\.sample_steps\.values\[2\]: must be a number/,
  );
  assert.throws(
    () =>
      parseExperiment(base + "parameters:\n  schedule:\n    values: [linear, cosin]\n", "e.yaml"),
    /parameters\.schedule\.values\[1\]: .*must be one of linear, cosine, sigmoid.*did you mean "cosine"/,
  );
  assert.throws(
    () => parseExperiment(base + "steps: lots\n", "e.yaml"),
    /e\.yaml: steps: .*must be a number/,
  );
  assert.throws(
    () => parseExperiment("model: nope\ndata: x\n", "e.yaml"),
    /e\.yaml: model: unknown model "nope"/,
  );
  assert.throws(
    () => parseExperiment("model: ddpm\ndata: [x\n", "e.yaml"),
    /e\.yaml: not valid YAML/,
  );
  assert.throws(
    () => loadExperiment("experiments/missing.yaml"),
    /experiments\/missing\.yaml: no such experiment file/,
  );
});

Deno.test("the default experiment plans 2 training jobs for 72 configurations", () => {
  const { experiment } = loadExperiment("experiments/default.yaml");
  const plan = planSweep(experiment);
  assert.equal(plan.configs.length, 72);
  assert.equal(plan.naiveTrain, 72);
  assert.equal(plan.train.length, 2);
  assert.equal(plan.eval.length, 72);
  for (const t of plan.train) assert.deepEqual(t.config.ema, [0.99, 0.999]);
  assert.deepEqual(
    new Set(plan.train.map((t) => t.config.schedule)),
    new Set(["linear", "cosine"]),
  );
});

Deno.test("sampling-only keys never add training jobs; training keys do", () => {
  const e = parseExperiment(
    base +
      "parameters:\n  sampler: {values: [ddpm, ddim]}\n  eta: {values: [0, 1]}\n  clip: {values: [none, static]}\n",
    "e.yaml",
  );
  assert.equal(planSweep(e).train.length, 1);
  assert.equal(planSweep(e).eval.length, 8);
  const f = parseExperiment(
    base + "parameters:\n  lr: {values: [0.001, 0.002]}\n  sampler: {values: [ddpm, ddim]}\n",
    "e.yaml",
  );
  assert.equal(planSweep(f).train.length, 2);
});

Deno.test("a sweep over training steps evaluates checkpoints of one longer run", () => {
  const e = parseExperiment(base + "parameters:\n  steps: {values: [500, 1000, 2000]}\n", "e.yaml");
  const plan = planSweep(e);
  assert.equal(plan.train.length, 1);
  assert.equal(plan.train[0].config.steps, 2000);
  assert.deepEqual(plan.train[0].config.checkpoint_at, [500, 1000]);
  assert.deepEqual(plan.eval.map((ev) => ev.checkpoint).sort((a, b) => a - b), [500, 1000, 2000]);
});

Deno.test("random search draws run_cap configurations from the distributions", () => {
  const e = parseExperiment(
    base +
      "method: random\nrun_cap: 5\nparameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.01}\n",
    "e.yaml",
  );
  const plan = planSweep(e);
  assert.equal(plan.configs.length, 5);
  for (const c of plan.configs) {
    assert.ok((c.params.lr as number) >= 0.0001 && (c.params.lr as number) <= 0.01);
  }
  assert.throws(
    () =>
      parseExperiment(
        base + "parameters:\n  lr: {distribution: uniform, min: 0, max: 1}\n",
        "e.yaml",
      ),
    /a distribution needs method: random/,
  );
});
