import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { resolveConfig } from "../../lib/models/config.ts";
import { TabDdpm, TABDDPM_KEYS, type TableFeatures } from "../../lib/models/tabddpm.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { trainStep } from "../../lib/trainer/trainer.ts";
import { Adam } from "../../lib/trainer/optim.ts";
import { useBackend } from "../helpers.ts";

await useBackend("wasm");

/** A small synthetic table: two numeric columns, two categorical ones, a class target. */
function toyFeatures(n: number): TableFeatures {
  const rng = new Rng(5);
  const xNum = new Float32Array(n * 2);
  const xCat = new Int32Array(n * 2);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = rng.int(2);
    xNum[2 * i] = rng.normal() + y[i];
    xNum[2 * i + 1] = rng.normal();
    xCat[2 * i] = y[i] === 0 ? 0 : 1 + rng.int(2);
    xCat[2 * i + 1] = rng.int(2);
  }
  return {
    header: ["a", "b", "c", "d", "y"],
    n,
    numeric: [{ name: "a", integer: false, min: -5, max: 5 }, {
      name: "b",
      integer: true,
      min: -3,
      max: 3,
    }],
    xNum,
    categorical: [{ name: "c", categories: ["x", "y", "z"] }, {
      name: "d",
      categories: ["p", "q"],
    }],
    xCat,
    target: { feature: { name: "y", categories: ["no", "yes"] }, y },
    decode: (num, cat, yy, m) =>
      Array.from(
        { length: m },
        (
          _,
          i,
        ) => [
          num[2 * i],
          num[2 * i + 1],
          ["x", "y", "z"][cat[2 * i]],
          ["p", "q"][cat[2 * i + 1]],
          ["no", "yes"][yy![i]],
        ],
      ),
  };
}

Deno.test("training steps and sampling keep numTensors constant", async () => {
  const config = {
    model: "tabddpm",
    data: "toy",
    ...resolveConfig(TABDDPM_KEYS, { T: 50, batch: 64, d_layers: [32, 32] }),
  };
  const model = new TabDdpm(config, toyFeatures(200));
  const rng = new Rng(1);
  const init = model.init(rng);
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(init)) params[k] = tf.variable(t, true, `tabddpm-test/${k}`);
  tf.dispose(Object.values(init));
  const adam = new Adam(params, { kind: "adam", weightDecay: 0 });
  const counts: number[] = [];
  for (let step = 0; step < 6; step++) {
    const r = trainStep(model, params, adam, rng, step, 1e-3, 1);
    assert.ok(Number.isFinite(r.loss.dataSync()[0]));
    tf.dispose([r.loss, r.perSample, ...(r.gradNorm ? [r.gradNorm] : [])]);
    counts.push(tf.memory().numTensors);
  }
  assert.ok(counts.every((c) => c === counts[0]), `numTensors over steps: ${counts.join(", ")}`);
  const before = tf.memory().numTensors;
  const out = await model.sample(params, { n: 10, steps: 10 }, new Rng(2));
  assert.equal(tf.memory().numTensors, before);
  assert.equal(out.kind, "table");
  if (out.kind === "table") assert.equal(out.rows.length, 10);
  adam.dispose();
  tf.dispose(Object.values(params));
  model.dispose();
});
