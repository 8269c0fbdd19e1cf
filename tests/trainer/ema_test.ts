/** EMAs: several decays in one run, the warmup formula, and updates against a hand computation. */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { emaDecayAt, EmaSet } from "../../lib/trainer/ema.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("cpu");

Deno.test("warmup decay is min(d, 1 − (1 + step/γ)^−p), never below 0; none without warmup", () => {
  const warmup = { gamma: 1, power: 2 / 3 };
  for (const step of [0, 1, 10, 1000, 1e6]) {
    const want = Math.max(0, Math.min(0.999, 1 - (1 + step) ** (-2 / 3)));
    assertClose(emaDecayAt(0.999, step, warmup), want, 1e-15, 0, `step ${step}`);
  }
  assert.equal(emaDecayAt(0.999, 0, warmup), 0, "the first update copies the parameters");
  assert.equal(emaDecayAt(0.999, 1e6, warmup), 0.999, "capped at the decay");
  assert.equal(emaDecayAt(0.9, 0), 0.9, "no warmup");
});

Deno.test("each decay's average follows ema ← d·ema + (1 − d)·p", async () => {
  const p = { w: tf.variable(tf.tensor1d([1, -2])) };
  const emas = new EmaSet(p, [0.5, 0.9]);
  const hand = { "0.5": [1, -2], "0.9": [1, -2] };
  const values = [[3, 0], [-1, 4], [2, 2]];
  values.forEach((v, step) => {
    p.w.assign(tf.tensor1d(v));
    emas.update(p, step);
    for (const d of [0.5, 0.9]) {
      const h = hand[String(d) as "0.5" | "0.9"];
      h.forEach((x, i) => (h[i] = d * x + (1 - d) * v[i]));
    }
  });
  for (const d of ["0.5", "0.9"] as const) {
    const got = await emas.averages.get(d)!.w.data();
    got.forEach((x, i) => assertClose(x, hand[d][i], 1e-6, 0, `ema ${d}[${i}]`));
  }
  emas.dispose();
  p.w.dispose();
});
