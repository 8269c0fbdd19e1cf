/**
 * Adam and AdamW against a hand computation in float64, on wasm (the fused
 * kernel, lib/runtime/kernels/adam.ts) and on cpu (tf ops), within 1e-5 relative: both
 * store float32, and the ops round after each of a dozen steps.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ADAM } from "../../lib/runtime/kernels/adam.ts";
import { hasKernel } from "../../lib/runtime/kernels/install.ts";
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

// Two parameters updated (one kernel call for both where the backend has it) and a third without a gradient.
const U0 = [0.3, -0.7, 1.5, -2];
const UGRADS = [[1, 0.5, -0.25, 2], [0, -1, 0.75, 2], [0.3, 0.3, 0.3, -4]];

for (const backend of ["wasm", "cpu"] as const) {
  for (const kind of ["adam", "adamw"] as const) {
    Deno.test(`${kind} on ${backend} matches the textbook update over three steps`, async () => {
      await useBackend(backend);
      assert.equal(hasKernel(ADAM), backend === "wasm", "wasm runs the fused kernel");
      const params = {
        w: tf.variable(tf.tensor1d(P0)),
        u: tf.variable(tf.tensor2d(U0, [2, 2])),
        frozen: tf.variable(tf.tensor1d([7, 8])),
      };
      const adam = new Adam(params, { kind, weightDecay: 0.1 });
      const before = tf.memory().numTensors;
      for (const [k, g] of GRADS.entries()) {
        const grads = { w: tf.tensor1d(g), u: tf.tensor2d(UGRADS[k], [2, 2]) };
        adam.apply(params, grads, 0.01);
        tf.dispose(Object.values(grads));
      }
      assert.equal(tf.memory().numTensors, before, "an update leaves no tensors behind");
      for (const [name, p0, grads] of [["w", P0, GRADS], ["u", U0, UGRADS]] as const) {
        const want = reference([...p0], grads.map((g) => [...g]), 0.01, kind, 0.1);
        const got = {
          p: [...await params[name].data()],
          m: [...await adam.moments[`m/${name}`].data()],
          v: [...await adam.moments[`v/${name}`].data()],
        };
        for (const key of ["p", "m", "v"] as const) {
          got[key].forEach((x, i) => {
            const w = want[key][i];
            assert.ok(
              Math.abs(x - w) <= 1e-5 * Math.abs(w) + 1e-8,
              `${name} ${key}[${i}] ${x} vs ${w}`,
            );
          });
        }
      }
      assert.deepEqual([...await params.frozen.data()], [7, 8], "no gradient, no update");
      adam.dispose();
      Object.values(params).forEach((p) => p.dispose());
    });
  }
}
