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
  // η = 1 with ddpm is left out (η applies to ddim and dpmpp2m_sde): 8 − 2.
  assert.equal(planSweep(e).eval.length, 6);
  assert.equal(planSweep(e).skipped.length, 2);
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

Deno.test("nested blocks reject unknown keys with suggestions, and check ranges", () => {
  const parse = (yaml: string) => () => parseExperiment(yaml, "nested.yaml");
  assert.throws(
    parse("model: ddpm\ndata: 8gaussians\nmetric: {name: mmd, gaol: minimize}\n"),
    /nested\.yaml: metric\.gaol: unknown key \(did you mean "goal"\?\)/,
  );
  assert.throws(
    parse(base + "early_terminate: {type: asha, min_itr: 100}\n"),
    /nested\.yaml: early_terminate\.min_itr: unknown key \(did you mean "min_iter"\?\)/,
  );
  assert.throws(
    parse(
      base +
        "method: random\nparameters:\n  lr: {distribution: log_uniform_value, min: 1, max: 2}\n",
    ),
    /parameters\.lr\.distribution: .*did you mean "log_uniform_values"/,
  );
  assert.throws(
    parse(
      base +
        "method: random\nparameters:\n  batch: {distribution: int_uniform, min: 8, max: 9.5}\n",
    ),
    /nested\.yaml: parameters\.batch\.max: must be an integer, got 9\.5/,
  );
  assert.throws(
    parse(
      base + "method: random\nparameters:\n  lr: {distribution: uniform, min: 0.1, max: 0.01}\n",
    ),
    /parameters\.lr: min 0\.1 is above max 0\.01/,
  );
  assert.throws(
    parse(base + "parameters:\n  schedule: {distribution: categorical, values: [linear, cosin]}\n"),
    /parameters\.schedule\.values\[1\]/,
  );
  assert.throws(
    parse(base + "parameters:\n  ema_eval: {values: [raw, fast]}\n"),
    /parameters\.ema_eval\.values\[1\]: must be "raw" or an EMA decay/,
  );
  assert.throws(
    parse(base + "max_failures: -1\n"),
    /nested\.yaml: max_failures: must be an integer/,
  );
});

Deno.test("one training job per schedule tracks the union of the EMA decays evaluated", () => {
  const e = parseExperiment(
    base + "parameters:\n  schedule: {values: [linear, cosine]}\n" +
      '  ema_eval: {values: [raw, 0.99, "0.9999"]}\n  sample_steps: {values: [10, 100]}\n' +
      "  steps: {values: [100, 300]}\n",
    "e.yaml",
  );
  const plan = planSweep(e);
  assert.equal(plan.configs.length, 24);
  assert.equal(plan.naiveTrain, 24);
  assert.equal(plan.train.length, 2, "steps, EMA and sampling steps share one run per schedule");
  assert.equal(plan.eval.length, 24);
  for (const t of plan.train) {
    assert.deepEqual(t.config.ema, [0.99, 0.999, 0.9999], "default 0.999 plus the evaluated ones");
    assert.equal(t.config.steps, 300);
    assert.deepEqual(t.config.checkpoint_at, [100]);
  }
  const mnist = planSweep(loadExperiment("experiments/mnist.yaml").experiment);
  assert.equal(mnist.train.length, 2);
  assert.equal(mnist.eval.length, mnist.configs.length);
  assert.deepEqual(mnist.eval[0].metrics, ["fid"]);
  // The samplers experiments: each objective trained once, sampled by what it takes.
  const toy = planSweep(loadExperiment("experiments/samplers.yaml").experiment);
  assert.deepEqual([toy.train.length, toy.eval.length, toy.skipped.length], [5, 105, 95]);
  const digits = planSweep(loadExperiment("experiments/samplers_mnist.yaml").experiment);
  assert.deepEqual([digits.train.length, digits.eval.length], [4, 42]);
  assert.ok(
    digits.configs.every((c) => c.params.objective !== "flow" || c.params.sampler !== "ddim"),
  );
});

Deno.test("random draws repeat for a seed_sweep and change with it", () => {
  const draw = (seed: number) =>
    planSweep(parseExperiment(
      base +
        `method: random\nrun_cap: 4\nseed_sweep: ${seed}\nparameters:\n` +
        "  lr: {distribution: uniform, min: 0.001, max: 0.01}\n" +
        "  batch: {distribution: int_uniform, min: 16, max: 64}\n" +
        "  schedule: {distribution: categorical, values: [linear, cosine]}\n",
      "e.yaml",
    )).configs.map((c) => c.params);
  assert.deepEqual(draw(1), draw(1));
  assert.notDeepEqual(draw(1), draw(2));
  for (const p of draw(3)) {
    assert.ok(Number.isInteger(p.batch) && (p.batch as number) >= 16 && (p.batch as number) <= 64);
    assert.ok(p.schedule === "linear" || p.schedule === "cosine");
  }
});

Deno.test("a number out of its key's range fails at parse time, naming file and key path", () => {
  assert.throws(
    () => parseExperiment(base + "steps: -10\n", "exp.yaml"),
    /exp\.yaml: steps: must be an integer ≥ 1 \(training steps\), got -10/,
  );
  assert.throws(
    () => parseExperiment(base + "lr: .nan\n", "exp.yaml"),
    /exp\.yaml: lr: must be a number ≥ 0/,
  );
  assert.throws(
    () => parseExperiment(base + "parameters:\n  batch:\n    values: [64, 0.5]\n", "exp.yaml"),
    /exp\.yaml: parameters\.batch\.values\[1\]: must be an integer ≥ 0/,
  );
});

Deno.test("a data file that does not exist fails at parse time, before any job", () => {
  assert.throws(
    () =>
      parseExperiment(
        "name: t\nmodel: tabddpm\ndata: /nonexistent/table.csv\n",
        "exp.yaml",
      ),
    /exp\.yaml: data: \/nonexistent\/table\.csv: no such CSV file/,
  );
});

Deno.test("an integer key cannot be drawn from a continuous distribution", () => {
  assert.throws(
    () =>
      parseExperiment(
        base +
          "method: random\nparameters:\n  steps: {distribution: uniform, min: 100, max: 200}\n",
        "exp.yaml",
      ),
    /exp\.yaml: parameters\.steps\.distribution: steps takes integers: use int_uniform, not uniform/,
  );
});

Deno.test("evaluation keys are range-checked too", () => {
  assert.throws(
    () => parseExperiment(base + "eta: -1\n", "exp.yaml"),
    /exp\.yaml: eta: must be a number ≥ 0 \(η of ddim and dpmpp2m_sde\), got -1/,
  );
  assert.throws(
    () => parseExperiment(base + "parameters:\n  sample_steps: {values: [10, 2.5]}\n", "exp.yaml"),
    /parameters\.sample_steps\.values\[1\]: must be an integer ≥ 0/,
  );
});

Deno.test("hyperband, which is not implemented, is refused rather than run as ASHA", () => {
  assert.throws(
    () => parseExperiment(base + "early_terminate: {type: hyperband}\n", "exp.yaml"),
    /exp\.yaml: early_terminate\.type: hyperband \(several brackets of ASHA\) is not implemented; asha is/,
  );
});
