/**
 * The Gaussian process's formulas against float64 computations written out
 * here: the forward sample, the three objectives' targets and their round
 * trips back to x0 and ε, the posterior, and min-SNR-γ weights.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  epsFromX0,
  GaussianDiffusion,
  minSnrWeight,
  type Objective,
  predictX0,
  qSampleWith,
  targetFor,
} from "../../lib/diffusion/gaussian.ts";
import { makeSchedule } from "../../lib/diffusion/schedules.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("cpu");

const X0 = [0.8, -0.3, 1.5, 0];
const EPS = [0.1, 2, -1.2, 0.7];

Deno.test("q(x_t | x0) and each objective's target and round trip, in float64", () => {
  for (const a of [0.999, 0.5, 0.01]) {
    tf.tidy(() => {
      const x0 = tf.tensor1d(X0), eps = tf.tensor1d(EPS);
      const xt = qSampleWith(x0, eps, a);
      const want = X0.map((x, i) => Math.sqrt(a) * x + Math.sqrt(1 - a) * EPS[i]);
      xt.dataSync().forEach((v, i) => assertClose(v, want[i], 1e-6, 0, `x_t[${i}] at ᾱ=${a}`));
      for (const objective of ["eps", "x0", "v"] as Objective[]) {
        const target = targetFor(objective, x0, eps, a);
        const t64 = objective === "eps"
          ? EPS
          : objective === "x0"
          ? X0
          : EPS.map((e, i) => Math.sqrt(a) * e - Math.sqrt(1 - a) * X0[i]);
        target.dataSync().forEach((v, i) => assertClose(v, t64[i], 1e-6, 0, `${objective} target`));
        // A network that outputs the exact target recovers x0, and ε from that x0.
        const x0Hat = predictX0(objective, target, xt, a);
        x0Hat.dataSync().forEach((v, i) =>
          assertClose(v, X0[i], 2e-4 / Math.sqrt(a), 0, `${objective}: x0 back at ᾱ=${a}`)
        );
        const epsHat = epsFromX0(x0Hat, xt, a);
        epsHat.dataSync().forEach((v, i) =>
          assertClose(v, EPS[i], 2e-4 / Math.sqrt(a * (1 - a)), 0, `${objective}: ε back at ᾱ=${a}`)
        );
      }
    });
  }
});

Deno.test("the posterior q(x_{t−1} | x_t, x0) is the Gaussian of Ho et al.'s eq. 7", () => {
  const schedule = makeSchedule({ kind: "linear", T: 100 });
  const process = new GaussianDiffusion(schedule);
  const t = Int32Array.of(0, 1, 50, 99);
  const x0 = tf.tensor2d([X0, X0, X0, X0]), xt = tf.tensor2d([EPS, EPS, EPS, EPS]);
  const { mean, variance } = process.posterior(x0, xt, t);
  const m = mean.arraySync() as number[][], v = variance.arraySync() as number[][];
  t.forEach((ti, r) => {
    const ab = schedule.alphasCumprod[ti];
    const abPrev = ti === 0 ? 1 : schedule.alphasCumprod[ti - 1];
    const beta = 1 - ab / abPrev;
    const c1 = Math.sqrt(abPrev) * beta / (1 - ab);
    const c2 = Math.sqrt(1 - beta) * (1 - abPrev) / (1 - ab);
    X0.forEach((x, i) => assertClose(m[r][i], c1 * x + c2 * EPS[i], 1e-5, 1e-5, `mean t=${ti}`));
    assertClose(v[r][0], (1 - abPrev) / (1 - ab) * beta, 1e-7, 1e-4, `variance t=${ti}`);
  });
  tf.dispose([x0, xt, mean, variance]);
});

Deno.test("min-SNR-γ weights: min(SNR, γ) divided by the objective's own SNR factor", () => {
  for (const ab of [0.999, 0.9, 0.5, 0.1, 0.001]) {
    const snr = ab / (1 - ab);
    const c = Math.min(snr, 5);
    assertClose(minSnrWeight("eps", ab), c / snr, 1e-12, 1e-12, `eps at ᾱ=${ab}`);
    assertClose(minSnrWeight("x0", ab), c, 1e-12, 1e-12, `x0 at ᾱ=${ab}`);
    assertClose(minSnrWeight("v", ab), c / (snr + 1), 1e-12, 1e-12, `v at ᾱ=${ab}`);
  }
  // Where SNR ≤ γ, ε-prediction is unweighted: 1.
  assert.equal(minSnrWeight("eps", 0.5), 1);
  const process = new GaussianDiffusion(makeSchedule({ kind: "cosine", T: 50 }), "v");
  const w = process.weights(Int32Array.of(0, 25, 49), { weighting: "minsnr", gamma: 2 });
  [0, 25, 49].forEach((t, i) => {
    const ab = process.schedule.alphasCumprod[t];
    assertClose(w[i], minSnrWeight("v", ab, 2), 1e-6, 1e-6, `weights()[${t}]`);
  });
  assert.deepEqual([...process.weights(Int32Array.of(3, 4))], [1, 1], "no weighting: ones");
});
