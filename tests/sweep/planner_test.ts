/**
 * The planner: evaluation-only keys never add a training job, configurations
 * that differ only in steps share the longest run (checkpointed at each step),
 * EMA decays are tracked for every evaluation that asks, and keys are stable.
 */
import assert from "node:assert/strict";
import { parseExperiment } from "../../lib/sweep/experiment.ts";
import { describePlan, planSweep, stableKey } from "../../lib/sweep/planner.ts";

const plan = (yaml: string) =>
  planSweep(parseExperiment("name: p\nmodel: ddpm\ndata: 8gaussians\n" + yaml, "p.yaml"));

Deno.test("sampling keys share one training job; each configuration gets its own evaluation", () => {
  const p = plan(
    "parameters:\n  sampler: {values: [ddpm, ddim]}\n  sample_steps: {values: [10, 50, 100]}\n",
  );
  assert.equal(p.configs.length, 6);
  assert.equal(p.train.length, 1);
  assert.equal(p.naiveTrain, 6);
  assert.equal(p.eval.length, 6);
  assert.equal(new Set(p.configs.map((c) => c.evalKey)).size, 6);
  assert.ok(p.configs.every((c) => c.trainKey === p.train[0].key));
  assert.deepEqual(Object.keys(p.configs[0].varying).sort(), ["sample_steps", "sampler"]);
});

Deno.test("steps alone share the longest run, checkpointed and evaluated at each step", () => {
  const p = plan(
    "parameters:\n  steps: {values: [500, 2000, 1000]}\n  lr: {values: [0.001, 0.002]}\n",
  );
  assert.equal(p.train.length, 2, "one per lr");
  for (const t of p.train) {
    assert.equal(t.config.steps, 2000);
    // The last step is always checkpointed; the others are pinned.
    assert.deepEqual(
      [...(t.config.checkpoint_at as number[])].sort((a, b) => a - b),
      [500, 1000],
    );
  }
  assert.deepEqual(
    [...new Set(p.eval.map((e) => e.checkpoint))].sort((a, b) => a - b),
    [500, 1000, 2000],
  );
});

Deno.test("every EMA decay an evaluation samples with is tracked by its training job", () => {
  const p = plan("ema: [0.99]\nparameters:\n  ema_eval: {values: [raw, 0.999, 0.9999]}\n");
  assert.equal(p.train.length, 1);
  assert.deepEqual(
    [...(p.train[0].config.ema as number[])].sort(),
    [0.99, 0.999, 0.9999],
  );
});

Deno.test("stable keys do not depend on key order and change with any value", () => {
  assert.equal(
    stableKey({ a: 1, b: [1, { c: 2, d: 3 }] }),
    stableKey({ b: [1, { d: 3, c: 2 }], a: 1 }),
  );
  assert.notEqual(stableKey({ a: 1 }), stableKey({ a: 2 }));
  assert.match(stableKey("x"), /^[0-9a-f]{12}$/);
  assert.deepEqual(
    plan("steps: 100\n").train.map((t) => t.key),
    plan("steps: 100\n").train.map((t) => t.key),
  );
});

Deno.test("grid points the model refuses are left out, each reason counted in the dry run", () => {
  const p = plan(
    "parameters:\n  objective: {values: [eps, v, flow]}\n  zero_snr: {values: [false, true]}\n" +
      "  sampler: {values: [ddim, heun]}\n",
  );
  // eps, v, v+zero_snr take both samplers; flow takes heun only; eps+zero_snr and flow+zero_snr none.
  assert.equal(p.configs.length, 7);
  assert.equal(p.train.length, 4);
  assert.equal(p.skipped.length, 5);
  const text = describePlan(p);
  assert.match(text, /left out 2 configurations: zero_snr=true needs objective=v/);
  assert.match(
    text,
    /left out 2 configurations: zero_snr applies to the schedule-based objectives/,
  );
  assert.match(
    text,
    /left out 1 configuration: sampler=ddim does not apply to objective=flow \(samplers: euler, heun\)/,
  );
  assert.throws(
    () => plan("parameters:\n  objective: {values: [flow]}\n  sampler: {values: [ddim]}\n"),
    /p.yaml: model ddpm refuses every configuration: sampler=ddim does not apply/,
  );
});
