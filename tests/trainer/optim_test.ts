/**
 * Adam and AdamW against a hand computation in float64, on wasm (the fused
 * kernel, lib/runtime/kernels/adam.ts) and on cpu (tf ops), within 1e-5 relative: both
 * store float32, and the ops round after each of a dozen steps.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { hasAdamKernel } from "../../lib/runtime/kernels/adam.ts";
import { Adam } from "../../lib/trainer/optim.ts";
import { useBackend } from "../helpers.ts";

/** Three steps of Adam by the textbook formulas (Kingma & Ba; Loshchilov & Hutter for AdamW). */
function reference(
  p0: number[],
  grads: number[][],
  lr: number,
  kind: "adam" | "adamw",
  wd: number,
) {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const p = [...p0], m = p0.map(() => 0), v = p0.map(() => 0);
  grads.forEach((g, step) => {
    const t = step + 1;
    for (let i = 0; i < p.length; i++) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2;
      const mHat = m[i] / (1 - b1 ** t), vHat = v[i] / (1 - b2 ** t);
      const decayed = kind === "adamw" ? p[i] - lr * wd * p[i] : p[i];
      p[i] = decayed - lr * mHat / (Math.sqrt(vHat) + eps);
    }
  });
  return { p, m, v };
}

const P0 = [0.5, -1.25, 2, 0, 1e-3];
const GRADS = [[0.1, -0.2, 0.3, 0, 5], [-0.1, 0.05, 0.3, 1e-4, -5], [0.2, 0.2, -0.3, 0, 0.5]];

for (const backend of ["wasm", "cpu"] as const) {
  for (const kind of ["adam", "adamw"] as const) {
    Deno.test(`${kind} on ${backend} matches the textbook update over three steps`, async () => {
      await useBackend(backend);
      assert.equal(hasAdamKernel(), backend === "wasm", "wasm runs the fused kernel");
      const params = { w: tf.variable(tf.tensor1d(P0)) };
      const adam = new Adam(params, { kind, weightDecay: 0.1 });
      const before = tf.memory().numTensors;
      for (const g of GRADS) {
        const grad = tf.tensor1d(g);
        adam.apply(params, { w: grad }, 0.01);
        grad.dispose();
      }
      assert.equal(tf.memory().numTensors, before, "an update leaves no tensors behind");
      const want = reference(P0, GRADS, 0.01, kind, 0.1);
      const got = {
        p: [...await params.w.data()],
        m: [...await adam.moments["m/w"].data()],
        v: [...await adam.moments["v/w"].data()],
      };
      for (const key of ["p", "m", "v"] as const) {
        got[key].forEach((x, i) => {
          const w = want[key][i];
          assert.ok(Math.abs(x - w) <= 1e-5 * Math.abs(w) + 1e-8, `${key}[${i}] ${x} vs ${w}`);
        });
      }
      adam.dispose();
      params.w.dispose();
    });
  }
}
