/**
 * Layers with hand-written gradients (and wasm kernels) against the same
 * formula differentiated by tfjs, and the forward pass against a float64 loop.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { groupNorm, groupNormSilu, noGradient } from "../../lib/network/layers.ts";
import { GROUP_NORM } from "../../lib/runtime/kernels/group_norm.ts";
import { hasKernel, installerOf } from "../../lib/runtime/kernels/install.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { useBackend } from "../helpers.ts";

await useBackend("wasm");

/** GroupNorm as plain differentiable ops, the reference for the custom gradient. */
function groupNormByOps(x: tf.Tensor4D, g: tf.Tensor, b: tf.Tensor, groups: number): tf.Tensor {
  const [B, H, W, C] = x.shape;
  const grouped = tf.reshape(x, [B, H * W, groups, C / groups]);
  const { mean, variance } = tf.moments(grouped, [1, 3], true);
  const normed = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, 1e-5)));
  return tf.add(tf.mul(tf.reshape(normed, x.shape), g), b);
}

function normal(shape: number[], rng: Rng, scale = 1, shift = 0): tf.Tensor {
  const v = new Float32Array(shape.reduce((p, q) => p * q, 1));
  for (let i = 0; i < v.length; i++) v[i] = shift + scale * rng.normal();
  return tf.tensor(v, shape);
}

function maxRelErr(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync(), y = b.dataSync();
  let err = 0, scale = 1e-6;
  for (let i = 0; i < y.length; i++) {
    err = Math.max(err, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return err / scale;
}

const CASES: [number[], number][] = [[[2, 5, 3, 8], 4], [[3, 4, 4, 6], 2], [[1, 7, 7, 4], 4]];
const silu64 = (y: number) => y / (1 + Math.exp(-y));

// wasm and onednn run the project kernels (lib/runtime/kernels/group_norm.ts;
// onednn with its SiLU kernel after them), cpu the tf ops with the
// closed-form gradient; all against the same references.
for (const backend of ["wasm", "onednn", "cpu"] as const) {
  for (const [shape, groups] of CASES) {
    for (const withSilu of [false, true]) {
      const what = withSilu ? "groupNormSilu" : "groupNorm";
      Deno.test(
        `${backend} ${what} ${shape} / ${groups} groups: value in float64, gradients as autodiff`,
        async () => {
          await useBackend(backend);
          assert.equal(hasKernel(GROUP_NORM), backend !== "cpu");
          if (backend !== "cpu") assert.equal(installerOf(GROUP_NORM, "wasm"), "project");
          const layer = withSilu ? groupNormSilu : groupNorm;
          const rng = new Rng(shape.reduce((p, q) => p * 31 + q, groups));
          const C = shape[3];
          const x = normal([...shape], rng, 2, 0.5) as tf.Tensor4D;
          const w = { "n.g": normal([C], rng, 0.5, 1), "n.b": normal([C], rng, 0.3) };
          const r = normal([...shape], rng); // a fixed weighting of the outputs
          const before = tf.memory().numTensors;

          const y = tf.tidy(() => layer(w, "n", x, groups).dataSync());
          const xs = x.dataSync(), gs = w["n.g"].dataSync(), bs = w["n.b"].dataSync();
          const [B, H, W] = shape, cg = C / groups;
          for (let b = 0; b < B; b++) {
            for (let g = 0; g < groups; g++) {
              const idx: number[] = [];
              for (let p = 0; p < H * W; p++) {
                for (let c = 0; c < cg; c++) idx.push((b * H * W + p) * C + g * cg + c);
              }
              const mean = idx.reduce((s, i) => s + xs[i], 0) / idx.length;
              const v = idx.reduce((s, i) => s + (xs[i] - mean) ** 2, 0) / idx.length;
              for (const i of idx) {
                const affine = (xs[i] - mean) / Math.sqrt(v + 1e-5) * gs[i % C] + bs[i % C];
                const want = withSilu ? silu64(affine) : affine;
                assert.ok(Math.abs(y[i] - want) < 1e-4, `y[${i}] = ${y[i]}, float64 ${want}`);
              }
            }
          }

          const byOps = (x: tf.Tensor4D, g: tf.Tensor, b: tf.Tensor) => {
            const y = groupNormByOps(x, g, b, groups);
            return withSilu ? tf.mul(y, tf.sigmoid(y)) : y;
          };
          const loss = (f: typeof byOps) => (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(f(x as tf.Tensor4D, g, b), r));
          const custom = tf.grads(loss((x, g, b) => layer({ "n.g": g, "n.b": b }, "n", x, groups)))(
            [x, w["n.g"], w["n.b"]],
          );
          const reference = tf.grads(loss(byOps))([x, w["n.g"], w["n.b"]]);
          ["x", "γ", "β"].forEach((name, i) => {
            const e = maxRelErr(custom[i], reference[i]);
            assert.ok(e < 1e-4, `d${name}: relative error ${e}`);
          });
          tf.dispose([...custom, ...reference]);
          assert.equal(tf.memory().numTensors, before, "value and gradient free what they make");
          tf.dispose([x, r, ...Object.values(w)]);
        },
      );
    }
  }
}

Deno.test("noGradient: the value passes, the gradient through it is zero (stop_gradient)", () => {
  const w = tf.variable(tf.tensor1d([1, 2, 3]));
  // loss = Σ w · sg(w²): d/dw = sg(w²) = w², not 3w² as without the stop.
  const { grads, value } = tf.variableGrads(() =>
    tf.sum(tf.mul(w, noGradient(() => tf.square(w), w))) as tf.Scalar
  );
  assert.equal(value.dataSync()[0], 1 + 8 + 27);
  assert.deepEqual(Array.from(grads[w.name].dataSync()), [1, 4, 9]);
  const { grads: plain } = tf.variableGrads(() => tf.sum(tf.mul(w, tf.square(w))) as tf.Scalar);
  assert.deepEqual(Array.from(plain[w.name].dataSync()), [3, 12, 27]);
  tf.dispose([w, value, ...Object.values(grads), ...Object.values(plain)]);
});
