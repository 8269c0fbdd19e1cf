import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { runReverse } from "../../lib/diffusion/reverse.ts";
import { eulerMaruyama, priorMismatch, VeSde } from "../../lib/diffusion/score_sde.ts";
import { makeSigmaSampler } from "../../lib/diffusion/sigma.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd, useBackend } from "../helpers.ts";

await useBackend("wasm");

/** The seed's formula, written as it is there: sqrt(1 − cos²((t + 0.008)/1.008 · π/2)). */
function seedSigma(t: number): number {
  return Math.sqrt(1 - Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2);
}

Deno.test("σ(t) matches the seed's formula and the sigmaMax rescaling", () => {
  const sde = new VeSde();
  const big = new VeSde({ sigmaMax: 5 });
  for (const t of [0, 1e-3, 0.1, 0.37, 0.5, 0.9, 1]) {
    assertClose(sde.sigma(t), seedSigma(t), 1e-12, 0, `σ(${t})`);
    assertClose(big.sigma(t), 5 * seedSigma(t) / seedSigma(1), 1e-12, 0, `5σ(${t})`);
  }
  assertClose(sde.sigma(1), 1, 1e-12);
  assertClose(sde.sigma(0), Math.sin(0.008 / 1.008 * Math.PI / 2), 1e-12);
  const ts = [0.001, 0.25, 0.5, 1];
  const got = big.sigmaOf(tf.tensor1d(ts));
  Array.from(got.dataSync()).forEach((v, i) => assertClose(v, big.sigma(ts[i]), 1e-5, 1e-5));
  got.dispose();
});

Deno.test("g(t)² is the derivative of σ(t)² (central differences)", () => {
  for (const sigmaMax of [1, 3]) {
    const sde = new VeSde({ sigmaMax });
    for (const t of [0.001, 0.05, 0.3, 0.5, 0.8, 0.99, 1]) {
      const h = 1e-6;
      const fd = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h);
      assertClose(sde.g2(t), fd, 1e-6, 1e-6, `g²(${t}) at σmax ${sigmaMax}`);
    }
  }
  assertClose(new VeSde().g2(1), 0, 1e-12, 0, "the schedule is flat at t = 1");
});

Deno.test("perturb, the DSM loss and the score agree with a direct computation", () => {
  const sde = new VeSde({ sigmaMax: 2 });
  const rng = new Rng(3);
  const B = 3, D = 4;
  const x0 = rng.normalArray(B * D), eps = rng.normalArray(B * D), out = rng.normalArray(B * D);
  const times = [0.01, 0.5, 0.97];
  const t = tf.tensor1d(times);
  const shape = [B, 2, 2, 1];
  const xt = sde.perturb(tf.tensor(x0, shape), t, tf.tensor(eps, shape)).dataSync();
  const loss = sde.dsmPerSample(tf.tensor(out, shape), tf.tensor(eps, shape)).dataSync();
  const score = sde.scoreFromOutput(tf.tensor(out, shape), t).dataSync();
  for (let b = 0; b < B; b++) {
    const s = 2 * seedSigma(times[b]);
    let want = 0;
    for (let i = b * D; i < (b + 1) * D; i++) {
      assertClose(xt[i], x0[i] + s * eps[i], 1e-5, 1e-5, "x_t");
      assertClose(score[i], out[i] / s, 1e-4, 1e-4, "score");
      want += (score[i] * s + eps[i]) ** 2;
    }
    assertClose(loss[b], want, 1e-4, 1e-4, `loss of sample ${b}`);
  }
  t.dispose();
});

/**
 * For data N(μ0, s0²) the marginal at t is N(μ0, V(t)), V = s0² + σ(t)², with
 * score −(x − μ0)/V. The reverse SDE with this score, started from the
 * sampler's prior N(0, σ(1)²) instead of the true N(μ0, V(1)), ends at mean
 * μ0 + (0 − μ0)·c and variance V(eps) + (σ(1)² − V(1))·c², c = V(eps)/V(1):
 * the offsets of the mean and of the variance shrink by exp(−∫dV/V) and its
 * square along the way.
 */
Deno.test("Euler–Maruyama with the exact score recovers a 1-D Gaussian", async () => {
  const mu0 = 0.5, s0 = 0.3, n = 4000;
  for (const sigmaMax of [1, 5]) {
    const sde = new VeSde({ sigmaMax });
    const V = (t: number) => s0 * s0 + sde.sigma(t) ** 2;
    const exact = (x: tf.Tensor, t: number) => tf.div(tf.neg(tf.sub(x, mu0)), V(t));
    const c = V(sde.eps) / V(1);
    const before = tf.memory().numTensors;
    const { final } = await eulerMaruyama(exact, sde, [n, 1], new Rng(7), { steps: 500 });
    const { mean, std } = meanStd(final.dataSync());
    final.dispose();
    assert.equal(tf.memory().numTensors, before, "the sampler frees what it creates");
    assertClose(mean, mu0 - mu0 * c, 0.015, 0, `mean at σmax ${sigmaMax}`);
    assertClose(
      std,
      Math.sqrt(V(sde.eps) + (sigmaMax ** 2 - V(1)) * c * c),
      0.012,
      0,
      `std at σmax ${sigmaMax}`,
    );
    if (sigmaMax === 5) assertClose(mean, mu0, 0.015, 0, "a large σ(1) removes the prior's offset");

    const half = (x: tf.Tensor, t: number) => tf.mul(exact(x, t), 0.5);
    const seedRule = await eulerMaruyama(half, sde, [n, 1], new Rng(7), { steps: 500 });
    const wrong = meanStd(seedRule.final.dataSync());
    seedRule.final.dispose();
    assert.ok(
      wrong.std > 1.5 * s0,
      `the tutorial's halved drift leaves std ${wrong.std}, far above ${s0}`,
    );
  }
});

Deno.test("eulerMaruyama keeps evenly spaced snapshots from t = 1", async () => {
  const sde = new VeSde();
  const r = await eulerMaruyama((x) => tf.neg(x), sde, [2, 3], new Rng(1), { steps: 11, keep: 3 });
  assert.equal(r.intermediates.length, 3);
  assert.equal(r.intermediates[0].length, 6);
  assertClose(r.times[0], 1, 1e-12);
  assertClose(r.times[2], sde.eps, 1e-12);
  r.final.dispose();
  await assert.rejects(() => eulerMaruyama((x) => x, sde, [1], new Rng(1), { steps: 1 }), /steps/);
});

Deno.test("priorMismatch is the KL and W2 between the Gaussians", () => {
  const m = 0.5, v = 0.25, s = 1.5;
  const r = priorMismatch(Float64Array.of(m, m), Float64Array.of(v, v), s);
  const s1 = Math.sqrt(v + s * s);
  const kl = Math.log(s / s1) + (s1 * s1 + m * m) / (2 * s * s) - 0.5;
  assertClose(r.kl, 2 * kl, 1e-12);
  assertClose(r.klPerDim, kl, 1e-12);
  assertClose(r.w2, Math.sqrt(2 * (m * m + (s1 - s) ** 2)), 1e-12);
  const far = priorMismatch(Float64Array.of(m), Float64Array.of(v), 10);
  assert.ok(far.kl < priorMismatch(Float64Array.of(m), Float64Array.of(v), 1).kl);
});

Deno.test("the VE SDE as a σ-space denoiser: timeOf inverts σ(t); Heun and DPM++ 2M follow the exact ODE", async () => {
  const sde = new VeSde({ sigmaMax: 5 });
  for (const t of [0.001, 0.1, 0.5, 0.9, 1]) {
    assertClose(sde.timeOf(sde.sigma(t)), t, 1e-9, 0, `t ${t}`);
  }
  // Exact score of x0 ~ N(μ0, s0²): s(x, t) = −(x − μ0)/(s0² + σ(t)²); D = x + σ²s is E[x0 | x].
  const mu0 = 0.5, s0 = 0.3;
  const score = (x: tf.Tensor, t: number) =>
    tf.div(tf.neg(tf.sub(x, mu0)), s0 * s0 + sde.sigma(t) ** 2);
  // The exact probability-flow ODE from the prior N(0, σmax²) to σ_min scales x − μ0 by
  // r = √(s0² + σmin²)/√(s0² + σmax²); the last step to σ = 0 is D, which scales it by
  // k = s0²/(s0² + σmin²). So the samples end as N(μ0 − μ0·r·k, (σmax·r·k)²).
  const [lo, hi] = [sde.sigma(sde.eps), sde.sigmaMax];
  const r = Math.sqrt(s0 * s0 + lo * lo) / Math.sqrt(s0 * s0 + hi * hi);
  const k = s0 * s0 / (s0 * s0 + lo * lo);
  const before = tf.memory().numTensors;
  for (const [name, steps] of [["heun", 40], ["dpmpp2m", 40]] as const) {
    const { x, nfe } = await runReverse(
      makeSigmaSampler(name, sde.sigmaModel()),
      score,
      steps,
      [10000, 1],
      new Rng(3),
    );
    const { mean, std } = meanStd(x.dataSync());
    x.dispose();
    assert.equal(nfe, name === "heun" ? 2 * steps - 1 : steps);
    assertClose(mean, mu0 - mu0 * r * k, 0.01, 0, `${name} mean`);
    assertClose(std, hi * r * k, 0.01, 0, `${name} std`);
  }
  assert.equal(tf.memory().numTensors, before);
});
