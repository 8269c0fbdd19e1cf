import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { MultinomialDiffusion, safeLog } from "../../lib/diffusion/multinomial.ts";
import { makeSchedule } from "../../lib/diffusion/schedules.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("cpu");

const K = [3, 2, 4];
const schedule = makeSchedule({ kind: "cosine", T: 20 });
const proc = new MultinomialDiffusion(schedule, K);

/** One feature's K×K transition matrix Q[i][j] = q(x_t = j | x_{t−1} = i). */
function transition(k: number, alpha: number): number[][] {
  return Array.from(
    { length: k },
    (_, i) => Array.from({ length: k }, (_, j) => alpha * (i === j ? 1 : 0) + (1 - alpha) / k),
  );
}

/** Row vector × matrix. */
function vecMat(v: number[], m: number[][]): number[] {
  return m[0].map((_, j) => v.reduce((s, vi, i) => s + vi * m[i][j], 0));
}

/** q(x_t | x_0 = c) by multiplying the per-step matrices (t 0-based). */
function bruteMarginal(k: number, c: number, t: number): number[] {
  let v: number[] = Array.from({ length: k }, (_, i) => (i === c ? 1 : 0));
  for (let s = 0; s <= t; s++) v = vecMat(v, transition(k, schedule.alphas[s]));
  return v;
}

/** q(x_{t−1} | x_t = xt, x_0 = c) by Bayes' rule over all K values of x_{t−1}. */
function brutePosterior(k: number, c: number, xt: number, t: number): number[] {
  const prior = t === 0
    ? Array.from({ length: k }, (_, i) => (i === c ? 1 : 0))
    : bruteMarginal(k, c, t - 1);
  const lik = transition(k, schedule.alphas[t]).map((row) => row[xt]);
  const joint = prior.map((p, i) => p * lik[i]);
  const z = joint.reduce((a, b) => a + b, 0);
  return joint.map((j) => j / z);
}

/** A batch of category indices as a log one-hot. */
function logOneHot(idx: number[][]): tf.Tensor {
  return tf.tidy(() => proc.indexToLogOneHot(tf.tensor2d(idx, [idx.length, K.length], "int32")));
}

function slices(row: ArrayLike<number>): number[][] {
  const out: number[][] = [];
  let pos = 0;
  for (const k of K) out.push(Array.from(row).slice(pos, pos += k));
  return out;
}

Deno.test("q(x_t | x_0) sums to 1 per slice and matches the product of per-step transitions", () => {
  const x0 = [[0, 1, 3], [2, 0, 1]];
  const logX0 = logOneHot(x0);
  for (const t of [0, 5, 19]) {
    const p = tf.tidy(() => tf.exp(proc.qProbs(logX0, [t, t])));
    const v = p.arraySync() as number[][];
    p.dispose();
    v.forEach((row, b) =>
      slices(row).forEach((s, f) => {
        assertClose(s.reduce((a, c) => a + c, 0), 1, 1e-5, 0, `t=${t} sample ${b} feature ${f}`);
        bruteMarginal(K[f], x0[b][f], t).forEach((want, j) =>
          assertClose(s[j], want, 1e-5, 0, `t=${t}`)
        );
      })
    );
  }
  logX0.dispose();
});

Deno.test("q(x_t | x_{t-1}) is the one-step transition", () => {
  const logX = logOneHot([[1, 1, 2]]);
  const p = tf.tidy(() => tf.exp(proc.qStep(logX, [7])));
  const s = slices(p.dataSync());
  s.forEach((row, f) =>
    row.forEach((v, j) =>
      assertClose(v, transition(K[f], schedule.alphas[7])[[1, 1, 2][f]][j], 1e-6)
    )
  );
  tf.dispose([logX, p]);
});

Deno.test("the posterior q(x_{t-1} | x_t, x_0) is Bayes' rule, normalised per slice", () => {
  const x0 = [[0, 1, 3], [2, 0, 1], [1, 1, 0]];
  const xt = [[2, 0, 3], [2, 1, 0], [0, 0, 2]];
  const logX0 = logOneHot(x0);
  const logXt = logOneHot(xt);
  for (const t of [0, 1, 10, 19]) {
    const p = tf.tidy(() => tf.exp(proc.posterior(logX0, logXt, [t, t, t])));
    const v = p.arraySync() as number[][];
    p.dispose();
    v.forEach((row, b) =>
      slices(row).forEach((s, f) => {
        assertClose(s.reduce((a, c) => a + c, 0), 1, 1e-5, 0, `t=${t} sum`);
        brutePosterior(K[f], x0[b][f], xt[b][f], t).forEach((want, j) =>
          assertClose(s[j], want, 1e-4, 0, `t=${t} sample ${b} feature ${f} category ${j}`)
        );
      })
    );
  }
  tf.dispose([logX0, logXt]);
});

Deno.test("perfect logits give zero KL for t > 0 and ~zero decoder NLL at t = 0", () => {
  const x0 = [[0, 1, 3], [2, 0, 1]];
  const logX0 = logOneHot(x0);
  const logXt = tf.tidy(() => proc.qSample(logX0, [0, 12], new Rng(3)));
  const logits = tf.mul(tf.exp(logX0), 50); // softmax ≈ the true one-hot
  const loss = proc.perSampleLoss(logits, logX0, logXt, Int32Array.from([0, 12]));
  const v = loss.dataSync();
  assertClose(v[0], 0, 1e-4, 0, "decoder NLL");
  assertClose(v[1], 0, 1e-4, 0, "KL");
  const wrong = tf.neg(logits);
  const bad = proc.perSampleLoss(wrong, logX0, logXt, Int32Array.from([0, 12]));
  assert.ok(bad.dataSync().every((x) => x > 0.01), "wrong logits cost something");
  tf.dispose([logX0, logXt, logits, loss, wrong, bad]);
});

Deno.test("Gumbel-max sampling draws each slice from its own distribution", () => {
  const probs = [0.6, 0.3, 0.1, 0.8, 0.2, 0.25, 0.25, 0.25, 0.25];
  const n = 20000;
  const logP = tf.tidy(() => tf.tile(safeLog(tf.tensor2d(probs, [1, 9])), [n, 1]));
  const idx = proc.sampleIndices(logP, new Rng(7));
  const v = idx.dataSync();
  let pos = 0;
  K.forEach((k, f) => {
    const counts = new Array(k).fill(0);
    for (let b = 0; b < n; b++) counts[v[b * K.length + f]]++;
    counts.forEach((c, j) =>
      assertClose(c / n, probs[pos + j], 0.015, 0, `feature ${f} category ${j}`)
    );
    pos += k;
  });
  tf.dispose([logP, idx]);
});

Deno.test("one-hot encoding is right on wasm too", async () => {
  await useBackend("wasm");
  const idx = tf.tensor2d([[2, 1, 0]], [1, 3], "int32");
  const p = tf.tidy(() => tf.exp(proc.indexToLogOneHot(idx)));
  assert.deepEqual(Array.from(p.dataSync(), Math.round), [0, 0, 1, 0, 1, 1, 0, 0, 0]);
  tf.dispose([idx, p]);
  await useBackend("cpu");
});

Deno.test("sampling steps do not leak tensors", () => {
  const rng = new Rng(1);
  let x = proc.noise(16, rng);
  const logits = tf.zeros([16, proc.dim]);
  const before = tf.memory().numTensors;
  for (let t = schedule.T - 1; t >= 0; t--) {
    const next = proc.step(
      logits,
      x,
      schedule.alphasCumprod[t],
      schedule.alphasCumprodPrev[t],
      rng,
    );
    x.dispose();
    x = next;
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, logits]);
});
